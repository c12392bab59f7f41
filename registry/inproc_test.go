package registry_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

func TestInprocConformance(t *testing.T) {
	t.Run("private", func(t *testing.T) {
		shared := registry.NewInproc()
		registrytest.Run(t, registrytest.Harness{
			Open:   func(t *testing.T) registry.Registry { return shared.Handle() },
			Settle: 5 * time.Second,
			Rules:  true,
		})
	})
	t.Run("default", func(t *testing.T) {
		registrytest.Run(t, registrytest.Harness{
			Open:     func(t *testing.T) registry.Registry { return mustOpen(t, "inproc://") },
			Settle:   5 * time.Second,
			Parallel: true,
			Rules:    true,
		})
	})
	t.Run("named", func(t *testing.T) {
		registrytest.Run(t, registrytest.Harness{
			Open:     func(t *testing.T) registry.Registry { return mustOpen(t, "inproc://conformance") },
			Settle:   5 * time.Second,
			Parallel: true,
			Rules:    true,
		})
	})
}

func mustOpen(t testing.TB, url string) registry.Registry {
	t.Helper()
	r, err := registry.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	return r
}

func TestInprocSharing(t *testing.T) {
	ctx := context.Background()
	key := registrytest.UniqueKey(t)
	in := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"}

	def := registry.Default()
	defer def.Close()
	if err := def.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	defer def.Deregister(ctx, in)

	viaURL := mustOpen(t, "inproc://")
	defer viaURL.Close()
	named := mustOpen(t, "inproc://sharing-test")
	defer named.Close()
	named2 := mustOpen(t, "inproc://sharing-test")
	defer named2.Close()
	other := mustOpen(t, "inproc://sharing-test-other")
	defer other.Close()
	private := registry.NewInproc()
	defer private.Close()

	count := func(r registry.Registry) int {
		t.Helper()
		list, err := r.Discover(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if n := count(viaURL); n != 1 {
		t.Errorf("inproc:// sees %d instances registered through Default(), want 1", n)
	}
	for name, r := range map[string]registry.Registry{"inproc://sharing-test": named, "other named": other, "NewInproc": private} {
		if n := count(r); n != 0 {
			t.Errorf("%s sees %d instances of the default registry, want 0", name, n)
		}
	}
	if err := named.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	if n := count(named2); n != 1 {
		t.Errorf("a second handle on inproc://sharing-test sees %d instances, want 1", n)
	}
	if n := count(other); n != 0 {
		t.Errorf("inproc://sharing-test-other sees %d instances, want 0", n)
	}
}

func TestInprocCloseHandle(t *testing.T) {
	ctx := context.Background()
	key := registrytest.UniqueKey(t)
	a := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"}
	b := registry.Instance{Key: key, ID: "b", Addr: "127.0.0.1:2"}

	h1 := registry.NewInproc()
	h2 := h1.Handle()
	defer h2.Close()
	if err := h1.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := h2.Register(ctx, b); err != nil {
		t.Fatal(err)
	}
	w1, err := h1.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := h2.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	registrytest.WaitFor(t, w2, time.Second, registrytest.HasIDs("a", "b"))

	if err := h1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h1.Close(); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if _, err := w1.Next(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Next on a watcher of the closed handle = %v, want ErrClosed", err)
	}
	// Nothing was deregistered, and the other handle and its watcher work.
	list, err := h2.Discover(ctx, key)
	if err != nil || len(list) != 2 {
		t.Fatalf("Discover on the other handle = %v, %v; want both instances", list, err)
	}
	if err := h2.Deregister(ctx, a); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, w2, time.Second, registrytest.HasIDs("b"))

	// A closed handle can still make an open one.
	h3 := h1.Handle()
	defer h3.Close()
	if list, err := h3.Discover(ctx, key); err != nil || len(list) != 1 {
		t.Errorf("Discover on a handle made from a closed one = %v, %v; want [b]", list, err)
	}
}

// TestInprocCoalesces checks that a watcher that does not read does not
// hold up writers, and then sees only the latest list.
func TestInprocCoalesces(t *testing.T) {
	ctx := context.Background()
	r := registry.NewInproc()
	defer r.Close()
	key := registrytest.UniqueKey(t)
	w, err := r.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if list, err := w.Next(ctx); err != nil || len(list) != 0 {
		t.Fatalf("first Next = %v, %v", list, err)
	}
	for i := range 10000 {
		in := registry.Instance{Key: key, ID: fmt.Sprint(i % 100), Addr: "127.0.0.1:1", Weight: i}
		if err := r.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	list, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 100 {
		t.Fatalf("Next after 10000 changes returned %d instances, want the latest 100", len(list))
	}
	for _, in := range list {
		if in.Weight < 9900 {
			t.Fatalf("Next returned a stale instance %+v", in)
		}
	}
	// The list is up to date, so Next now waits.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := w.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with no change = %v, want DeadlineExceeded", err)
	}
}

// TestInprocNoChangeNoWake checks that a change that is undone before Next
// looks, and a re-registration of an identical instance, wake nobody.
func TestInprocNoChangeNoWake(t *testing.T) {
	ctx := context.Background()
	r := registry.NewInproc()
	defer r.Close()
	key := registrytest.UniqueKey(t)
	a := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: map[string]string{"k": "v"}}
	if err := r.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	w, err := r.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := w.Next(ctx); err != nil {
		t.Fatal(err)
	}
	b := registry.Instance{Key: key, ID: "b", Addr: "127.0.0.1:2"}
	_ = r.Register(ctx, b)
	_ = r.Deregister(ctx, b)
	_ = r.Register(ctx, a.Clone())
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if list, err := w.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next = %v, %v; want no change (DeadlineExceeded)", list, err)
	}
}

