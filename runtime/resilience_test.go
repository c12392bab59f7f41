package runtime_test

import (
	"context"
	"errors"
	"github.com/storks-rpc/storks/internal/loadtest"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// eventLog is an observer that keeps every event.
type eventLog struct {
	mu  sync.Mutex
	evs []storks.Event
}

func (l *eventLog) add(e storks.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) option() storks.ClientOption { return storks.WithObserver(l.add) }

// count counts the events of kind on addr ("" for any address) from the
// index from on.
func (l *eventLog) count(kind storks.EventKind, addr string, from int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.evs[min(from, len(l.evs)):] {
		if e.Kind == kind && (addr == "" || e.Addr == addr) {
			n++
		}
	}
	return n
}

// all returns the events of kind on addr.
func (l *eventLog) all(kind storks.EventKind, addr string) []storks.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []storks.Event
	for _, e := range l.evs {
		if e.Kind == kind && e.Addr == addr {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.evs)
}

// index returns the index of the first event of kind on addr from from on,
// or -1.
func (l *eventLog) index(kind storks.EventKind, addr string, from int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := min(from, len(l.evs)); i < len(l.evs); i++ {
		if e := l.evs[i]; e.Kind == kind && e.Addr == addr {
			return i
		}
	}
	return -1
}

// referAddrs refers the echo service on a fixed list of addresses, which
// calls try in order unless ropts sets a selector.
func referAddrs(t testing.TB, addrs []string, copts []storks.ClientOption, ropts ...storks.ReferOption) (*storks.Client, *storks.Reference) {
	t.Helper()
	ropts = append([]storks.ReferOption{storks.WithBalancer(prefer(addrs...))}, ropts...)
	return refer(t, mustOpen(t, "static://"+strings.Join(addrs, ",")), copts, ropts...)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l := listen(t)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func withTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// A call whose connection breaks after the request was sent may have run:
// Failfast (the default) does not send it again, and the error names the
// service key and the attempts and wraps the cause.
func TestFailfastDoesNotRetryACallThatMayHaveRun(t *testing.T) {
	a, b := startFake(t, "a", fakeDrop), startFake(t, "b", fakeAnswer)
	_, ref := referAddrs(t, []string{a.addr(), b.addr()}, nil, storks.WithIdempotentMethods("Echo"))
	_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "test.Echo failed after 1 attempt")
	if !errors.Is(err, storks.ErrConnClosed) {
		t.Errorf("errors.Is(%v, ErrConnClosed) = false", err)
	}
	if a.requests.Load() != 1 || b.requests.Load() != 0 {
		t.Errorf("requests: a %d, b %d; want 1, 0", a.requests.Load(), b.requests.Load())
	}
}

// Failover sends an idempotent call that may have run to another instance;
// a method is idempotent by WithIdempotentMethods (short or full name),
// WithIdempotent on the call, or its ServiceDesc when the call goes through
// a binding of the reference to it (BindService); any other method is not
// retried.
func TestFailoverRetriesIdempotentCallsElsewhere(t *testing.T) {
	idemDesc := echoDesc
	idemDesc.Methods = []storks.MethodDesc{echoDesc.Methods[0]}
	idemDesc.Methods[0].Idempotent = true

	cases := []struct {
		name    string
		bind    *storks.ServiceDesc
		ropts   []storks.ReferOption
		copts   []storks.CallOption
		retried bool
	}{
		{"not idempotent", nil, nil, nil, false},
		{"refer option, short name", nil, []storks.ReferOption{storks.WithIdempotentMethods("Echo")}, nil, true},
		{"refer option, full name", nil, []storks.ReferOption{storks.WithIdempotentMethods(echoMethod)}, nil, true},
		{"refer option, other method", nil, []storks.ReferOption{storks.WithIdempotentMethods("Other")}, nil, false},
		{"call option", nil, nil, []storks.CallOption{storks.WithIdempotent()}, true},
		{"bound to an idempotent desc", &idemDesc, nil, nil, true},
		{"bound to a desc without idempotent methods", &echoDesc, nil, nil, false},
		{"bound, refer option", &echoDesc, []storks.ReferOption{storks.WithIdempotentMethods("Echo")}, nil, true},
		{"bound, call option", &echoDesc, nil, []storks.CallOption{storks.WithIdempotent()}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := startFake(t, "a", fakeDrop), startFake(t, "b", fakeAnswer)
			cli := newClient(t, storks.WithRegistry(mustOpen(t, "static://"+a.addr()+","+b.addr())))
			ref, err := cli.Refer(context.Background(), echoService, append([]storks.ReferOption{storks.Failover(2), storks.WithBalancer(prefer(a.addr(), b.addr()))}, tc.ropts...)...)
			if err != nil {
				t.Fatal(err)
			}
			var inv storks.Invoker = ref
			if tc.bind != nil {
				inv = storks.BindService(ref, tc.bind)
			}
			out := new(wrapperspb.StringValue)
			err = inv.Invoke(withTimeout(t, 5*time.Second), echoMethod, wrapperspb.String("x"), out, tc.copts...)
			if tc.retried {
				if err != nil || out.GetValue() != "b:x" {
					t.Fatalf("got %v, %v; want b:x from the retry", out, err)
				}
				if a.requests.Load() != 1 || b.requests.Load() != 1 {
					t.Errorf("requests: a %d, b %d; want 1, 1", a.requests.Load(), b.requests.Load())
				}
				return
			}
			wantCode(t, err, storks.CodeUnavailable, "after 1 attempt")
			if b.requests.Load() != 0 {
				t.Errorf("a call that may have run was sent again to b")
			}
		})
	}
}

