package runtime_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

type callResult struct {
	reply string
	err   error
	took  time.Duration
}

// callAsync starts a call and returns the channel its result arrives on.
func callAsync(ctx context.Context, ref *storks.Reference, opts ...storks.CallOption) <-chan callResult {
	ch := make(chan callResult, 1)
	start := time.Now()
	go func() {
		reply, err := callEcho(ctx, ref, "x", opts...)
		ch <- callResult{reply, err, time.Since(start)}
	}()
	return ch
}

// A call made while no provider exists succeeds once one registers, with
// the option on the client, the reference or the call, under any fail
// mode.
func TestWaitForProviderCallSucceedsOnceAProviderAppears(t *testing.T) {
	for _, c := range []struct {
		name  string
		copts []storks.ClientOption
		ropts []storks.ReferOption
		call  []storks.CallOption
	}{
		{name: "client", copts: []storks.ClientOption{storks.WithWaitForProvider()}},
		{name: "reference", ropts: []storks.ReferOption{storks.WithWaitForProvider()}},
		{name: "call", call: []storks.CallOption{storks.WithWaitForProvider()}},
		{name: "call under Failbackup", call: []storks.CallOption{storks.WithWaitForProvider(), storks.WithIdempotent()},
			ropts: []storks.ReferOption{storks.Failbackup(time.Second)}},
		{name: "reference under Failover", ropts: []storks.ReferOption{storks.WithWaitForProvider(), storks.Failover(2)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := newRegistry(t)
			_, ref := refer(t, reg, c.copts, c.ropts...)
			res := callAsync(withTimeout(t, 10*time.Second), ref, c.call...)
			time.Sleep(200 * time.Millisecond)
			select {
			case r := <-res:
				t.Fatalf("the call ended before a provider existed: %q, %v", r.reply, r.err)
			default:
			}
			startProvider(t, reg, &echoImpl{name: "late"}, nil)
			r := <-res
			if r.err != nil || r.reply != "late:x" {
				t.Fatalf("call: %q, %v", r.reply, r.err)
			}
			t.Logf("the call waited %v", r.took.Round(time.Millisecond))
		})
	}
}

// A waiting call ends by its deadline (or the reference's default timeout)
// with DeadlineExceeded, saying that no provider appeared; without the
// option the call fails at once with ErrNoProvider.
func TestWaitForProviderIsBoundedByTheDeadline(t *testing.T) {
	t.Run("call deadline", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, storks.WithWaitForProvider())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := <-callAsync(ctx, ref)
		wantCode(t, r.err, storks.CodeDeadlineExceeded, "no provider appeared for test.Echo within the deadline")
		if !errors.Is(r.err, storks.ErrNoProvider) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, ErrNoProvider and DeadlineExceeded) = false", r.err)
		}
		if r.took < 190*time.Millisecond || r.took > 700*time.Millisecond {
			t.Errorf("the call took %v, want about 200ms", r.took)
		}
		t.Logf("a 200ms call failed after %v: %v", r.took.Round(time.Millisecond), r.err)
	})
	t.Run("default timeout", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, storks.WithWaitForProvider(), storks.WithDefaultTimeout(150*time.Millisecond))
		r := <-callAsync(context.Background(), ref)
		wantCode(t, r.err, storks.CodeDeadlineExceeded, "no provider appeared for test.Echo within the deadline")
		if r.took < 140*time.Millisecond || r.took > 650*time.Millisecond {
			t.Errorf("the call took %v, want about 150ms", r.took)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, storks.WithWaitForProvider())
		ctx, cancel := context.WithCancel(context.Background())
		res := callAsync(ctx, ref)
		time.Sleep(50 * time.Millisecond)
		cancel()
		r := <-res
		wantCode(t, r.err, storks.CodeCanceled, "no provider appeared for test.Echo before the call was canceled")
	})
	t.Run("without the option", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil)
		r := <-callAsync(withTimeout(t, 5*time.Second), ref)
		wantCode(t, r.err, storks.CodeUnavailable, "no provider for test.Echo")
		if !errors.Is(r.err, storks.ErrNoProvider) {
			t.Errorf("errors.Is(%v, ErrNoProvider) = false", r.err)
		}
		if r.took > 100*time.Millisecond {
			t.Errorf("the call took %v, want an immediate failure", r.took)
		}
	})
	t.Run("reference closed", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, storks.WithWaitForProvider())
		res := callAsync(withTimeout(t, 10*time.Second), ref)
		time.Sleep(50 * time.Millisecond)
		ref.Close()
		select {
		case r := <-res:
			if !errors.Is(r.err, storks.ErrClientClosed) {
				t.Errorf("call: %v, want ErrClientClosed", r.err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the waiting call did not end when the reference was closed")
		}
	})
}

