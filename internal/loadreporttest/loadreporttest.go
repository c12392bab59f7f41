// Package loadreporttest checks, against a real registry, that a provider
// made with runtime.WithLoadReport publishes its load into its registry
// entry: that a consumer's Watch sees it within two intervals, that a change
// of load follows within two intervals, that the provider writes at most
// once an interval, and that the registration outlives its TTL (lease,
// TTL check or session) while the entry is written again and again, the
// watch never seeing it go.
//
// The registry tests call Check with a URL of their own server (see
// internal/testservers); the package lives apart from registrytest, which
// the runtime's tests import, because it imports the runtime.
package loadreporttest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// countingRegistry counts the writes (Register calls) of the provider.
type countingRegistry struct {
	registry.Registry
	writes atomic.Int64
}

func (c *countingRegistry) Register(ctx context.Context, in registry.Instance) error {
	c.writes.Add(1)
	return c.Registry.Register(ctx, in)
}

// Figures are what Check measured, for the test's log.
type Figures struct {
	FirstLoad  time.Duration // from registered to the first load seen by the watch
	LoadChange time.Duration // from the calls starting to a busy load seen
	Writes     int64         // republications during the hold
	Hold       time.Duration // how long the registration was held (> TTL)
}

// Check runs the checks against the registry at url, whose TTL (or session
// timeout) is ttl, with a load report every interval. It returns the
// figures.
func Check(t *testing.T, url string, ttl, interval time.Duration) Figures {
	t.Helper()
	ctx := context.Background()
	open := func() registry.Registry {
		r, err := registry.Open(ctx, url)
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	preg := &countingRegistry{Registry: open()}
	creg := open()
	var f Figures

	srv := storks.NewServer(storks.WithRegistry(preg), storks.WithShutdownWait(0),
		storks.WithLoadReport(storks.LoadReport{Interval: interval, CPU: true}))
	ex, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: "loaded"})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })

	w, err := creg.Watch(ctx, ex.Key())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// next returns the next list from the watch whose one instance
	// satisfies ok, failing after limit.
	next := func(what string, limit time.Duration, ok func(storks.Load, bool) bool) registry.Instance {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		for {
			list, err := w.Next(wctx)
			if err != nil {
				t.Fatalf("%s: not seen within %v: %v", what, limit, err)
			}
			if len(list) != 1 {
				continue
			}
			l, has := storks.ParseLoad(list[0].Metadata[registry.MetadataLoad])
			if ok(l, has) {
				return list[0]
			}
		}
	}

	// Two intervals, and some slack for a loaded test machine.
	within := 2*interval + interval/2 + 200*time.Millisecond
	next("the registration", 10*time.Second, func(storks.Load, bool) bool { return true })
	registered := time.Now()
	next("the first published load", within, func(_ storks.Load, has bool) bool { return has })
	f.FirstLoad = time.Since(registered)

	// Calls: the next value shows them, within two intervals.
	direct, err := registry.Open(ctx, "direct://"+srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	cli, err := storks.NewClient(storks.WithRegistry(direct))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	greeter := greeterv1.NewGreeterClient(ref)
	callCtx, stopCalls := context.WithCancel(ctx)
	calling := make(chan struct{})
	go func() {
		defer close(calling)
		for callCtx.Err() == nil {
			greeter.SayHello(callCtx, &greeterv1.HelloRequest{Name: "x"})
		}
	}()
	start := time.Now()
	in := next("a busy load", within, func(l storks.Load, has bool) bool { return has && l.CallsPerSecond >= 10 })
	f.LoadChange = time.Since(start)
	stopCalls()
	<-calling
	l, _ := storks.ParseLoad(in.Metadata[registry.MetadataLoad])
	t.Logf("published %s (%.0f cps, %d in flight, cpu %.3f)", in.Metadata[registry.MetadataLoad], l.CallsPerSecond, l.InFlight, l.CPU)

	// Held past the TTL, the entry written again meanwhile (the calls
	// stopped, so the load drops, and the max age passes), the instance
	// stays, and the writes stay at or under one an interval.
	base, t0 := preg.writes.Load(), time.Now()
	hold := ttl + ttl/2 + 2*interval
	deadline := time.Now().Add(hold)
	// The watch, too, never sees the instance go, not even for a moment
	// between two writes.
	wctx, stopWatch := context.WithDeadline(ctx, deadline)
	defer stopWatch()
	var lists, flaps atomic.Int64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			list, err := w.Next(wctx)
			if err != nil {
				return
			}
			lists.Add(1)
			if len(list) != 1 {
				flaps.Add(1)
			}
		}
	}()
	for time.Now().Before(deadline) {
		list, err := creg.Discover(ctx, ex.Key())
		if err != nil || len(list) != 1 {
			t.Fatalf("%v after the calls: %d instances (%v), want 1", time.Since(t0), len(list), err)
		}
		time.Sleep(interval / 2)
	}
	f.Hold = time.Since(t0)
	f.Writes = preg.writes.Load() - base
	<-watched
	if n := flaps.Load(); n != 0 {
		t.Errorf("the watch saw the instance missing in %d of %d lists during the hold", n, lists.Load())
	}
	if lists.Load() == 0 {
		t.Errorf("the watch saw no republication during the hold")
	}
	if max := int64(f.Hold/interval) + 1; f.Writes > max {
		t.Errorf("%d writes in %v, more than one an interval (%d)", f.Writes, f.Hold, max)
	}
	if f.Writes == 0 {
		t.Errorf("no write in %v: the load was not republished", f.Hold)
	}
	list, err := creg.Discover(ctx, ex.Key())
	if err != nil || len(list) != 1 {
		t.Fatalf("after %v held: %d instances (%v), want 1", f.Hold, len(list), err)
	}
	if _, ok := storks.ParseLoad(list[0].Metadata[registry.MetadataLoad]); !ok {
		t.Errorf("after the hold the entry has no load: %v", list[0].Metadata)
	}

	// Shutdown withdraws the entry, and nothing writes it back.
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	base = preg.writes.Load()
	time.Sleep(3 * interval)
	if n := preg.writes.Load() - base; n != 0 {
		t.Errorf("%d writes after Shutdown", n)
	}
	if list, err := creg.Discover(ctx, ex.Key()); err != nil || len(list) != 0 {
		t.Errorf("after Shutdown: %v (%v), want none", list, err)
	}
	t.Logf("figures: first load %v after registering, busy load %v after the calls began, %d writes in %v (interval %v, TTL %v)",
		f.FirstLoad.Round(time.Millisecond), f.LoadChange.Round(time.Millisecond), f.Writes, f.Hold.Round(time.Millisecond), interval, ttl)
	return f
}