// A generated client knows the idempotency of every method from the proto's
// idempotency_level, through the ServiceDesc it binds the reference to:
// Greeter.SayHello (NO_SIDE_EFFECTS) is retried, Fail (no level) is not.
// Nothing is global: the same reference, called directly rather than
// through the generated client, does not retry SayHello.
func TestGeneratedMethodsCarryIdempotency(t *testing.T) {
	for _, tc := range []struct {
		name    string
		call    func(*storks.Reference) error
		retried bool
	}{
		{"SayHello", func(ref *storks.Reference) error {
			r, err := greeterv1.NewGreeterClient(ref).SayHello(context.Background(), &greeterv1.HelloRequest{Name: "x"})
			if err == nil && r.GetMessage() != "b:x" {
				return errors.New("reply " + r.GetMessage())
			}
			return err
		}, true},
		{"Fail", func(ref *storks.Reference) error {
			_, err := greeterv1.NewGreeterClient(ref).Fail(context.Background(), &greeterv1.FailRequest{Message: "x"})
			return err
		}, false},
		{"SayHello, not through the generated client", func(ref *storks.Reference) error {
			return ref.Invoke(context.Background(), greeterv1.Greeter_SayHello_FullMethodName, &greeterv1.HelloRequest{Name: "x"}, new(greeterv1.HelloReply))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := startFake(t, "a", fakeDrop), startFake(t, "b", fakeAnswer)
			cli := newClient(t, storks.WithRegistry(mustOpen(t, "static://"+a.addr()+","+b.addr())))
			ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.Failover(1), storks.WithBalancer(prefer(a.addr(), b.addr())))
			if err != nil {
				t.Fatal(err)
			}
			err = tc.call(ref)
			if tc.retried {
				if err != nil {
					t.Fatalf("idempotent call not retried: %v", err)
				}
			} else {
				wantCode(t, err, storks.CodeUnavailable, "after 1 attempt")
			}
			if got, want := b.requests.Load(), map[bool]int64{true: 1, false: 0}[tc.retried]; got != want {
				t.Errorf("b got %d requests, want %d", got, want)
			}
		})
	}
}

