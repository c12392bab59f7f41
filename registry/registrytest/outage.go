package registrytest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// The rule every networked adapter follows when its server cannot be
// reached, which the functions below check:
//
//   - Open does not fail because the server is unreachable: it returns a
//     registry that keeps connecting in the background, after one warning
//     naming the address and the cause. A refused connection makes Open
//     return at once.
//   - While the server is unreachable, Register, Deregister, Discover and
//     Services fail fast with an error naming the address and the cause; a
//     refused connection fails within milliseconds, not after a timeout.
//   - Watch works: its first Next waits for the first list, and if its
//     context ends first, it returns the context's error together with why
//     there is no list.
//   - Once the server is up, everything works without opening the
//     registry again, and watches deliver their first list. A Register that
//     failed while the server was down stays failed: the adapter does not
//     retry it behind the caller's back.

// FastFail bounds how long Open, and every call, may take against a port
// that refuses connections. It is generous: they take milliseconds.
const FastFail = 2 * time.Second

// CheckRefused checks the rule against rawURL, whose server address addr
// refuses connections (a closed port on the loopback interface): Open
// returns within FastFail without an error, every call fails within
// FastFail naming addr and the refused connection, a watch can be started
// and its first Next says why it has no list, and Close works. It logs the
// times and errors.
func CheckRefused(t *testing.T, rawURL, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	r, err := registry.Open(ctx, rawURL)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Open of a port that refuses connections failed after %v: %v; want a registry that keeps connecting", took, err)
	}
	t.Logf("Open of a port that refuses connections returned after %v", took.Round(time.Microsecond))
	if took > FastFail {
		t.Errorf("Open of a port that refuses connections took %v; want less than %v", took, FastFail)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	key := UniqueKey(t)
	failFast(t, r, key, addr, "refused")
	w, err := r.Watch(ctx, key)
	if err != nil {
		t.Fatalf("Watch while the server is unreachable: %v; want a watch that waits for it", err)
	}
	defer w.Stop()
	firstNextFails(t, w, addr)
}

// failFast checks that every call of r fails within FastFail with an error
// naming addr and cause.
func failFast(t *testing.T, r registry.Registry, key registry.ServiceKey, addr, cause string) {
	t.Helper()
	in := registry.Instance{Key: key, ID: "while-down", Addr: "127.0.0.1:1"}
	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Register", func(ctx context.Context) error { return r.Register(ctx, in) }},
		{"Deregister", func(ctx context.Context) error { return r.Deregister(ctx, in) }},
		{"Discover", func(ctx context.Context) error { _, err := r.Discover(ctx, key); return err }},
	}
	if l, ok := r.(registry.Lister); ok {
		calls = append(calls, struct {
			name string
			call func(ctx context.Context) error
		}{"Services", func(ctx context.Context) error { _, err := l.Services(ctx); return err }})
	}
	for _, c := range calls {
		// A generous context: the call must fail by itself, fast.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := c.call(ctx)
		took := time.Since(start)
		cancel()
		switch {
		case err == nil:
			t.Errorf("%s while the server is down: no error", c.name)
			continue
		case took > FastFail:
			t.Errorf("%s while the server is down failed after %v; want less than %v: %v", c.name, took, FastFail, err)
		case !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), cause):
			t.Errorf("%s while the server is down: %v; want an error naming %s and %q", c.name, err, addr, cause)
		case errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s while the server is down waited for its context: %v", c.name, err)
		}
		t.Logf("%s while the server is down failed after %v: %v", c.name, took.Round(time.Microsecond), err)
	}
}

// firstNextFails checks that the first Next of a watch of an unreachable
// server, with a short context, returns the context's error naming addr.
func firstNextFails(t *testing.T, w registry.Watcher, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	list, err := w.Next(ctx)
	switch {
	case err == nil:
		t.Errorf("first Next of a watch while the server is down returned %s; want it to wait", Format(list))
	case !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr):
		t.Errorf("first Next of a watch while the server is down: %v; want the deadline and why there is no list, naming %s", err, addr)
	default:
		t.Logf("first Next of a watch while the server is down: %v", err)
	}
}

