package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// testTTL is the lease TTL of the fault tests: short, so that they are fast.
const testTTL = 2 * time.Second

// uniqueBase returns a base path no other test uses.
func uniqueBase(t *testing.T) string {
	return "/storks-test/" + registrytest.UniqueKey(t).Service
}

// logRecorder is a slog handler that sends the adapter's log to the test
// log and counts the records by level.
type logRecorder struct {
	t     *testing.T
	name  string
	mu    *sync.Mutex
	count map[slog.Level]int
	attrs []slog.Attr
}

func newLogRecorder(t *testing.T, name string) *logRecorder {
	return &logRecorder{t: t, name: name, mu: new(sync.Mutex), count: make(map[slog.Level]int)}
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %s", h.name, rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key != "endpoints" && a.Key != "registry" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	})
	h.mu.Lock()
	h.count[rec.Level]++
	h.mu.Unlock()
	h.t.Log(b.String())
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

func (h *logRecorder) warnings() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count[slog.LevelWarn]
}

// newTestRegistry opens a registry on endpoint with the test TTL, logging to
// t, and closes it when t ends.
func newTestRegistry(t *testing.T, name, endpoint, base string) (*Registry, *logRecorder) {
	t.Helper()
	logs := newLogRecorder(t, name)
	r, err := New(context.Background(), Config{
		Endpoints: []string{endpoint},
		BasePath:  base,
		TTL:       testTTL,
		Logger:    slog.New(logs),
	})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Close(%s): %v", name, err)
		}
	})
	return r, logs
}

func mustRegister(t *testing.T, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.Register(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Register(%s): %v", in.ID, err)
		}
	}
}

func mustWatch(t *testing.T, r registry.Registry, key registry.ServiceKey) registry.Watcher {
	t.Helper()
	w, err := r.Watch(context.Background(), key)
	if err != nil {
		t.Fatalf("Watch(%v): %v", key, err)
	}
	t.Cleanup(w.Stop)
	return w
}

func inst(key registry.ServiceKey, id string, port int) registry.Instance {
	return registry.Instance{Key: key, ID: id, Addr: fmt.Sprintf("127.0.0.1:%d", port), Metadata: map[string]string{"id": id}}
}

// TestStartWhileDown: a provider and a consumer start while the server is
// down and work once it is up (see registrytest.RunStartWhileDown).
func TestStartWhileDown(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	registrytest.RunStartWhileDown(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			return New(ctx, Config{Endpoints: []string{srv.Endpoint()}, BasePath: base, TTL: testTTL, Logger: log})
		},
		Addr:  srv.Endpoint(),
		Stop:  func(*testing.T) { srv.Stop() },
		Start: func(t *testing.T) { mustStart(t, srv) },
	})
}

func mustStart(t *testing.T, srv *testservers.Etcd) {
	t.Helper()
	if err := srv.Start(); err != nil {
		t.Fatalf("starting etcd again: %v", err)
	}
}

func TestConformance(t *testing.T) {
	srv := testservers.StartEtcd(t)
	u := srv.URL(uniqueBase(t) + "?ttl=5s")
	registrytest.Run(t, registrytest.Harness{
		Open: func(t *testing.T) registry.Registry {
			r, err := registry.Open(context.Background(), u)
			if err != nil {
				t.Fatalf("Open(%s): %v", u, err)
			}
			return r
		},
		Settle:   5 * time.Second,
		Parallel: true,
		Rules:    true,
	})
}

// TestRuleOutage: a rule watch keeps its document while the server is down
// and delivers a change made once it is back (see
// registrytest.RunRuleOutage).
func TestRuleOutage(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	registrytest.RunRuleOutage(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			return New(ctx, Config{Endpoints: []string{srv.Endpoint()}, BasePath: base, TTL: testTTL, Logger: log})
		},
		Addr:  srv.Endpoint(),
		Stop:  func(*testing.T) { srv.Stop() },
		Start: func(t *testing.T) { mustStart(t, srv) },
	})
}