// Failtry retries on the same instance; Failover on another. The fail mode
// of a call overrides the reference's, which overrides the client's.
func TestFailtryRetriesTheSameInstance(t *testing.T) {
	for _, tc := range []struct {
		name  string
		copts []storks.ClientOption
		ropts []storks.ReferOption
		call  []storks.CallOption
		want  string
	}{
		{"failtry on the reference", nil, []storks.ReferOption{storks.Failtry(1)}, nil, "a:x"},
		{"failover on the reference", nil, []storks.ReferOption{storks.Failover(1)}, nil, "b:x"},
		{"failtry on the client", []storks.ClientOption{storks.Failtry(1)}, nil, nil, "a:x"},
		{"call overrides reference", nil, []storks.ReferOption{storks.Failover(1)}, []storks.CallOption{storks.Failtry(1)}, "a:x"},
		{"reference overrides client", []storks.ClientOption{storks.Failover(1)}, []storks.ReferOption{storks.Failtry(1)}, nil, "a:x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := startFake(t, "a", fakeDropOnce), startFake(t, "b", fakeAnswer)
			_, ref := referAddrs(t, []string{a.addr(), b.addr()}, tc.copts, append(tc.ropts, storks.WithIdempotentMethods("Echo"))...)
			got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x", tc.call...)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// When every attempt fails, the error is Unavailable, names the service key
// and the number of attempts, and wraps the last cause.
func TestEveryAttemptFailed(t *testing.T) {
	t.Run("connections broke", func(t *testing.T) {
		a, b := startFake(t, "a", fakeDrop), startFake(t, "b", fakeDrop)
		_, ref := referAddrs(t, []string{a.addr(), b.addr()}, []storks.ClientOption{storks.WithoutEjection()},
			storks.Failover(3), storks.WithIdempotentMethods("Echo"), storks.WithVersion("v2"))
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, "call /test.Echo/Echo to test.Echo:v2 failed after 4 attempts; last: connection to ")
		if !errors.Is(err, storks.ErrConnClosed) || !errors.Is(err, &storks.Error{Code: storks.CodeUnavailable}) {
			t.Errorf("errors.Is does not see the cause of %v", err)
		}
		if n := a.requests.Load() + b.requests.Load(); n != 4 {
			t.Errorf("%d requests sent, want 4", n)
		}
	})
	t.Run("connections refused", func(t *testing.T) {
		_, ref := referAddrs(t, []string{closedAddr(t), closedAddr(t)}, nil, storks.Failover(3))
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, "test.Echo failed after 2 attempts; last: connect to ")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
		}
	})
	t.Run("no provider", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, storks.Failover(3))
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, "no provider for test.Echo")
		if !errors.Is(err, storks.ErrNoProvider) {
			t.Errorf("errors.Is(%v, ErrNoProvider) = false", err)
		}
	})
	t.Run("handler errors are not wrapped", func(t *testing.T) {
		reg := newRegistry(t)
		startProvider(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return nil, storks.NewError(storks.CodeNotFound, "no such thing")
		}}, nil)
		_, ref := refer(t, reg, nil, storks.Failover(3), storks.WithIdempotentMethods("Echo"))
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		if err == nil || err.Error() != "storks: NotFound: no such thing" {
			t.Fatalf("got %v, want the handler's error as it is", err)
		}
	})
}

// The call's deadline bounds all its attempts: a provider that hangs uses
// it up, and no other attempt follows.
func TestRetriesStopAtTheDeadline(t *testing.T) {
	a, b := startFake(t, "a", fakeHang), startFake(t, "b", fakeAnswer)
	var log eventLog
	_, ref := referAddrs(t, []string{a.addr(), b.addr()}, []storks.ClientOption{log.option()},
		storks.Failover(3), storks.WithIdempotentMethods("Echo"))
	_, err := callEcho(withTimeout(t, 200*time.Millisecond), ref, "x")
	wantCode(t, err, storks.CodeDeadlineExceeded, "")
	if n := log.count(storks.EventAttempt, "", 0); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if b.requests.Load() != 0 {
		t.Errorf("b got a request after the deadline")
	}
}

