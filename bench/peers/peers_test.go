package peers

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"github.com/storks-rpc/storks/bench/gen/kitexpb"
	"github.com/storks-rpc/storks/bench/internal/hist"
	"github.com/storks-rpc/storks/bench/payload"
)

// TestEveryPeerAnswers makes a few hundred calls on every row, from several
// goroutines, for two payload sizes, and checks every reply (Call checks
// field1 == "OK", field2 == 100 and the echoed payload), so that a broken
// peer cannot produce numbers.
func TestEveryPeerAnswers(t *testing.T) {
	sizes := []int{payload.Tiny, payload.Rpcx}
	if !testing.Short() {
		sizes = append(sizes, payload.Medium)
	}
	var ps []*payload.Payload
	for _, s := range sizes {
		p, err := payload.New(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	for _, spec := range All() {
		if spec.StreamOnly {
			continue
		}
		t.Run(spec.Name, func(t *testing.T) {
			inst, err := spec.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close()
			for _, p := range ps {
				const goroutines, each = 4, 75
				var wg sync.WaitGroup
				var calls atomic.Int64
				errs := make(chan error, goroutines)
				for range goroutines {
					c, err := inst.NewCaller(p)
					if err != nil {
						t.Fatal(err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.Close()
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						defer cancel()
						for range each {
							if err := c.Call(ctx); err != nil {
								errs <- err
								return
							}
							calls.Add(1)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Errorf("%s: %v", p.Name, err)
				}
				if n := calls.Load(); n != goroutines*each {
					t.Errorf("%s: %d calls succeeded, want %d", p.Name, n, goroutines*each)
				}
				if pl, ok := inst.(Pipeliner); ok {
					pipe, err := pl.NewPipeline(p, 16)
					if err != nil {
						t.Fatal(err)
					}
					if pipe == nil {
						continue
					}
					var stop atomic.Bool
					start := make(chan struct{})
					close(start)
					var h hist.H
					time.AfterFunc(50*time.Millisecond, func() { stop.Store(true) })
					n, err := pipe.Run(start, &stop, &h)
					pipe.Close()
					if err != nil || n < 100 || h.Count() != uint64(n) {
						t.Errorf("%s: pipeline: %d calls, %d recorded, err %v", p.Name, n, h.Count(), err)
					}
				}
			}
		})
	}
}

// TestBadReplyFails checks that a reply that is not the handler's fails the
// call: the harness must never count it.
func TestBadReplyFails(t *testing.T) {
	p, _ := payload.New(payload.Rpcx)
	other, _ := payload.New(payload.Tiny)
	for _, spec := range All() {
		if spec.Kind == Reference || spec.StreamOnly {
			continue
		}
		t.Run(spec.Name, func(t *testing.T) {
			inst, err := spec.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close()
			c, err := inst.NewCaller(p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Check the replies against another payload's expectation:
			// every call must fail with ErrBadReply.
			swapPayload(c, other)
			if err := c.Call(context.Background()); !errors.Is(err, payload.ErrBadReply) {
				t.Errorf("call with a mismatched reply returned %v, want ErrBadReply", err)
			}
		})
	}
}

func swapPayload(c Caller, p *payload.Payload) {
	switch c := c.(type) {
	case *storksCaller:
		c.p = p
	case *grpcCaller:
		c.p = p
	case *rpcxCaller:
		c.p = p
	case *kitexCaller:
		c.p = p
	case *streamCaller[benchpb.BenchmarkMessage]:
		c.check = p.Check
	case *streamCaller[kitexpb.BenchmarkMessage]:
		c.check = p.CheckKitex
	}
}

// TestEveryStreamAnswers runs the streaming scenarios' streams on every row
// that has them (storks and grpc-go at least): for each kind and size,
// several streams at once, a few hundred messages each, every one checked;
// then a stream whose replies are checked against another payload must
// fail with ErrBadReply. The 1 MiB server stream is the large-message row.
func TestEveryStreamAnswers(t *testing.T) {
	type run struct {
		kind          StreamKind
		size          int
		streams, each int
	}
	runs := []run{
		{ServerStreaming, payload.Rpcx, 4, 300},
		{Bidi, payload.Rpcx, 4, 300},
		{ServerStreaming, payload.Large, 1, 20},
	}
	ps := map[int]*payload.Payload{}
	for _, size := range []int{payload.Tiny, payload.Rpcx, payload.Large} {
		p, err := payload.New(size)
		if err != nil {
			t.Fatal(err)
		}
		ps[size] = p
	}
	rows := map[string]bool{}
	for _, spec := range All() {
		t.Run(spec.Name, func(t *testing.T) {
			inst, err := spec.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close()
			st, ok := inst.(Streamer)
			if !ok {
				if spec.StreamOnly {
					t.Fatal("a stream-only row without streams")
				}
				t.Skip("no streaming methods")
			}
			rows[spec.Name] = true
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for _, r := range runs {
				p := ps[r.size]
				var wg sync.WaitGroup
				var msgs atomic.Int64
				errs := make(chan error, r.streams)
				for range r.streams {
					c, err := st.NewStream(ctx, r.kind, p)
					if err != nil {
						t.Fatalf("%v %s: open: %v", r.kind, p.Name, err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.Close()
						for range r.each {
							if err := c.Call(ctx); err != nil {
								errs <- err
								return
							}
							msgs.Add(1)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Errorf("%v %s: %v", r.kind, p.Name, err)
				}
				if n, want := msgs.Load(), int64(r.streams*r.each); n != want {
					t.Errorf("%v %s: %d messages received and right, want %d", r.kind, p.Name, n, want)
				}
			}
			for _, kind := range []StreamKind{ServerStreaming, Bidi} {
				c, err := st.NewStream(ctx, kind, ps[payload.Rpcx])
				if err != nil {
					t.Fatalf("%v: open: %v", kind, err)
				}
				swapPayload(c, ps[payload.Tiny])
				if err := c.Call(ctx); !errors.Is(err, payload.ErrBadReply) {
					t.Errorf("%v: a mismatched message returned %v, want ErrBadReply", kind, err)
				}
				c.Close()
			}
		})
	}
	for _, name := range []string{"storks", "grpc-go"} {
		if !rows[name] && !t.Failed() {
			t.Errorf("row %s has no streams", name)
		}
	}
}