// TestProviderDiesWithoutDeregister checks that the instances of a provider
// that goes away without deregistering leave Discover and Watch within
// TTL + 2s, whether it closed its registry or just lost its connection.
func TestProviderDiesWithoutDeregister(t *testing.T) {
	srv := testservers.StartEtcd(t)
	for _, how := range []string{"Close", "ConnectionDropped"} {
		t.Run(how, func(t *testing.T) {
			base := uniqueBase(t)
			key := registrytest.UniqueKey(t)
			dying, _ := newTestRegistry(t, "dying", srv.Endpoint(), base)
			alive, _ := newTestRegistry(t, "alive", srv.Endpoint(), base)
			cons, _ := newTestRegistry(t, "consumer", srv.Endpoint(), base)
			mustRegister(t, dying, inst(key, "a", 1), inst(key, "b", 2))
			mustRegister(t, alive, inst(key, "c", 3))
			w := mustWatch(t, cons, key)
			registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b", "c"))

			start := time.Now()
			switch how {
			case "Close":
				if err := dying.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			case "ConnectionDropped":
				// Like a process killed with -9: the connection goes
				// away, nothing is deregistered or revoked. (The
				// registry's keeper keeps failing until its Close.)
				dying.cli.Close()
			}
			limit := testTTL + 2*time.Second
			registrytest.WaitFor(t, w, limit, registrytest.HasIDs("c"))
			registrytest.WaitDiscover(t, cons, key, limit-time.Since(start), registrytest.HasIDs("c"))
			if d := time.Since(start); d > limit {
				t.Errorf("the dead provider's instances were visible for %v, more than TTL + 2s = %v", d, limit)
			} else {
				t.Logf("the dead provider's instances disappeared after %v (TTL %v)", d, testTTL)
			}
		})
	}
}

// watchRecorder reads a watch from its own goroutine and keeps every result.
type watchRecorder struct {
	mu     sync.Mutex
	lists  [][]string
	errs   []error
	cancel context.CancelFunc
	done   chan struct{}
}

func recordWatch(w registry.Watcher) *watchRecorder {
	ctx, cancel := context.WithCancel(context.Background())
	rec := &watchRecorder{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rec.done)
		for {
			list, err := w.Next(ctx)
			if ctx.Err() != nil {
				return
			}
			rec.mu.Lock()
			if err != nil {
				rec.errs = append(rec.errs, err)
				rec.mu.Unlock()
				return
			}
			rec.lists = append(rec.lists, registrytest.IDs(list))
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (rec *watchRecorder) stop() {
	rec.cancel()
	<-rec.done
}

func (rec *watchRecorder) last() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.lists) == 0 {
		return nil
	}
	return rec.lists[len(rec.lists)-1]
}

// attachedLease returns the lease a key is attached to, 0 if the key is
// missing.
func attachedLease(ctx context.Context, raw *clientv3.Client, key string) (clientv3.LeaseID, error) {
	resp, err := raw.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), nil
}

