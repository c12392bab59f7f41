package peers

import (
	"context"
	"runtime"
	"testing"

	"github.com/storks-rpc/storks/bench/payload"
)

// BenchmarkUnary runs each framework row's unary call with the 581 B
// message from 32 goroutines per GOMAXPROCS (64 callers at -cpu 2, as
// rpcbench's headline scenario), to compare two rows with go test's own
// tools (-count, -cpuprofile, -memprofile), e.g. the same grpc-go client
// against a grpc-go and a Storks server:
//
//	go test -run '^$' -bench 'Unary/grpc-go' -cpu 2 -count 10 ./peers
//
// rpcbench, with its interleaved rounds and whole-process figures, remains
// the benchmark of record; the plain-TCP references are left to it.
func BenchmarkUnary(b *testing.B) {
	p, err := payload.New(payload.Rpcx)
	if err != nil {
		b.Fatal(err)
	}
	for _, spec := range All() {
		if spec.StreamOnly || spec.Kind == Reference {
			continue
		}
		b.Run(spec.Name, func(b *testing.B) {
			inst, err := spec.Start()
			if err != nil {
				b.Fatal(err)
			}
			defer inst.Close()
			const perProc = 32
			callers := make(chan Caller, perProc*runtime.GOMAXPROCS(0))
			for range cap(callers) {
				c, err := inst.NewCaller(p)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				callers <- c
			}
			b.ReportAllocs()
			b.SetParallelism(perProc)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := <-callers
				ctx := context.Background()
				for pb.Next() {
					if err := c.Call(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
