package runtime_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// errInjected is what faultyRegistry's Register fails with.
var errInjected = errors.New("injected: connection refused")

// faultyRegistry is an in-process registry whose Register fails on demand:
// the next failures calls fail (all of them while failures is negative).
// With hang set, Register registers the instance and then waits for its
// context to end and returns its error, as a registry whose reply is lost.
type faultyRegistry struct {
	*registry.Inproc

	mu        sync.Mutex
	failures  int
	hang      bool
	registers int // Register calls
}

func newFaulty(t testing.TB, failures int) *faultyRegistry {
	t.Helper()
	return &faultyRegistry{Inproc: newRegistry(t).(*registry.Inproc), failures: failures}
}

// Register fails or hangs the registrations of providers as set; the
// consumer records of the tests' references pass through uncounted.
func (f *faultyRegistry) Register(ctx context.Context, in registry.Instance) error {
	if in.Key.IsConsumer() {
		return f.Inproc.Register(ctx, in)
	}
	f.mu.Lock()
	f.registers++
	fail, hang := f.failures != 0, f.hang
	if f.failures > 0 {
		f.failures--
	}
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	if err := f.Inproc.Register(ctx, in); err != nil || !hang {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *faultyRegistry) set(failures int) {
	f.mu.Lock()
	f.failures = failures
	f.mu.Unlock()
}

func (f *faultyRegistry) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registers
}

// instances returns what the registry lists for the echo service.
func instances(t testing.TB, reg registry.Registry) []registry.Instance {
	t.Helper()
	list, err := reg.Discover(context.Background(), registry.ServiceKey{Service: echoService})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// serve serves srv on a new listener until the test ends, and returns the
// channel Serve's error arrives on.
func serve(t testing.TB, srv *storks.Server) (net.Listener, chan error) {
	t.Helper()
	lis := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-served })
	return lis, served
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func wantState(t testing.TB, ex *storks.Exporter, want storks.ExportState) {
	t.Helper()
	if got := ex.State(); got != want {
		t.Fatalf("state %v, want %v (err: %v)", got, want, ex.Err())
	}
}

// A server whose registry fails the first registrations serves at once,
// shows the export as registering with the error, and registers it in the
// background: consumers of the registry then reach it. One warning, one
// notice.
func TestRegistrationIsRetriedInTheBackground(t *testing.T) {
	reg := newFaulty(t, 3)
	var logs logBuffer
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(logs.logger()), storks.WithShutdownWait(0))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, ex, storks.ExportPending)
	lis, _ := serve(t, srv)
	start := time.Now()

	// Calls by address work before the registration does.
	_, direct := refer(t, mustOpen(t, "direct://"+lis.Addr().String()), nil)
	if got, err := callEcho(withTimeout(t, 5*time.Second), direct, "x"); err != nil || got != "p:x" {
		t.Fatalf("call by address: %q, %v", got, err)
	}
	wantState(t, ex, storks.ExportRegistering)
	if err := ex.Err(); !errors.Is(err, errInjected) || storks.CodeOf(err) != storks.CodeUnavailable ||
		!strings.Contains(err.Error(), "register test.Echo at "+srv.Addr()) {
		t.Fatalf("Err() = %v, want the registry's failure", err)
	}
	if l := instances(t, reg); len(l) != 0 {
		t.Fatalf("registered too early: %v", l)
	}

	waitFor(t, func() bool { return ex.State() == storks.ExportRegistered })
	t.Logf("registered %v after Serve, after 3 failures", time.Since(start).Round(time.Millisecond))
	if err := ex.Err(); err != nil {
		t.Errorf("Err() = %v once registered", err)
	}
	_, ref := refer(t, reg, nil)
	if got, err := callEcho(withTimeout(t, 5*time.Second), ref, "y"); err != nil || got != "p:y" {
		t.Fatalf("call through the registry: %q, %v", got, err)
	}
	if n := reg.calls(); n != 4 {
		t.Errorf("%d Register calls, want 4", n)
	}
	out := logs.String()
	if n := strings.Count(out, "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "level=INFO"); n != 1 {
		t.Errorf("%d notices, want 1:\n%s", n, out)
	}
	for _, want := range []string{"service=test.Echo addr=" + srv.Addr() + " err=", errInjected.Error(), "attempts=4 after="} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not contain %q:\n%s", want, out)
		}
	}
}