// TestServerOutage stops the server for 3 TTLs and starts it again: the
// consumer's watch keeps its list throughout, the provider is registered
// again (under a new lease, kept alive) within TTL + 2s of the restart, and
// the watch sees changes made after it.
func TestServerOutage(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	prov, provLogs := newTestRegistry(t, "provider", srv.Endpoint(), base)
	cons, consLogs := newTestRegistry(t, "consumer", srv.Endpoint(), base)
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	mustRegister(t, prov, a, b)
	w := mustWatch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b"))
	rec := recordWatch(w)
	defer rec.stop()
	oldLease := prov.leaseID()

	stopStart := time.Now()
	srv.Stop()
	down := time.Now()
	t.Logf("server stopped (Stop took %v); keeping it down for %v", down.Sub(stopStart), 3*testTTL)

	// While it is down, calls fail fast, naming the address and the cause,
	// instead of waiting for their context; a new watch waits for the
	// server.
	for name, call := range map[string]func(ctx context.Context) error{
		"Discover": func(ctx context.Context) error { _, err := cons.Discover(ctx, key); return err },
		"Register": func(ctx context.Context) error { return prov.Register(ctx, inst(key, "x", 9)) },
		"Watch": func(ctx context.Context) error {
			w, err := cons.Watch(ctx, key)
			if err != nil {
				t.Errorf("Watch while the server is down: %v; want a watch that waits for it", err)
				return nil
			}
			defer w.Stop()
			_, err = w.Next(ctx)
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		start := time.Now()
		err := call(ctx)
		cancel()
		d := time.Since(start)
		t.Logf("%s while the server is down: %v after %v", name, err, d)
		switch {
		case err == nil:
			t.Errorf("%s while the server is down: no error", name)
		case !strings.Contains(err.Error(), srv.Endpoint()) || !strings.Contains(err.Error(), "refused"):
			t.Errorf("%s while the server is down: %v; want an error naming %s and the refused connection", name, err, srv.Endpoint())
		case name != "Watch" && d > time.Second:
			t.Errorf("%s while the server is down took %v; want it to fail fast", name, d)
		}
	}

	time.Sleep(time.Until(down.Add(3 * testTTL)))
	if err := srv.Start(); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	up := time.Now()

	// Registered again: both keys attached to a lease of the provider that
	// is not the old one and that is alive.
	raw := srv.Client(t)
	registrytest.Eventually(t, testTTL+2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		cur := prov.leaseID()
		if cur == 0 || cur == oldLease {
			return fmt.Errorf("the provider has lease %x, the one before the outage was %x", cur, oldLease)
		}
		for _, in := range []registry.Instance{a, b} {
			k := instanceKey(base, key, in.ID)
			l, err := attachedLease(ctx, raw, k)
			if err != nil {
				return err
			}
			if l != cur {
				return fmt.Errorf("key %s is attached to lease %x, not to the provider's lease %x", k, l, cur)
			}
		}
		ttl, err := raw.TimeToLive(ctx, cur)
		if err != nil {
			return err
		}
		if ttl.TTL <= 0 {
			return fmt.Errorf("the provider's lease %x is not alive (TTL %d)", cur, ttl.TTL)
		}
		return nil
	})
	t.Logf("the provider was registered again %v after the server came back", time.Since(up))

	// The watch sees a change made after the restart.
	mustRegister(t, prov, inst(key, "c", 3))
	registrytest.Eventually(t, 5*time.Second, func() error {
		if got := rec.last(); !slices.Equal(got, []string{"a", "b", "c"}) {
			return fmt.Errorf("the watch's last list is %v, want [a b c]", got)
		}
		return nil
	})

	// And the instances stay: they are kept alive, not leftovers.
	time.Sleep(2 * testTTL)
	registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs("a", "b", "c"))

	rec.stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) > 0 {
		t.Errorf("the watch returned errors: %v", rec.errs)
	}
	for i, ids := range rec.lists {
		if !slices.Contains(ids, "a") || !slices.Contains(ids, "b") {
			t.Errorf("the watch delivered %v (list %d of %v); it must keep its last list through the outage", ids, i, rec.lists)
		}
	}
	t.Logf("lists delivered through the outage: %v", rec.lists)
	// A few lines per state change, not one per retry.
	if n := provLogs.warnings(); n > 5 {
		t.Errorf("the provider logged %d warnings for one outage", n)
	}
	if n := consLogs.warnings(); n > 5 {
		t.Errorf("the consumer logged %d warnings for one outage", n)
	}
}