// downRegistry is an in-process registry that cannot be reached while down
// is set: Watch fails.
type downRegistry struct {
	*registry.Inproc
	down    atomic.Bool
	watches atomic.Int64
}

func (d *downRegistry) Watch(ctx context.Context, key registry.ServiceKey) (registry.Watcher, error) {
	d.watches.Add(1)
	if d.down.Load() {
		return nil, errInjected
	}
	return d.Inproc.Watch(ctx, key)
}

// With WithWaitForProvider, Refer neither fails nor blocks while the
// registry is unreachable: the reference starts watching once it is back,
// and a waiting call goes through.
func TestWaitForProviderReferWhileTheRegistryIsDown(t *testing.T) {
	reg := &downRegistry{Inproc: newRegistry(t).(*registry.Inproc)}
	reg.down.Store(true)
	cli := newClient(t, storks.WithRegistry(reg), storks.WithLogger(discard()))
	if _, err := cli.Refer(withTimeout(t, time.Second), echoService); !errors.Is(err, errInjected) {
		t.Fatalf("Refer without the option: %v, want the registry's error", err)
	}
	var logs logBuffer
	waiting := newClient(t, storks.WithRegistry(reg), storks.WithLogger(logs.logger()))
	start := time.Now()
	ref, err := waiting.Refer(withTimeout(t, time.Second), echoService, storks.WithWaitForProvider(), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Refer took %v", d)
	}
	res := callAsync(withTimeout(t, 10*time.Second), ref)
	startProvider(t, reg.Inproc, &echoImpl{name: "p"}, nil)
	time.Sleep(300 * time.Millisecond)
	reg.down.Store(false)
	back := time.Now()
	r := <-res
	if r.err != nil || r.reply != "p:x" {
		t.Fatalf("call: %q, %v", r.reply, r.err)
	}
	// There was no list to keep: the log must not claim one.
	if l := logs.String(); !strings.Contains(l, "the registry has not answered yet") || strings.Contains(l, "last known list") {
		t.Errorf("log while the registry was down:\n%s", l)
	}
	t.Logf("the call went through %v after the registry came back (%d watch attempts)",
		time.Since(back).Round(time.Millisecond), reg.watches.Load())
}

// listCounter is an in-process registry that counts the calls of its
// registry.Lister method.
type listCounter struct {
	*registry.Inproc
	services atomic.Int64
	block    bool // Services waits for its context to end
}

func (l *listCounter) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	l.services.Add(1)
	if l.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return l.Inproc.Services(ctx)
}

// noLister hides the registry.Lister method of a registry.
type noLister struct{ registry.Registry }

