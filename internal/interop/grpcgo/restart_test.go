package grpcgo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// Two providers registered in a real registry (an embedded etcd) serve
// Storks consumers (runtime clients that find them in the registry) and
// grpc-go clients (round_robin over both addresses, most with client-side
// health checking, one without) at once, on the same ports. Each provider
// in turn is restarted gracefully under that load: SIGTERM (deregister,
// NOT_SERVING, wait, drain: GOAWAY for gRPC, calls in flight finish),
// exit, and a new process on the same port. No call fails on any client,
// and each new process serves calls of every kind of client.
func TestMixedLoadGracefulRestart(t *testing.T) {
	const (
		clients   = 3 // of each kind
		callers   = 3 // per client
		pause     = 5 * time.Millisecond
		storksKey = "storks"
		grpcKey   = "grpc"       // with client-side health checking
		plainKey  = "grpc-plain" // without
	)
	url := testservers.EtcdRegistryURL(t, 10*time.Second)
	// SayHello takes 100 ms, so that calls are in flight at every moment
	// of a shutdown.
	args := []string{"-shutdown-wait", "1s", "-latency", "100ms"}
	ps := []*provider{startProvider(t, url, "p1", args...), startProvider(t, url, "p2", args...)}
	addrs := []string{ps[0].addr, ps[1].addr}

	served := newTally()
	var loads []*load

	// Storks consumers, each a client of its own with a registry handle
	// of its own.
	for i := range clients {
		ref := referGreeter(t, url)
		waitListed(t, ref, addrs)
		loads = append(loads, startLoad(storksKey, callers, pause, func(w, seq int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			name := fmt.Sprintf("s%d-%d-%d", i, w, seq)
			out := new(greeterv1.HelloReply)
			if err := ref.Invoke(ctx, greeterv1.Greeter_SayHello_FullMethodName, &greeterv1.HelloRequest{Name: name}, out); err != nil {
				return err
			}
			if out.GetMessage() != "Hello, "+name {
				return fmt.Errorf("SayHello(%q) = %q", name, out.GetMessage())
			}
			served.add(storksKey, out.GetProvider())
			return nil
		}))
	}

	// grpc-go clients: both addresses through a manual resolver and
	// round_robin. Those of grpcKey check the Greeter service's health
	// (healthCheckConfig), which takes a provider out of their rotation as
	// soon as it reports NOT_SERVING; those of plainKey do not, and keep
	// calling a provider that shuts down until its GOAWAY. A short
	// reconnect backoff lets a client find a restarted provider within a
	// second.
	for i := range clients {
		kind, config := grpcKey, `{"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": "`+greeterName+`"}}`
		if i%2 == 1 {
			kind, config = plainKey, `{"loadBalancingConfig": [{"round_robin": {}}]}`
		}
		r := manual.NewBuilderWithScheme("interop")
		var eps []resolver.Endpoint
		for _, a := range addrs {
			eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
		}
		r.InitialState(resolver.State{Endpoints: eps})
		cc := dial(t, "interop:///providers", grpc.WithResolvers(r),
			grpc.WithDefaultServiceConfig(config),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second,
			}))
		g, e := greeterv1.NewGreeterClient(cc), echov1.NewEchoClient(cc)
		loads = append(loads, startLoad(kind, callers, pause, func(w, seq int) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			name := fmt.Sprintf("g%d-%d-%d", i, w, seq)
			if seq%4 == 3 {
				return countStream(ctx, e, name)
			}
			out, err := g.SayHello(ctx, &greeterv1.HelloRequest{Name: name})
			if err != nil {
				return err
			}
			if out.GetMessage() != "Hello, "+name {
				return fmt.Errorf("SayHello(%q) = %q", name, out.GetMessage())
			}
			served.add(kind, out.GetProvider())
			return nil
		}))
	}
	stopAll := func() {
		for _, l := range loads {
			l.finish(t, 30*time.Second)
		}
	}
	t.Cleanup(func() {
		for _, l := range loads {
			l.stopOnce.Do(func() { close(l.stop) })
		}
	})

	kinds := []string{storksKey, grpcKey, plainKey}
	served.wait(t, 30*time.Second, kinds, "p1", "p2")
	var steps []string
	for i, old := range ps {
		before := served.snapshot()
		termed := old.terminate(t)
		old.waitExit(t, 30*time.Second)
		exited := time.Since(termed)
		repl := restartOn(t, url, old.name+"-2", old.addr, args...)
		ps[i] = repl
		served.wait(t, 30*time.Second, kinds, repl.name)
		steps = append(steps, fmt.Sprintf("%s exited %v after SIGTERM, %s served every kind of client %v after it",
			old.name, exited.Round(time.Millisecond), repl.name, time.Since(termed).Round(time.Millisecond)))
		after := served.snapshot()
		t.Logf("while %s restarted: %s", old.name, diff(before, after))
	}
	// Some more calls on both new processes, then the end.
	served.wait(t, 30*time.Second, kinds, ps[0].name, ps[1].name)
	stopAll()

	t.Logf("%s", strings.Join(steps, "; "))
	t.Logf("calls served: %s", served.String())
	for _, l := range loads {
		t.Logf("%s load: %d calls, %d failed", l.kind, l.done.Load(), l.failed.Load())
	}
	failed := map[string]int64{}
	for _, l := range loads {
		failed[l.kind] += l.failed.Load()
		if f := l.failed.Load(); f > 0 {
			t.Errorf("%d calls of a %s client failed during the graceful restarts:%s", f, l.kind, l.firstFailures(5))
		}
	}
	t.Logf("failed calls: storks %d, grpc with health checks %d, grpc without %d", failed[storksKey], failed[grpcKey], failed[plainKey])
}