func TestInprocDeepCopies(t *testing.T) {
	ctx := context.Background()
	r := registry.NewInproc()
	defer r.Close()
	key := registrytest.UniqueKey(t)
	md := map[string]string{"zone": "a"}
	if err := r.Register(ctx, registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: md}); err != nil {
		t.Fatal(err)
	}
	md["zone"] = "changed after Register" // not allowed by the contract, but harmless here
	list, _ := r.Discover(ctx, key)
	if list[0].Metadata["zone"] != "a" {
		t.Errorf("the registry shares the metadata map passed to Register")
	}
}

func TestInprocNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx := context.Background()
	key := registrytest.UniqueKey(t)
	for range 20 {
		r := registry.NewInproc()
		h := r.Handle()
		var wg sync.WaitGroup
		for i := range 10 {
			wctx, cancel := context.WithCancel(ctx)
			w, err := h.Watch(wctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Next(ctx); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() { // blocked in Next until the watch ends one way or another
				defer wg.Done()
				_, _ = w.Next(ctx)
			}()
			switch i % 3 {
			case 0:
				cancel()
			case 1:
				w.Stop()
				cancel()
			default:
				defer cancel() // ended by Close below
			}
		}
		_ = r.Register(ctx, registry.Instance{Key: key, ID: "x", Addr: "127.0.0.1:1"})
		h.Close()
		r.Close()
		wg.Wait()
	}
	registrytest.Eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

func TestInprocWatcherUnregistered(t *testing.T) {
	// Stopped watchers (by Stop, ctx or Close) must not be notified any more;
	// this is observable as the absence of a race or panic, and as a
	// watcher that keeps returning its end error.
	ctx := context.Background()
	r := registry.NewInproc()
	key := registrytest.UniqueKey(t)
	wctx, cancel := context.WithCancel(ctx)
	w, err := r.Watch(wctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after the watch context was canceled = %v, want context.Canceled", err)
	}
	w.Stop() // the first reason stays
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after Stop of an ended watch = %v, want context.Canceled", err)
	}
	_ = r.Register(ctx, registry.Instance{Key: key, ID: "x", Addr: "127.0.0.1:1"})
	r.Close()
	if _, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after Close of an ended watch = %v, want context.Canceled", err)
	}
}