// Failbackup sends a second request to another instance when the first has
// not answered after the delay; the first reply wins and the other request
// is cancelled, so its handler stops. Without idempotency there is no second
// request.
func TestFailbackup(t *testing.T) {
	reg := newRegistry(t)
	cancelled := make(chan error, 10)
	slow := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return nil, ctx.Err()
	}}
	srvA, _ := startProvider(t, reg, slow, nil)
	fast := &echoImpl{name: "b"}
	srvB, _ := startProvider(t, reg, fast, nil)
	addrs := []string{srvA.Addr(), srvB.Addr()}

	t.Run("hedged", func(t *testing.T) {
		_, ref := referAddrs(t, addrs, nil, storks.Failbackup(20*time.Millisecond), storks.WithIdempotentMethods("Echo"))
		reply := new(wrapperspb.StringValue)
		// The second request wins: its reply, decoded into a value of its
		// own, is copied into the caller's.
		err := ref.Invoke(withTimeout(t, 10*time.Second), echoMethod, wrapperspb.String("x"), reply)
		if err != nil || reply.GetValue() != "b:x" {
			t.Fatalf("got %v, %v; want b:x", reply, err)
		}
		select {
		case err := <-cancelled:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the losing request's handler ended with %v, want a cancellation", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the losing request was not cancelled")
		}
	})
	t.Run("first fails fast", func(t *testing.T) {
		drop := startFake(t, "d", fakeDrop)
		_, ref := referAddrs(t, []string{drop.addr(), srvB.Addr()}, nil, storks.Failbackup(time.Hour), storks.WithIdempotentMethods("Echo"))
		got, err := callEcho(withTimeout(t, 10*time.Second), ref, "x")
		if err != nil || got != "b:x" {
			t.Fatalf("got %q, %v; want b:x at once", got, err)
		}
	})
	t.Run("not idempotent", func(t *testing.T) {
		before := fast.calls.Load()
		_, ref := referAddrs(t, addrs, nil, storks.Failbackup(10*time.Millisecond))
		_, err := callEcho(withTimeout(t, 300*time.Millisecond), ref, "x")
		wantCode(t, err, storks.CodeDeadlineExceeded, "")
		if fast.calls.Load() != before {
			t.Errorf("a non-idempotent call was sent twice")
		}
		<-cancelled
	})
	t.Run("all fail", func(t *testing.T) {
		d1, d2 := startFake(t, "d1", fakeDrop), startFake(t, "d2", fakeDrop)
		_, ref := referAddrs(t, []string{d1.addr(), d2.addr()}, []storks.ClientOption{storks.WithoutEjection()},
			storks.Failbackup(time.Nanosecond), storks.WithIdempotentMethods("Echo"))
		_, err := callEcho(withTimeout(t, 10*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, "test.Echo failed after ")
		if !errors.Is(err, storks.ErrConnClosed) {
			t.Errorf("errors.Is(%v, ErrConnClosed) = false", err)
		}
	})
}

// WithDefaultTimeout gives calls without a deadline one, visible to client
// interceptors; a deadline of the caller's own wins; a reference's setting
// overrides the client's.
func TestDefaultTimeout(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{name: "p"}, nil)
	var seen atomic.Pointer[time.Time]
	spy := storks.WithClientInterceptor(func(ctx context.Context, method string, req, reply any, invoker storks.UnaryInvoker) error {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Time{}
		}
		seen.Store(&dl)
		return invoker(ctx, method, req, reply)
	})
	check := func(t *testing.T, ref *storks.Reference, ctx context.Context, want time.Duration) {
		t.Helper()
		start := time.Now()
		if _, err := callEcho(ctx, ref, "x"); err != nil {
			t.Fatal(err)
		}
		dl := *seen.Load()
		switch {
		case want == 0 && !dl.IsZero():
			t.Errorf("deadline %v, want none", time.Until(dl))
		case want != 0 && (dl.Before(start.Add(want-time.Minute)) || dl.After(time.Now().Add(want))):
			t.Errorf("deadline in %v, want %v", dl.Sub(start), want)
		}
	}
	_, ref := refer(t, reg, []storks.ClientOption{spy, storks.WithDefaultTimeout(time.Hour)})
	check(t, ref, context.Background(), time.Hour)
	check(t, ref, withTimeout(t, 10*time.Hour), 10*time.Hour)
	_, ref2 := refer(t, reg, []storks.ClientOption{spy, storks.WithDefaultTimeout(time.Hour)}, storks.WithDefaultTimeout(2*time.Hour))
	check(t, ref2, context.Background(), 2*time.Hour)
	_, ref3 := refer(t, reg, []storks.ClientOption{spy, storks.WithDefaultTimeout(time.Hour)}, storks.WithDefaultTimeout(0))
	check(t, ref3, context.Background(), 0)

	hang := startFake(t, "h", fakeHang)
	_, ref4 := referAddrs(t, []string{hang.addr()}, []storks.ClientOption{storks.WithDefaultTimeout(100 * time.Millisecond)})
	done := make(chan error, 1)
	go func() {
		_, err := callEcho(context.Background(), ref4, "x")
		done <- err
	}()
	select {
	case err := <-done:
		wantCode(t, err, storks.CodeDeadlineExceeded, "")
	case <-time.After(5 * time.Second):
		t.Fatal("a call without a deadline to a hung provider did not end at the default timeout")
	}
}

// recordingBalancer is round-robin and records the size of the lists its
// pickers were built with, one entry per pick.
type recordingBalancer struct {
	mu   sync.Mutex
	lens []int
}

func (s *recordingBalancer) factory() storks.BalancerFactory {
	return func() storks.Balancer { return &recBal{s: s, rr: storks.RoundRobin()()} }
}