// countStream streams Echo.Count(name, 3) to its end.
func countStream(ctx context.Context, e echov1.EchoClient, name string) error {
	s, err := e.Count(ctx, &echov1.CountRequest{Text: name, Times: 3})
	if err != nil {
		return err
	}
	for i := 1; ; i++ {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			if i != 4 {
				return fmt.Errorf("Count(%q, 3) ended after %d messages", name, i-1)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("Count(%q, 3): message %d: %w", name, i, err)
		}
		if want := fmt.Sprintf("%s %d", name, i); m.GetBody() != want {
			return fmt.Errorf("Count(%q, 3): message %d is %q, want %q", name, i, m.GetBody(), want)
		}
	}
}

// restartOn starts a provider on addr, the port of one that has just
// exited. The port is free, but until the new process binds it another
// socket of this machine may take it for a moment: the start is tried
// again then, for at most 10 s.
func restartOn(t *testing.T, url, name, addr string, args ...string) *provider {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := launch(t, url, name, append(slices.Clone(args), "-listen", addr)...)
		if err == nil {
			if p.addr != addr {
				t.Fatalf("provider %s listens on %s, want %s", name, p.addr, addr)
			}
			return p
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		t.Logf("restart of %s on %s: address in use, trying again", name, addr)
		time.Sleep(100 * time.Millisecond)
	}
}

// referGreeter makes a Storks client of the registry at url and refers the
// Greeter service; both are closed when the test ends.
func referGreeter(t *testing.T, url string) *storks.Reference {
	t.Helper()
	ctx := timeout(t, 30*time.Second)
	reg, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ref, err := cli.Refer(ctx, greeterName)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// waitListed waits until ref lists exactly addrs.
func waitListed(t *testing.T, ref *storks.Reference, addrs []string) {
	t.Helper()
	want := slices.Sorted(slices.Values(addrs))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []string
		for _, in := range ref.Providers() {
			got = append(got, in.Addr)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Storks consumer lists %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tally counts the calls each provider served, by kind of client.
type tally struct {
	mu     sync.Mutex
	counts map[string]map[string]int // kind -> provider name -> calls
}

func newTally() *tally { return &tally{counts: map[string]map[string]int{}} }

func (t *tally) add(kind, provider string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts[kind] == nil {
		t.counts[kind] = map[string]int{}
	}
	t.counts[kind][provider]++
}

func (t *tally) snapshot() map[string]map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]map[string]int{}
	for k, m := range t.counts {
		out[k] = map[string]int{}
		for p, n := range m {
			out[k][p] = n
		}
	}
	return out
}

// minServed is how many calls of each kind a provider must serve for wait.
const minServed = 20

// wait waits until each provider has served minServed calls of each kind.
func (t *tally) wait(tt *testing.T, timeout time.Duration, kinds []string, providers ...string) {
	tt.Helper()
	deadline := time.Now().Add(timeout)
	for {
		snap := t.snapshot()
		var missing []string
		for _, k := range kinds {
			for _, p := range providers {
				if snap[k][p] < minServed {
					missing = append(missing, fmt.Sprintf("%s from %s clients (%d of %d)", p, k, snap[k][p], minServed))
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tt.Fatalf("after %v, too few calls served by %s; served so far: %s", timeout, strings.Join(missing, ", "), t.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (t *tally) String() string { return format(t.snapshot()) }

func format(s map[string]map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s)) {
		for _, p := range slices.Sorted(maps.Keys(s[k])) {
			parts = append(parts, fmt.Sprintf("%s<-%s %d", p, k, s[k][p]))
		}
	}
	return strings.Join(parts, ", ")
}

// diff formats the calls served between two snapshots.
func diff(before, after map[string]map[string]int) string {
	d := map[string]map[string]int{}
	for k, m := range after {
		d[k] = map[string]int{}
		for p, n := range m {
			if n -= before[k][p]; n > 0 {
				d[k][p] = n
			}
		}
	}
	return format(d)
}

// load is callers calling until stopped.
type load struct {
	kind                  string
	stop                  chan struct{}
	stopOnce              sync.Once
	wg                    sync.WaitGroup
	started, done, failed atomic.Int64

	mu       sync.Mutex
	failures []string
}

// startLoad starts n callers, each calling call(worker, seq) in a loop
// with pause between calls.
func startLoad(kind string, n int, pause time.Duration, call func(worker, seq int) error) *load {
	l := &load{kind: kind, stop: make(chan struct{})}
	for w := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.started.Add(1)
				err := call(w, seq)
				l.done.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
					l.mu.Unlock()
				}
				select {
				case <-l.stop:
					return
				case <-time.After(pause):
				}
			}
		}()
	}
	return l
}

// finish stops the callers and waits for the calls in flight.
func (l *load) finish(t *testing.T, timeout time.Duration) {
	t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%d %s calls still in flight %v after the load stopped", l.started.Load()-l.done.Load(), l.kind, timeout)
	}
}

// firstFailures describes up to n failures.
func (l *load) firstFailures(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, f := range l.failures {
		if i == n {
			fmt.Fprintf(&b, "\n  ... and %d more", len(l.failures)-n)
			break
		}
		b.WriteString("\n  " + f)
	}
	return b.String()
}
