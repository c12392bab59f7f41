package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// spyBalancer is round-robin, counts its builds and records every Done.
type spyBalancer struct {
	builds atomic.Int64
	mu     sync.Mutex
	dones  []storks.DoneInfo
	last   []*storks.Endpoint
}

func (s *spyBalancer) factory() storks.BalancerFactory {
	return func() storks.Balancer { return s }
}

func (s *spyBalancer) Build(eps []*storks.Endpoint) storks.Picker {
	s.builds.Add(1)
	s.mu.Lock()
	s.last = eps
	s.mu.Unlock()
	return s
}

func (s *spyBalancer) Pick(context.Context, storks.PickInfo) (storks.PickResult, error) {
	s.mu.Lock()
	e := s.last[0]
	s.mu.Unlock()
	return storks.PickResult{Endpoint: e, Done: func(d storks.DoneInfo) {
		s.mu.Lock()
		s.dones = append(s.dones, d)
		s.mu.Unlock()
	}}, nil
}

func (s *spyBalancer) endpoint() *storks.Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last[0]
}

func (s *spyBalancer) lastDone() storks.DoneInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dones[len(s.dones)-1]
}

// The picker is built once per change of the list, not per call; Done
// gets each attempt's error and latency; the endpoint's counters follow
// the calls.
func TestBalancerSeam(t *testing.T) {
	release := make(chan struct{})
	impl := &echoImpl{name: "p", hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		switch in.GetValue() {
		case "block":
			<-release
		case "slow":
			time.Sleep(20 * time.Millisecond)
		case "busy":
			return nil, storks.Errorf(storks.CodeUnavailable, "busy")
		case "wrong":
			return nil, storks.Errorf(storks.CodeInvalidArgument, "wrong")
		}
		return in, nil
	}}
	reg := newRegistry(t)
	startProvider(t, reg, impl, nil)
	spy := &spyBalancer{}
	_, ref := refer(t, reg, nil, storks.WithBalancer(spy.factory()))
	ctx := withTimeout(t, 10*time.Second)

	builds := spy.builds.Load()
	for range 20 {
		if _, err := callEcho(ctx, ref, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := spy.builds.Load(); n != builds {
		t.Fatalf("%d builds during 20 calls on an unchanged list, want none", n-builds)
	}
	if d := spy.lastDone(); d.Err != nil || d.Latency <= 0 {
		t.Fatalf("Done after a success = %+v", d)
	}

	e := spy.endpoint()
	if _, err := callEcho(ctx, ref, "slow"); err != nil {
		t.Fatal(err)
	}
	if d := spy.lastDone(); d.Latency < 20*time.Millisecond {
		t.Fatalf("Done latency of a 20 ms call = %v", d.Latency)
	}
	if e.Latency() <= 0 || e.Latency() >= 20*time.Millisecond {
		t.Fatalf("EWMA latency after many fast calls and one of 20 ms = %v, want between", e.Latency())
	}

	// In flight while a call runs.
	done := make(chan error, 1)
	go func() { _, err := callEcho(ctx, ref, "block"); done <- err }()
	waitFor(t, func() bool { return e.InFlight() == 1 })
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.InFlight(); n != 0 {
		t.Fatalf("InFlight after the call = %d", n)
	}

	// A handler's error reaches Done; only provider faults count in the
	// error rate.
	_, err := callEcho(ctx, ref, "wrong")
	if d := spy.lastDone(); storks.CodeOf(d.Err) != storks.CodeInvalidArgument || !strings.Contains(fmt.Sprint(d.Err), "wrong") {
		t.Fatalf("Done after a handler error = %+v (call: %v)", d, err)
	}
	if r := e.ErrorRate(); r != 0 {
		t.Fatalf("ErrorRate after InvalidArgument = %v, want 0", r)
	}
	for range 5 {
		callEcho(ctx, ref, "busy")
	}
	if r := e.ErrorRate(); r < 0.4 {
		t.Fatalf("ErrorRate after 5 Unavailable replies = %v, want > 0.4", r)
	}

	// A second provider: one more build, with both.
	startProvider(t, reg, &echoImpl{name: "q"}, nil)
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	if n := spy.builds.Load(); n != builds+1 {
		t.Fatalf("%d builds after one list change, want 1", n-builds)
	}
	spy.mu.Lock()
	n := len(spy.last)
	spy.mu.Unlock()
	if n != 2 {
		t.Fatalf("built with %d endpoints, want 2", n)
	}
	if in := e.Instance(); in.Addr != e.Addr() || e.Weight() != registry.DefaultWeight {
		t.Fatalf("endpoint %+v: Addr %s, Weight %d", in, e.Addr(), e.Weight())
	}
}