type recBal struct {
	s  *recordingBalancer
	rr storks.Balancer
}

func (b *recBal) Build(eps []*storks.Endpoint) storks.Picker {
	return &recPicker{s: b.s, n: len(eps), p: b.rr.Build(eps)}
}

type recPicker struct {
	s *recordingBalancer
	n int
	p storks.Picker
}

func (p *recPicker) Pick(ctx context.Context, info storks.PickInfo) (storks.PickResult, error) {
	p.s.mu.Lock()
	p.s.lens = append(p.s.lens, p.n)
	p.s.mu.Unlock()
	return p.p.Pick(ctx, info)
}

// firstOfNextCall returns the size of the list the picker of the first
// attempt of a call made by call was built with.
func (s *recordingBalancer) firstOfNextCall(call func()) int {
	s.mu.Lock()
	s.lens = s.lens[:0]
	s.mu.Unlock()
	call()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lens[0]
}

// prefer returns balancers that pick the first address of order that is in
// the list (static registries sort their lists, so the tests choose this
// way which instance a call tries first), or the first endpoint.
func prefer(order ...string) storks.BalancerFactory {
	return func() storks.Balancer { return preferBalancer(order) }
}

type preferBalancer []string

func (p preferBalancer) Build(eps []*storks.Endpoint) storks.Picker {
	for _, addr := range p {
		for _, e := range eps {
			if e.Addr() == addr {
				return fixedPicker{e}
			}
		}
	}
	return fixedPicker{eps[0]}
}

type fixedPicker struct{ e *storks.Endpoint }

func (f fixedPicker) Pick(context.Context, storks.PickInfo) (storks.PickResult, error) {
	return storks.PickResult{Endpoint: f.e}, nil
}

// An address whose connections fail is ejected after ConsecutiveFailures
// faults: selectors no longer see it and no call is sent to it.
func TestEjectionTakesAFailingAddressOutOfRotation(t *testing.T) {
	dead := closedAddr(t)
	b, c := startFake(t, "b", fakeAnswer), startFake(t, "c", fakeAnswer)
	var log eventLog
	sel := &recordingBalancer{}
	_, ref := referAddrs(t, []string{dead, b.addr(), c.addr()},
		[]storks.ClientOption{log.option(), storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: 3, BaseBackoff: time.Hour})},
		storks.WithBalancer(sel.factory()))
	for i := range 30 {
		if _, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	ej := log.index(storks.EventEjected, dead, 0)
	if ej < 0 {
		t.Fatal("the dead address was never ejected")
	}
	if n := log.count(storks.EventAttempt, dead, 0); n != 3 {
		t.Errorf("%d attempts on the dead address, want 3 (then ejected)", n)
	}
	if n := log.count(storks.EventAttempt, dead, ej); n != 0 {
		t.Errorf("%d attempts on the dead address after its ejection", n)
	}
	if got := sel.firstOfNextCall(func() { callEcho(withTimeout(t, 5*time.Second), ref, "x") }); got != 2 {
		t.Errorf("the picker was built with %d endpoints, want 2", got)
	}
	if got := len(ref.Providers()); got != 3 {
		t.Errorf("Providers lists %d, want all 3", got)
	}
}

// At most MaxEjectedPercent of a reference's instances are out of rotation,
// and a reference with one instance never loses it.
func TestEjectionNeverTakesEveryInstance(t *testing.T) {
	policy := storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: 1, BaseBackoff: time.Hour})
	t.Run("two of three dead", func(t *testing.T) {
		c := startFake(t, "c", fakeAnswer)
		var log eventLog
		sel := &recordingBalancer{}
		_, ref := referAddrs(t, []string{closedAddr(t), closedAddr(t), c.addr()}, []storks.ClientOption{log.option(), policy}, storks.WithBalancer(sel.factory()))
		for range 20 {
			callEcho(withTimeout(t, 5*time.Second), ref, "x")
		}
		if n := log.count(storks.EventEjected, "", 0); n != 1 {
			t.Errorf("%d ejections, want 1 (50%% of 3)", n)
		}
		if got := sel.firstOfNextCall(func() { callEcho(withTimeout(t, 5*time.Second), ref, "x") }); got != 2 {
			t.Errorf("the picker was built with %d endpoints, want 2", got)
		}
	})
	t.Run("single instance", func(t *testing.T) {
		var log eventLog
		dead := closedAddr(t)
		_, ref := referAddrs(t, []string{dead}, []storks.ClientOption{log.option(), policy})
		for range 10 {
			callEcho(withTimeout(t, 5*time.Second), ref, "x")
		}
		if n := log.count(storks.EventEjected, "", 0); n != 0 {
			t.Errorf("the only instance was ejected")
		}
		if n := log.count(storks.EventAttempt, dead, 0); n < 10 {
			t.Errorf("%d attempts, want every call to try the only instance", n)
		}
	})
}

