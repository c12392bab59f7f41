package registry_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

func fixedRegistries(t *testing.T) map[string]registry.Registry {
	t.Helper()
	st, err := registry.NewStatic("b.example:2", "a.example:1")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]registry.Registry{
		"direct":    mustOpen(t, "direct://a.example:1?weight=5"),
		"static":    mustOpen(t, "static://b.example:2,a.example:1"),
		"NewStatic": st,
	}
}

func TestFixedDiscover(t *testing.T) {
	ctx := context.Background()
	for name, r := range fixedRegistries(t) {
		t.Run(name, func(t *testing.T) {
			defer r.Close()
			for _, key := range []registry.ServiceKey{
				{Service: "helloworld.Greeter"},
				{Service: "other.Service", Version: "2.0", Group: "blue"},
			} {
				list, err := r.Discover(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				want := []string{"a.example:1", "b.example:2"}
				if name == "direct" {
					want = want[:1]
				}
				if got := registrytest.IDs(list); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("Discover(%v) IDs = %q, want %q", key, got, want)
				}
				for _, in := range list {
					if in.Key != key || in.Addr != in.ID || in.Metadata != nil {
						t.Errorf("Discover(%v) returned %+v; want Key = the requested key, Addr = ID, no metadata", key, in)
					}
					if wantW := map[bool]int{true: 5, false: registry.DefaultWeight}[name == "direct"]; in.Weight != wantW {
						t.Errorf("weight = %d, want %d", in.Weight, wantW)
					}
				}
				list[0].Addr = "changed:1" // callers own what they get
			}
			if list, _ := r.Discover(ctx, registry.ServiceKey{Service: "s"}); list[0].Addr != "a.example:1" {
				t.Errorf("Discover returned a list shared with an earlier caller")
			}
		})
	}
}

func TestFixedRegisterIsNoOp(t *testing.T) {
	ctx := context.Background()
	for name, r := range fixedRegistries(t) {
		t.Run(name, func(t *testing.T) {
			defer r.Close()
			key := registry.ServiceKey{Service: "s"}
			in := registry.Instance{Key: key, ID: "x", Addr: "10.0.0.9:9"}
			if err := r.Register(ctx, in); err != nil {
				t.Fatalf("Register: %v", err)
			}
			list, _ := r.Discover(ctx, key)
			for _, got := range list {
				if got.ID == "x" {
					t.Error("Register changed the fixed list")
				}
			}
			if err := r.Deregister(ctx, registry.Instance{Key: key, ID: "a.example:1"}); err != nil {
				t.Fatalf("Deregister: %v", err)
			}
			if list2, _ := r.Discover(ctx, key); len(list2) != len(list) {
				t.Error("Deregister changed the fixed list")
			}
			// Input is validated all the same.
			for _, tc := range []struct {
				err   error
				field string
			}{
				{r.Register(ctx, registry.Instance{Key: key, ID: "x", Addr: "nohost"}), "address"},
				{r.Register(ctx, registry.Instance{Key: key, Addr: "h:1"}), "instance ID"},
				{r.Register(ctx, registry.Instance{Key: key, ID: "x", Addr: "h:1", Weight: -1}), "weight"},
				{r.Register(ctx, registry.Instance{ID: "x", Addr: "h:1"}), "service"},
				{r.Deregister(ctx, registry.Instance{Key: registry.ServiceKey{Service: "a/b"}, ID: "x"}), "service"},
				{r.Deregister(ctx, registry.Instance{Key: key}), "instance ID"},
				{func() error { _, err := r.Discover(ctx, registry.ServiceKey{}); return err }(), "service"},
				{func() error { _, err := r.Watch(ctx, registry.ServiceKey{Service: "s", Group: "a b"}); return err }(), "group"},
			} {
				var ie *registry.InputError
				if !errors.As(tc.err, &ie) || !strings.Contains(tc.err.Error(), tc.field) {
					t.Errorf("error %v, want an *InputError naming %q", tc.err, tc.field)
				}
			}
		})
	}
}

func TestFixedWatch(t *testing.T) {
	ctx := context.Background()
	key := registry.ServiceKey{Service: "s", Version: "1"}
	for name, r := range fixedRegistries(t) {
		t.Run(name, func(t *testing.T) {
			defer r.Close()
			next := func(w registry.Watcher, d time.Duration) ([]registry.Instance, error) {
				ctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				return w.Next(ctx)
			}

			// The first Next returns the list, later ones wait for the end.
			w, err := r.Watch(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			list, err := next(w, time.Second)
			if err != nil || len(list) == 0 || list[0].Key != key {
				t.Fatalf("first Next = %v, %v", list, err)
			}
			if _, err := next(w, 20*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("second Next = %v, want DeadlineExceeded", err)
			}
			stopped := make(chan error, 1)
			go func() { _, err := next(w, 10*time.Second); stopped <- err }()
			w.Stop()
			w.Stop()
			if err := <-stopped; !errors.Is(err, registry.ErrClosed) {
				t.Errorf("Next ended by Stop = %v, want ErrClosed", err)
			}

			// The Watch context ends the watch.
			wctx, cancel := context.WithCancel(ctx)
			w2, err := r.Watch(wctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer w2.Stop()
			if _, err := next(w2, time.Second); err != nil {
				t.Fatal(err)
			}
			ended := make(chan error, 1)
			go func() { _, err := next(w2, 10*time.Second); ended <- err }()
			cancel()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Errorf("Next ended by the Watch context = %v, want context.Canceled", err)
			}
			if _, err := r.Watch(wctx, key); !errors.Is(err, context.Canceled) {
				t.Errorf("Watch with a canceled context = %v, want context.Canceled", err)
			}

			// Close ends every watch and call.
			w3, err := r.Watch(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			closed := make(chan error, 1)
			go func() {
				if _, err := next(w3, time.Second); err != nil {
					closed <- err
					return
				}
				_, err := next(w3, 10*time.Second)
				closed <- err
			}()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if err := <-closed; !errors.Is(err, registry.ErrClosed) {
				t.Errorf("Next ended by Close = %v, want ErrClosed", err)
			}
			if err := r.Close(); !errors.Is(err, registry.ErrClosed) {
				t.Errorf("second Close = %v, want ErrClosed", err)
			}
			in := registry.Instance{Key: key, ID: "x", Addr: "h:1"}
			for what, err := range map[string]error{
				"Register":   r.Register(ctx, in),
				"Deregister": r.Deregister(ctx, in),
				"Discover":   func() error { _, err := r.Discover(ctx, key); return err }(),
				"Watch":      func() error { _, err := r.Watch(ctx, key); return err }(),
			} {
				if !errors.Is(err, registry.ErrClosed) {
					t.Errorf("%s after Close = %v, want ErrClosed", what, err)
				}
			}
		})
	}
}

func TestNewStaticErrors(t *testing.T) {
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{nil, "address list"},
		{[]string{"a:1", ""}, "address"},
		{[]string{"a:1", "b"}, "address"},
		{[]string{"a:0"}, "port"},
		{[]string{"a:1", "a:1"}, "more than once"},
		{[]string{"::1:80"}, "address"},
	} {
		_, err := registry.NewStatic(tc.addrs...)
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewStatic(%q) = %v, want an *InputError mentioning %q", tc.addrs, err, tc.want)
		}
	}
}