// Outage is a server that a test can stop and start again on the same
// address, for RunStartWhileDown.
type Outage struct {
	// Open opens a new client of the server that logs to log, the way
	// registry.Open does (usually with the adapter's New, to set the
	// logger). It is called while the server is stopped, and must not fail
	// because of it. Required.
	Open func(ctx context.Context, log *slog.Logger) (registry.Registry, error)
	// Addr is the address of the server, which errors must name.
	// Required.
	Addr string
	// Stop and Start stop the server and start it again on Addr.
	// Required.
	Stop, Start func(t *testing.T)
	// Settle bounds how long, once Start returned, Register may take to
	// work again and a watch to deliver an instance registered then. Zero
	// means DefaultSettle.
	Settle time.Duration
}

// RunStartWhileDown checks that a provider and a consumer can start while
// their server is down and work once it is up, with a real server that it
// stops: Open returns within FastFail and logs one warning naming the
// address and the refused connection; every call fails within FastFail
// naming the address; a watch can be started. Then it starts the server
// and checks that Register works within Settle (retrying it, as the
// runtime does), that the watch started while the server was down
// delivers the instance, and that the Register that failed while it was
// down was not retried by the adapter. It leaves the server running and
// logs the times it measured.
func RunStartWhileDown(t *testing.T, o Outage) {
	t.Helper()
	if o.Open == nil || o.Addr == "" || o.Stop == nil || o.Start == nil {
		t.Fatal("registrytest: Outage needs Open, Addr, Stop and Start")
	}
	settle := o.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	key := UniqueKey(t)
	o.Stop(t)

	open := func(name string, log *LogBuffer) registry.Registry {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		r, err := o.Open(ctx, log.Logger())
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: Open while the server is stopped failed after %v: %v; want a registry that keeps connecting", name, took, err)
		}
		t.Cleanup(func() { r.Close() })
		t.Logf("%s: Open while the server is stopped returned after %v", name, took.Round(time.Microsecond))
		if took > FastFail {
			t.Errorf("%s: Open while the server is stopped took %v; want less than %v", name, took, FastFail)
		}
		return r
	}
	var provLog, consLog LogBuffer
	prov := open("provider", &provLog)
	cons := open("consumer", &consLog)

	failFast(t, prov, key, o.Addr, "refused")
	time.Sleep(100 * time.Millisecond) // for what the background goroutines log
	var warnings []string
	for _, line := range strings.Split(provLog.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			warnings = append(warnings, line)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], o.Addr) || !strings.Contains(warnings[0], "refused") {
		t.Errorf("the provider logged %d warnings while the server was down, want one naming %s and the refused connection:\n%s",
			len(warnings), o.Addr, strings.Join(warnings, "\n"))
	} else {
		t.Logf("the provider's warning: %s", warnings[0])
	}

	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatalf("Watch while the server is down: %v; want a watch that waits for it", err)
	}
	t.Cleanup(w.Stop)
	firstNextFails(t, w, o.Addr)

	o.Start(t)
	up := time.Now()
	in := registry.Instance{Key: key, ID: "after-start", Addr: "127.0.0.1:2"}
	attempts := 0
	var last error
	for {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), settle)
		last = prov.Register(ctx, in)
		cancel()
		if last == nil {
			break
		}
		if time.Since(up) > settle {
			t.Fatalf("Register did not work within %v of the server's start (%d attempts); the last error: %v", settle, attempts, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Register worked %v after the server's start, at attempt %d", time.Since(up).Round(time.Millisecond), attempts)
	WaitFor(t, w, settle, HasIDs(in.ID))
	t.Logf("the watch started while the server was down delivered the instance %v after the server's start", time.Since(up).Round(time.Millisecond))

	// The registration that failed while the server was down stays failed.
	time.Sleep(time.Second)
	WaitDiscover(t, cons, key, settle, HasIDs(in.ID))
	if t.Failed() {
		t.Logf("the provider's log:\n%s\nthe consumer's log:\n%s", provLog.String(), consLog.String())
	}
}