// TestLeaseRevoked revokes the provider's lease behind its back (which
// deletes its keys): it must be registered again, under a new lease, within
// TTL + 2s.
func TestLeaseRevoked(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	prov, _ := newTestRegistry(t, "provider", srv.Endpoint(), base)
	cons, _ := newTestRegistry(t, "consumer", srv.Endpoint(), base)
	mustRegister(t, prov, inst(key, "a", 1), inst(key, "b", 2))
	w := mustWatch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b"))

	raw := srv.Client(t)
	for round := 1; round <= 2; round++ {
		lease := prov.leaseID()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := raw.Revoke(ctx, lease)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Revoke: %v", round, err)
		}
		revoked := time.Now()
		registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs()) // the revoke deleted them
		limit := testTTL + 2*time.Second
		registrytest.WaitFor(t, w, limit, registrytest.HasIDs("a", "b"))
		registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs("a", "b"))
		d := time.Since(revoked)
		if d > limit {
			t.Errorf("round %d: registered again %v after the revoke, more than TTL + 2s", round, d)
		}
		if cur := prov.leaseID(); cur == lease || cur == 0 {
			t.Errorf("round %d: the provider's lease is %x after %x was revoked", round, cur, lease)
		}
		t.Logf("round %d: registered again %v after the revoke", round, d)
	}
}

// TestConsumerRecordLeaseRevoked: a consumer record (port 0) is kept
// registered like a provider's instance: after its lease is revoked it is
// put back under a new lease within TTL + 2s.
func TestConsumerRecordLeaseRevoked(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	key := registry.ConsumerKey(registrytest.UniqueKey(t))
	cons, _ := newTestRegistry(t, "consumer", srv.Endpoint(), base)
	tool, _ := newTestRegistry(t, "tool", srv.Endpoint(), base)
	rec := registry.Instance{Key: key, ID: "c", Addr: "10.0.0.5:0", Metadata: map[string]string{registry.MetadataApplication: "app"}}
	mustRegister(t, cons, rec)
	w := mustWatch(t, tool, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("c"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := srv.Client(t).Revoke(ctx, cons.leaseID()); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs())
	list := registrytest.WaitFor(t, w, testTTL+2*time.Second, registrytest.HasIDs("c"))
	if !registrytest.SameInstance(list[0], rec) {
		t.Errorf("the record put back is %s, want %s", registrytest.Format(list), registrytest.Format([]registry.Instance{rec}))
	}
	if keys, err := tool.Services(ctx); err != nil || !slices.Contains(keys, key) {
		t.Errorf("Services = %v, %v; want %v listed", keys, err, key)
	}
}

// TestKeyDeletedBehindBack deletes a provider's key while its lease lives:
// the provider must put it back within TTL + 2s.
func TestKeyDeletedBehindBack(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	prov, _ := newTestRegistry(t, "provider", srv.Endpoint(), base)
	cons, _ := newTestRegistry(t, "consumer", srv.Endpoint(), base)
	mustRegister(t, prov, inst(key, "a", 1), inst(key, "b", 2))
	w := mustWatch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b"))
	lease := prov.leaseID()

	raw := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := raw.Delete(ctx, instanceKey(base, key, "a")); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	deleted := time.Now()
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("b"))
	limit := testTTL + 2*time.Second
	registrytest.WaitFor(t, w, limit, registrytest.HasIDs("a", "b"))
	if d := time.Since(deleted); d > limit {
		t.Errorf("put back %v after the delete, more than TTL + 2s", d)
	} else {
		t.Logf("put back %v after the delete", d)
	}
	if l, err := attachedLease(ctx, raw, instanceKey(base, key, "a")); err != nil || l != lease {
		t.Errorf("the key put back is attached to lease %x (%v), want the provider's lease %x", l, err, lease)
	}
}

