package runtime_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type bytesServer interface {
	Echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

type bytesImpl struct{}

func (bytesImpl) Echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return in, nil
}

var bytesDesc = storks.ServiceDesc{
	ServiceName: "bench.Bytes",
	HandlerType: (*bytesServer)(nil),
	Methods: []storks.MethodDesc{{
		Name:       "Echo",
		NewRequest: func() any { return new(wrapperspb.BytesValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			return srv.(bytesServer).Echo(ctx, req.(*wrapperspb.BytesValue))
		},
	}},
}

// BenchmarkUnary measures one unary call over loopback TCP with a 581-byte
// message (the size of rpcx's benchmark message), client and server in one
// process, so allocs/op counts both sides.
func BenchmarkUnary(b *testing.B) {
	msg := &wrapperspb.BytesValue{Value: bytes.Repeat([]byte{'x'}, 578)}
	if n := proto.Size(msg); n != 581 {
		b.Fatalf("message is %d bytes", n)
	}
	reg := newRegistry(b)
	srv := storks.NewServer(storks.WithRegistry(reg))
	if _, err := srv.Export(&bytesDesc, bytesImpl{}); err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Close()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(context.Background(), "bench.Bytes", storks.WithRemote())
	if err != nil {
		b.Fatal(err)
	}
	waitFor(b, func() bool { return len(ref.Providers()) == 1 })
	ctx := context.Background()
	call := func() error {
		err := ref.Invoke(ctx, "/bench.Bytes/Echo", msg, new(wrapperspb.BytesValue))
		return err
	}
	if err := call(); err != nil {
		b.Fatal(err)
	}
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			var failed atomic.Value
			b.ResetTimer()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := call(); err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
		})
	}
}
