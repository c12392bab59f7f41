package runtime_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/runtime"
)

type callResult struct {
	reply string
	err   error
	took  time.Duration
}

// callAsync starts a call and returns the channel its result arrives on.
func callAsync(ctx context.Context, ref *runtime.Reference, opts ...runtime.CallOption) <-chan callResult {
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
		copts []runtime.ClientOption
		ropts []runtime.ReferOption
		call  []runtime.CallOption
	}{
		{name: "client", copts: []runtime.ClientOption{runtime.WithWaitForProvider()}},
		{name: "reference", ropts: []runtime.ReferOption{runtime.WithWaitForProvider()}},
		{name: "call", call: []runtime.CallOption{runtime.WithWaitForProvider()}},
		{name: "call under Failbackup", call: []runtime.CallOption{runtime.WithWaitForProvider(), runtime.WithIdempotent()},
			ropts: []runtime.ReferOption{runtime.Failbackup(time.Second)}},
		{name: "reference under Failover", ropts: []runtime.ReferOption{runtime.WithWaitForProvider(), runtime.Failover(2)}},
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
		_, ref := refer(t, newRegistry(t), nil, runtime.WithWaitForProvider())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		r := <-callAsync(ctx, ref)
		wantCode(t, r.err, runtime.CodeDeadlineExceeded, "no provider appeared for test.Echo within the deadline")
		if !errors.Is(r.err, runtime.ErrNoProvider) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, ErrNoProvider and DeadlineExceeded) = false", r.err)
		}
		if r.took < 190*time.Millisecond || r.took > 700*time.Millisecond {
			t.Errorf("the call took %v, want about 200ms", r.took)
		}
		t.Logf("a 200ms call failed after %v: %v", r.took.Round(time.Millisecond), r.err)
	})
	t.Run("default timeout", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, runtime.WithWaitForProvider(), runtime.WithDefaultTimeout(150*time.Millisecond))
		r := <-callAsync(context.Background(), ref)
		wantCode(t, r.err, runtime.CodeDeadlineExceeded, "no provider appeared for test.Echo within the deadline")
		if r.took < 140*time.Millisecond || r.took > 650*time.Millisecond {
			t.Errorf("the call took %v, want about 150ms", r.took)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, runtime.WithWaitForProvider())
		ctx, cancel := context.WithCancel(context.Background())
		res := callAsync(ctx, ref)
		time.Sleep(50 * time.Millisecond)
		cancel()
		r := <-res
		wantCode(t, r.err, runtime.CodeCanceled, "no provider appeared for test.Echo before the call was canceled")
	})
	t.Run("without the option", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil)
		r := <-callAsync(withTimeout(t, 5*time.Second), ref)
		wantCode(t, r.err, runtime.CodeUnavailable, "no provider for test.Echo")
		if !errors.Is(r.err, runtime.ErrNoProvider) {
			t.Errorf("errors.Is(%v, ErrNoProvider) = false", r.err)
		}
		if r.took > 100*time.Millisecond {
			t.Errorf("the call took %v, want an immediate failure", r.took)
		}
	})
	t.Run("reference closed", func(t *testing.T) {
		_, ref := refer(t, newRegistry(t), nil, runtime.WithWaitForProvider())
		res := callAsync(withTimeout(t, 10*time.Second), ref)
		time.Sleep(50 * time.Millisecond)
		ref.Close()
		select {
		case r := <-res:
			if !errors.Is(r.err, runtime.ErrClientClosed) {
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
	cli := newClient(t, runtime.WithRegistry(reg), runtime.WithLogger(discard()))
	if _, err := cli.Refer(withTimeout(t, time.Second), echoService); !errors.Is(err, errInjected) {
		t.Fatalf("Refer without the option: %v, want the registry's error", err)
	}
	start := time.Now()
	ref, err := cli.Refer(withTimeout(t, time.Second), echoService, runtime.WithWaitForProvider(), runtime.WithRemote())
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
	t.Logf("the call went through %v after the registry came back (%d watch attempts)",
		time.Since(back).Round(time.Millisecond), reg.watches.Load())
}