// An ejected address that hangs is probed after each back-off and stays out
// of rotation while the probes fail; once it answers pings it takes traffic
// again.
func TestEjectedAddressIsProbedAndReadmitted(t *testing.T) {
	a, b := startFake(t, "a", fakeHang), startFake(t, "b", fakeAnswer)
	a.pingOK.Store(false)
	var log eventLog
	_, ref := referAddrs(t, []string{a.addr(), b.addr()}, []storks.ClientOption{log.option(), storks.WithEjection(storks.EjectionPolicy{
		ConsecutiveFailures: 2, BaseBackoff: 20 * time.Millisecond, MaxBackoff: 60 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
	})})
	waitFor(t, func() bool {
		callEcho(withTimeout(t, 50*time.Millisecond), ref, "x")
		return log.index(storks.EventEjected, a.addr(), 0) >= 0
	})
	ej := log.index(storks.EventEjected, a.addr(), 0)
	// While a hangs, every call goes to b and succeeds; probes fail.
	waitFor(t, func() bool {
		if got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil || got != "b:x" {
			t.Fatalf("call while a is ejected: %q, %v", got, err)
		}
		time.Sleep(5 * time.Millisecond)
		return log.count(storks.EventProbe, a.addr(), 0) >= 3
	})
	if n := log.count(storks.EventAttempt, a.addr(), ej); n != 0 {
		t.Errorf("%d calls sent to a while it was ejected", n)
	}
	if n := log.count(storks.EventReadmitted, a.addr(), 0); n != 0 {
		t.Errorf("a was readmitted although its probes failed")
	}
	if a.pings.Load() == 0 {
		t.Errorf("no ping reached a")
	}
	// Each period is drawn from [d/2, d], d doubling from 20ms up to 60ms.
	d := 20 * time.Millisecond
	for i, ev := range log.all(storks.EventEjected, a.addr()) {
		if ev.Backoff < d/2 || ev.Backoff > d {
			t.Errorf("ejection %d lasts %v, want within [%v, %v]", i+1, ev.Backoff, d/2, d)
		}
		d = min(2*d, 60*time.Millisecond)
	}
	a.mode.Store(fakeAnswer)
	a.pingOK.Store(true)
	waitFor(t, func() bool { return log.index(storks.EventReadmitted, a.addr(), 0) >= 0 })
	seenA := false
	for range 4 {
		got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		if err != nil {
			t.Fatal(err)
		}
		seenA = seenA || got == "a:x"
	}
	if !seenA {
		t.Error("a takes no traffic after its readmission")
	}
}

// A real provider that went away is ejected and, once a provider serves on
// its address again, the ping probe (answered with a pong by the server)
// readmits it.
func TestEjectedProviderIsReadmittedWhenItIsBack(t *testing.T) {
	reg := newRegistry(t)
	srvA, _ := startProvider(t, reg, &echoImpl{name: "a"}, nil)
	srvB, _ := startProvider(t, reg, &echoImpl{name: "b"}, nil)
	addrA := srvA.Addr()
	var log eventLog
	_, ref := referAddrs(t, []string{addrA, srvB.Addr()}, []storks.ClientOption{log.option(), storks.WithEjection(storks.EjectionPolicy{
		ConsecutiveFailures: 2, BaseBackoff: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})})
	srvA.Close()
	waitFor(t, func() bool {
		if _, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil {
			t.Fatal(err)
		}
		return log.index(storks.EventEjected, addrA, 0) >= 0
	})
	srv := storks.NewServer(storks.WithShutdownWait(0))
	if _, err := srv.Export(&echoDesc, &echoImpl{name: "a2"}); err != nil {
		t.Fatal(err)
	}
	var lis interface{ Close() error }
	waitFor(t, func() bool {
		l, err := net.Listen("tcp", addrA)
		if err != nil {
			return false
		}
		lis = l
		go srv.Serve(l)
		return true
	})
	t.Cleanup(func() { srv.Close(); lis.Close() })
	waitFor(t, func() bool { return log.index(storks.EventReadmitted, addrA, 0) >= 0 })
	waitFor(t, func() bool {
		got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		return err == nil && got == "a2:x"
	})
}