// Retries back off (no busy loop), and Close stops them: every goroutine
// ends.
func TestRegistrationRetriesBackOffAndStopOnClose(t *testing.T) {
	reg := newFaulty(t, -1)
	before := goruntime.NumGoroutine()
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	lis := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	time.Sleep(2 * time.Second)
	// Waits from [125ms, 250ms], doubling: attempts at 0, about 0.2 s,
	// 0.6 s, 1.3 s, 2.8 s.
	if n := reg.calls(); n < 3 || n > 5 {
		t.Errorf("%d Register calls in 2 s, want 3 to 5", n)
	}
	wantState(t, ex, storks.ExportRegistering)
	srv.Close()
	<-served
	wantState(t, ex, storks.ExportRemoved)
	n := reg.calls()
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, goruntime.NumGoroutine(), buf[:goruntime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if m := reg.calls(); m != n {
		t.Errorf("%d Register calls after Close", m-n)
	}
}

// WithRegistrationRequired restores failing: Serve and Export return the
// registry's error.
func TestRegistrationRequired(t *testing.T) {
	t.Run("Serve", func(t *testing.T) {
		reg := newFaulty(t, -1)
		srv := storks.NewServer(storks.WithRegistry(reg), storks.WithRegistrationRequired())
		t.Cleanup(func() { srv.Close() })
		ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Serve(listen(t))
		wantCode(t, err, storks.CodeUnavailable, "register test.Echo at ")
		if !errors.Is(err, errInjected) {
			t.Errorf("Serve: %v does not wrap the registry's error", err)
		}
		time.Sleep(400 * time.Millisecond)
		if n := reg.calls(); n != 1 {
			t.Errorf("%d Register calls, want 1 (no retries)", n)
		}
		wantState(t, ex, storks.ExportRegistering)
		if !errors.Is(ex.Err(), errInjected) {
			t.Errorf("Err() = %v", ex.Err())
		}
	})
	t.Run("Export", func(t *testing.T) {
		reg := newFaulty(t, 0)
		srv := storks.NewServer(storks.WithRegistry(reg), storks.WithRegistrationRequired())
		serve(t, srv)
		waitFor(t, func() bool { return srv.Addr() != "" })
		reg.set(-1)
		ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
		wantCode(t, err, storks.CodeUnavailable, "register test.Echo at ")
		if ex != nil {
			t.Errorf("Export returned an exporter with its error")
		}
		// The default: Export succeeds, the registration is retried.
		srv2 := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
		serve(t, srv2)
		waitFor(t, func() bool { return srv2.Addr() != "" })
		ex, err = srv2.Export(&echoDesc, &echoImpl{name: "p"})
		if err != nil {
			t.Fatal(err)
		}
		wantState(t, ex, storks.ExportRegistering)
		reg.set(0)
		waitFor(t, func() bool { return ex.State() == storks.ExportRegistered })
	})
}

// Unexport during the retries stops them, and nothing is registered
// afterwards.
func TestUnexportStopsRegistrationRetries(t *testing.T) {
	reg := newFaulty(t, -1)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	waitFor(t, func() bool { return reg.calls() >= 2 })
	start := time.Now()
	if err := ex.Unexport(withTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Unexport took %v", d)
	}
	wantState(t, ex, storks.ExportRemoved)
	n := reg.calls()
	reg.set(0) // the registry works again: a retry would succeed
	time.Sleep(time.Second)
	if m := reg.calls(); m != n {
		t.Errorf("%d Register calls after Unexport", m-n)
	}
	if l := instances(t, reg); len(l) != 0 {
		t.Errorf("registered after Unexport: %v", l)
	}
}

// Unexport races with a retry that succeeds: whichever comes first, the
// export is not registered once Unexport returns.
func TestUnexportRacesWithRegistration(t *testing.T) {
	reg := newFaulty(t, 0)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
	serve(t, srv)
	waitFor(t, func() bool { return srv.Addr() != "" })
	registered := 0
	for i := range 20 {
		reg.set(1) // the first attempt fails, the retry (after 125-250 ms) succeeds
		ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(100+rand.IntN(200)) * time.Millisecond)
		if ex.State() == storks.ExportRegistered {
			registered++
		}
		if err := ex.Unexport(context.Background()); err != nil {
			t.Fatal(err)
		}
		if l := instances(t, reg); len(l) != 0 {
			t.Fatalf("round %d: registered after Unexport: %v", i, l)
		}
	}
	t.Logf("%d of 20 Unexports came after the registration", registered)
	time.Sleep(300 * time.Millisecond)
	if l := instances(t, reg); len(l) != 0 {
		t.Fatalf("registered after Unexport: %v", l)
	}
}

// Unexport cancels an attempt under way. The registry may have registered
// the instance without saying so: it is deregistered.
func TestUnexportCancelsAnAttemptUnderWay(t *testing.T) {
	reg := newFaulty(t, 0)
	reg.hang = true
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	waitFor(t, func() bool { return len(instances(t, reg)) == 1 })
	wantState(t, ex, storks.ExportRegistering)
	start := time.Now()
	if err := ex.Unexport(withTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Unexport took %v", d)
	}
	if l := instances(t, reg); len(l) != 0 {
		t.Errorf("registered after Unexport: %v", l)
	}
}

// Shutdown of a server whose export never got registered does not wait the
// shutdown wait: no consumer can know the export.
func TestShutdownOfAnUnregisteredServerDoesNotWait(t *testing.T) {
	reg := newFaulty(t, -1)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()), storks.WithShutdownWait(3*time.Second))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	waitFor(t, func() bool { return ex.State() == storks.ExportRegistering })
	start := time.Now()
	if err := srv.Shutdown(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	wantState(t, ex, storks.ExportRemoved)
	n := reg.calls()
	reg.set(0)
	time.Sleep(600 * time.Millisecond)
	if m := reg.calls(); m != n {
		t.Errorf("%d Register calls after Shutdown", m-n)
	}
}

// A delayed export whose registration fails is retried too.
func TestDelayedExportRegistrationIsRetried(t *testing.T) {
	reg := newFaulty(t, 2)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(discard()))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"}, storks.WithDelay(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	waitFor(t, func() bool { return srv.Addr() != "" })
	wantState(t, ex, storks.ExportPending)
	waitFor(t, func() bool { return ex.State() == storks.ExportRegistered })
	if n := reg.calls(); n != 3 {
		t.Errorf("%d Register calls, want 3", n)
	}
}

func TestExportStates(t *testing.T) {
	srv := storks.NewServer()
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, ex, storks.ExportPending)
	serve(t, srv)
	waitFor(t, func() bool { return srv.Addr() != "" })
	wantState(t, ex, storks.ExportNoRegistry)
	if err := ex.Unexport(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantState(t, ex, storks.ExportRemoved)
	for s, want := range map[storks.ExportState]string{
		storks.ExportPending: "pending", storks.ExportRegistering: "registering", storks.ExportRegistered: "registered",
		storks.ExportNoRegistry: "no registry", storks.ExportRemoved: "removed", storks.ExportState(9): "ExportState(9)",
	} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", s, s.String(), want)
		}
	}
}