// A version mismatch: the error says which versions and groups the
// registry has, with their providers, and how to refer to them; the
// registry is asked at most once a second per reference.
func TestNoProviderNamesOtherVersionsAndGroups(t *testing.T) {
	reg := &listCounter{Inproc: newRegistry(t).(*registry.Inproc)}
	startProvider(t, reg.Inproc, &echoImpl{name: "a"}, nil, storks.WithVersion("v1"))
	startProvider(t, reg.Inproc, &echoImpl{name: "b"}, nil, storks.WithVersion("v1"))
	startProvider(t, reg.Inproc, &echoImpl{name: "c"}, nil, storks.WithVersion("v2"), storks.WithGroup("blue"))

	_, ref := refer(t, reg, nil)
	_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
	const want = `storks: Unavailable: no provider for test.Echo (version "", group ""); ` +
		`the registry has test.Echo:v1 with 2 providers, blue/test.Echo:v2 with 1 provider; ` +
		`refer with WithVersion("v1") or WithVersion("v2") and WithGroup("blue")`
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	if !errors.Is(err, storks.ErrNoProvider) {
		t.Errorf("errors.Is(%v, ErrNoProvider) = false", err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if _, err := callEcho(context.Background(), ref, "x"); err == nil || err.Error() != want {
					t.Errorf("error %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := reg.services.Load(); n != 1 {
		t.Errorf("%d registry queries for 1001 failed calls, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	callEcho(context.Background(), ref, "x")
	if n := reg.services.Load(); n != 2 {
		t.Errorf("%d registry queries after a second, want 2", n)
	}

	t.Run("group", func(t *testing.T) {
		_, ref := refer(t, reg, nil, storks.WithVersion("v2"))
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		wantCode(t, err, storks.CodeUnavailable, `no provider for test.Echo:v2 (version "v2", group ""); `+
			`the registry has test.Echo:v1 with 2 providers, blue/test.Echo:v2 with 1 provider; `+
			`refer with WithVersion("v1") or WithGroup("blue")`)
	})
	t.Run("waiting call", func(t *testing.T) {
		_, ref := refer(t, reg, nil, storks.WithWaitForProvider())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := <-callAsync(ctx, ref)
		wantCode(t, r.err, storks.CodeDeadlineExceeded, `no provider appeared for test.Echo (version "", group "") within the deadline; `+
			`the registry has test.Echo:v1 with 2 providers`)
		if r.took > 700*time.Millisecond {
			t.Errorf("the call took %v", r.took)
		}
	})
	t.Run("no Lister", func(t *testing.T) {
		_, ref := refer(t, noLister{reg}, nil)
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		if err == nil || err.Error() != "storks: Unavailable: no provider for test.Echo" {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("no other key", func(t *testing.T) {
		other := &listCounter{Inproc: newRegistry(t).(*registry.Inproc)}
		_, ref := refer(t, other, nil)
		_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
		if err == nil || err.Error() != "storks: Unavailable: no provider for test.Echo" {
			t.Fatalf("error %v", err)
		}
	})
}

// A registry that does not answer the query delays a failing call by at
// most the query's bound, and the concurrent calls share one query.
func TestNoProviderHintIsBounded(t *testing.T) {
	reg := &listCounter{Inproc: newRegistry(t).(*registry.Inproc), block: true}
	_, ref := refer(t, reg, nil)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			_, err := callEcho(context.Background(), ref, "x")
			if err == nil || err.Error() != "storks: Unavailable: no provider for test.Echo" {
				t.Errorf("error %v", err)
			}
			if d := int64(time.Since(start)); d > slowest.Load() {
				slowest.Store(d)
			}
		}()
	}
	wg.Wait()
	if d := time.Duration(slowest.Load()); d > 600*time.Millisecond {
		t.Errorf("the slowest call took %v", d)
	}
	if n := reg.services.Load(); n != 1 {
		t.Errorf("%d registry queries, want 1", n)
	}
	// A call whose context ends first does not wait for the query.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	time.Sleep(time.Second) // the last answer ("") is stale
	start := time.Now()
	callEcho(ctx, ref, "x")
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("a call with a 20ms deadline took %v", d)
	}
}

// A request for a key the server does not export names the keys of the
// same service it does export; the error is still one that provably did
// not run, so a call goes on to another provider.
func TestNotExportedNamesTheExportedVersions(t *testing.T) {
	reg := newRegistry(t)
	v1, _ := startProvider(t, reg, &echoImpl{name: "v1"}, nil, storks.WithVersion("v1"))
	_, ref := refer(t, mustOpen(t, "direct://"+v1.Addr()), nil)
	_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
	want := "storks: Unimplemented: service test.Echo (no version) is not exported by " + v1.Addr() + "; it exports test.Echo:v1"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}

	_, ref = refer(t, mustOpen(t, "direct://"+v1.Addr()), nil, storks.WithVersion("v3"), storks.WithGroup("g"))
	_, err = callEcho(withTimeout(t, 5*time.Second), ref, "x")
	wantCode(t, err, storks.CodeUnimplemented, "service g/test.Echo:v3 is not exported by "+v1.Addr()+"; it exports test.Echo:v1")

	// Another service entirely: no list.
	other := storks.NewServer()
	if _, err := other.Export(&bytesDesc, bytesImpl{}); err != nil {
		t.Fatal(err)
	}
	lis, _ := serve(t, other)
	_, ref = refer(t, mustOpen(t, "direct://"+lis.Addr().String()), nil)
	_, err = callEcho(withTimeout(t, 5*time.Second), ref, "x")
	if want := "storks: Unimplemented: service test.Echo is not exported by " + lis.Addr().String(); err == nil || err.Error() != want {
		t.Fatalf("error %v, want %s", err, want)
	}

	// Failover still works: the mismatched provider did not run the call.
	plain, _ := startProvider(t, reg, &echoImpl{name: "plain"}, nil)
	_, ref = refer(t, mustOpen(t, "static://"+v1.Addr()+","+plain.Addr()), nil)
	for range 6 {
		if got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil || got != "plain:x" {
			t.Fatalf("call: %q, %v", got, err)
		}
	}
}