// Close ends calls in flight, even calls without a deadline on a provider
// that never answers.
func TestCloseEndsCallsOnAHungProvider(t *testing.T) {
	hang := startFake(t, "h", fakeHang)
	cli, ref := referAddrs(t, []string{hang.addr()}, nil)
	done := make(chan error, 1)
	go func() {
		_, err := callEcho(context.Background(), ref, "x")
		done <- err
	}()
	waitFor(t, func() bool { return hang.requests.Load() == 1 })
	closed := make(chan struct{})
	go func() { cli.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while a call waits for a hung provider")
	}
	if err := <-done; err == nil {
		t.Fatal("the call succeeded")
	}
}

// If the provider list shrinks so that more instances are ejected than the
// cap allows, the reference calls some of them anyway rather than none.
func TestEjectedInstancesReturnWhenTheListShrinks(t *testing.T) {
	reg := newRegistry(t)
	dead := closedAddr(t)
	b := startFake(t, "b", fakeAnswer)
	c := startFake(t, "c", fakeAnswer)
	inst := func(id, addr string) registry.Instance {
		return registry.Instance{Key: registry.ServiceKey{Service: echoService}, ID: id, Addr: addr}
	}
	ctx := context.Background()
	for _, in := range []registry.Instance{inst("a", dead), inst("b", b.addr()), inst("c", c.addr())} {
		if err := reg.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	var log eventLog
	_, ref := refer(t, reg, []storks.ClientOption{log.option(), storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: 1, BaseBackoff: time.Hour})},
		storks.WithBalancer(prefer(dead)))
	waitFor(t, func() bool { return len(ref.Providers()) == 3 })
	if _, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil {
		t.Fatal(err)
	}
	if log.index(storks.EventEjected, dead, 0) < 0 {
		t.Fatal("the dead address was not ejected")
	}
	// b and c leave: only the ejected instance is left, and calls try it.
	reg.Deregister(ctx, inst("b", b.addr()))
	reg.Deregister(ctx, inst("c", c.addr()))
	waitFor(t, func() bool { return len(ref.Providers()) == 1 })
	from := log.len()
	_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "connect to "+dead)
	if n := log.count(storks.EventAttempt, dead, from); n == 0 {
		t.Error("the only instance left is not called because it is ejected")
	}
}

// With MaxEjectedPercent 100 every instance may be ejected; the reference
// then calls them all rather than none.
func TestEjectingEveryInstanceKeepsCalling(t *testing.T) {
	var log eventLog
	dead := closedAddr(t)
	_, ref := referAddrs(t, []string{dead}, []storks.ClientOption{log.option(),
		storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: 1, BaseBackoff: time.Hour, MaxEjectedPercent: 100})})
	for range 3 {
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, "connect to "+dead)
	}
	if log.index(storks.EventEjected, dead, 0) < 0 {
		t.Error("the instance was not ejected")
	}
}

// A connection that drains (its provider left the list) takes no new call
// once it decided to close: a call that raced with the close is refused
// before it is sent, and goes elsewhere, so that no call, idempotent or
// not, fails while providers come and go.
func TestDrainingConnectionsLoseNoCall(t *testing.T) {
	reg := newRegistry(t)
	srvA, _ := startProvider(t, reg, &echoImpl{name: "a"}, nil)
	startProvider(t, reg, &echoImpl{name: "b"}, nil)
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithoutEjection()})
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	a := ref.Providers()[0]
	if a.Addr != srvA.Addr() {
		a = ref.Providers()[1]
	}
	load := loadtest.Start(32, 5*time.Second, 0, func(ctx context.Context) error {
		_, err := callEcho(ctx, ref, "x")
		return err
	})
	// A leaves and comes back, over and over: each time the reference
	// drains its connection to A and later dials a new one.
	ctx := context.Background()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		reg.Deregister(ctx, a)
		time.Sleep(time.Millisecond)
		reg.Register(ctx, a)
		time.Sleep(time.Millisecond)
	}
	if res := load.Stop(); res.Failed > 0 {
		t.Fatalf("%d of %d calls failed while a provider came and went; first: %v", res.Failed, res.Calls, res.FirstErr)
	}
}