// TestWatchCompaction cuts a consumer off the server while the list changes
// and the history is compacted: when it reconnects, its watch resumes from
// a compacted revision, and the watcher must list again (not die, not miss
// the changes).
func TestWatchCompaction(t *testing.T) {
	srv := testservers.StartEtcd(t)
	proxy := newFaultProxy(t, srv.Endpoint())
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	prov, _ := newTestRegistry(t, "provider", srv.Endpoint(), base)
	cons, _ := newTestRegistry(t, "consumer", proxy.Addr(), base)
	mustRegister(t, prov, inst(key, "a", 1))
	w := mustWatch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))
	before := w.(*watcher).loop.reads.Load()

	proxy.Cut()
	mustRegister(t, prov, inst(key, "b", 2), inst(key, "c", 3))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := prov.Deregister(ctx, inst(key, "a", 1)); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	raw := srv.Client(t)
	resp, err := raw.Get(ctx, "compact-me")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if _, err := raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	proxy.Restore()

	registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("b", "c"))
	// The list is delivered before the relist is counted: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for w.(*watcher).loop.reads.Load() <= before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if after := w.(*watcher).loop.reads.Load(); after <= before {
		t.Errorf("the watcher did not list again after the compaction (relists %d -> %d)", before, after)
	}
	// Still alive: a later change arrives.
	mustRegister(t, prov, inst(key, "d", 4))
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("b", "c", "d"))
}

// TestWatchPartition cuts a consumer off the server for longer than a TTL
// while a provider dies: the watch keeps its list while cut off, then
// catches up.
func TestWatchPartition(t *testing.T) {
	srv := testservers.StartEtcd(t)
	proxy := newFaultProxy(t, srv.Endpoint())
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	prov, _ := newTestRegistry(t, "provider", srv.Endpoint(), base)
	dying, _ := newTestRegistry(t, "dying", srv.Endpoint(), base)
	cons, _ := newTestRegistry(t, "consumer", proxy.Addr(), base)
	mustRegister(t, prov, inst(key, "a", 1))
	mustRegister(t, dying, inst(key, "b", 2))
	w := mustWatch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b"))

	proxy.Cut()
	dying.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*testTTL)
	defer cancel()
	if list, err := w.Next(ctx); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next while cut off = %v, %v; want it to block until its context expires", registrytest.IDs(list), err)
	}
	proxy.Restore()
	registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("a"))
}

// stacksOf returns the goroutines whose stack mentions one of the
// adapter's goroutine functions.
func stacksOf() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "registry/etcd.(*Registry).keep") || strings.Contains(g, "registry/etcd.(*Registry).monitorConn") || strings.Contains(g, "registry/etcd.(*watcher).run") {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseStopsGoroutines checks that Close stops every goroutine the
// registry and its client started.
func TestCloseStopsGoroutines(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	use := func() {
		r, err := New(context.Background(), Config{Endpoints: []string{srv.Endpoint()}, BasePath: base, TTL: testTTL})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		mustRegister(t, r, inst(key, "a", 1))
		w, err := r.Watch(context.Background(), key)
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))
		if _, err := r.Watch(context.Background(), key); err != nil { // never stopped: Close must
			t.Fatalf("Watch: %v", err)
		}
		if _, err := r.Discover(context.Background(), key); err != nil {
			t.Fatalf("Discover: %v", err)
		}
		// Rule watches, never stopped: Close must stop them.
		if err := r.PutRule(context.Background(), key, []byte("doc")); err != nil {
			t.Fatalf("PutRule: %v", err)
		}
		for range 2 {
			rw, err := r.WatchRule(context.Background(), key)
			if err != nil {
				t.Fatalf("WatchRule: %v", err)
			}
			if _, err := rw.Next(context.Background()); err != nil {
				t.Fatalf("rule watch Next: %v", err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	use() // warm up: the server starts some goroutines on first use
	time.Sleep(200 * time.Millisecond)
	baseline := runtime.NumGoroutine()
	use()
	registrytest.Eventually(t, 5*time.Second, func() error {
		if left := stacksOf(); len(left) > 0 {
			return fmt.Errorf("%d goroutines of the adapter are still running:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		if n := runtime.NumGoroutine(); n > baseline {
			return fmt.Errorf("%d goroutines, %d before the registry was opened", n, baseline)
		}
		return nil
	})
}
