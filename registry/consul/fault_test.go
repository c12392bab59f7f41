package consul

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// rawClient is a plain Consul API client of agent, for looking at what the
// adapter stored and for playing the operator.
func rawClient(t *testing.T, agent *testservers.Consul) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: agent.Addr(), Transport: api.DefaultNonPooledConfig().Transport})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDeadProvider checks that the instances of a provider that stops
// passing its TTL without deregistering (its registry closed: the TTL
// updates stop, as when the process is killed) drop out of Discover and
// of a running watch within TTL + 2s, while the others stay.
func TestDeadProvider(t *testing.T) {
	agent := testservers.StartConsul(t)
	prov := newTestRegistry(t, agent, nil)
	other := newTestRegistry(t, agent, nil)
	cons := newTestRegistry(t, agent, nil)
	key := registrytest.UniqueKey(t)
	register(t, prov, inst(key, "dies-1", "127.0.0.1:1001"), inst(key, "dies-2", "127.0.0.1:1002"))
	register(t, other, inst(key, "lives", "127.0.0.1:1003"))
	registrytest.WaitDiscover(t, cons, key, 10*time.Second, registrytest.HasIDs("dies-1", "dies-2", "lives"))
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	wl := recordWatch(t, w)
	wl.waitFor(t, 10*time.Second, "all three", registrytest.HasIDs("dies-1", "dies-2", "lives"))

	start := time.Now()
	deadline := start.Add(testTTL + 2*time.Second)
	if err := prov.Close(); err != nil { // no Deregister
		t.Fatal(err)
	}
	registrytest.WaitDiscover(t, cons, key, testTTL+2*time.Second, registrytest.HasIDs("lives"))
	t.Logf("Discover dropped the dead provider %v after it stopped", time.Since(start))
	at := wl.waitFor(t, max(time.Until(deadline), 100*time.Millisecond), "the survivor only", registrytest.HasIDs("lives"))
	t.Logf("the watch dropped the dead provider %v after it stopped", at.Sub(start))
	if at.After(deadline) {
		t.Errorf("the watch dropped the dead provider after %v, want within TTL + 2s = %v", at.Sub(start), testTTL+2*time.Second)
	}
	// It stays dropped, and the watch never delivered an error or a list
	// without the survivor.
	for _, rec := range wl.snapshot() {
		if rec.err != nil || !slices.ContainsFunc(rec.list, func(in registry.Instance) bool { return in.ID == "lives" }) {
			t.Errorf("the watch delivered %s, %v", registrytest.Format(rec.list), rec.err)
		}
	}
	// Consul keeps the dead instances as critical until deregister-after.
	entries, _, err := rawClient(t, agent).Health().Service(ServiceName(key.Service), "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	critical := 0
	for _, e := range entries {
		if e.Checks.AggregatedStatus() == api.HealthCritical {
			critical++
		}
	}
	if critical != 2 {
		t.Errorf("%d critical instances in the catalog, want the 2 dead ones", critical)
	}
}

// TestAgentOutage stops the agent for 3 x TTL and starts it again (a dev
// agent: the restart loses every registration). Throughout, the consumer's
// watches keep their lists (no error, no shorter list), the outage is
// logged once per watch and per instance (and never shows the ACL token),
// Discover fails clearly while the agent is down, the watches do not spin,
// every instance is registered again within TTL + 2s of the agent being
// back, and the watches see changes made after the restart.
func TestAgentOutage(t *testing.T) {
	agent := testservers.StartConsul(t)
	logs := &syncBuffer{}
	withToken := func(c *Config) { c.Token = secretToken }
	prov := newTestRegistry(t, agent, logs, withToken)
	cons := newTestRegistry(t, agent, logs, withToken)
	k1, k2 := registrytest.UniqueKey(t), registrytest.UniqueKey(t)
	k2.Version = "2.0"
	register(t, prov, inst(k1, "a", "127.0.0.1:2001"), inst(k1, "b", "127.0.0.1:2002"), inst(k2, "c", "127.0.0.1:2003"))

	w1, err := cons.Watch(context.Background(), k1)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := cons.Watch(context.Background(), k2)
	if err != nil {
		t.Fatal(err)
	}
	wl1, wl2 := recordWatch(t, w1), recordWatch(t, w2)
	wl1.waitFor(t, 10*time.Second, "a and b", registrytest.HasIDs("a", "b"))
	wl2.waitFor(t, 10*time.Second, "c", registrytest.HasIDs("c"))
	before1, before2 := len(wl1.snapshot()), len(wl2.snapshot())

	agent.Stop()
	down := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = cons.Discover(ctx, k1)
	cancel()
	if err == nil || !strings.Contains(err.Error(), agent.Addr()) {
		t.Errorf("Discover while the agent is down: err = %v, want an error naming %s", err, agent.Addr())
	}
	q0 := w1.(*watcher).queries.Load()
	time.Sleep(3 * testTTL)
	queries := w1.(*watcher).queries.Load() - q0
	t.Logf("%d watch queries during %v of outage", queries, time.Since(down))
	if limit := int64(3*testTTL/(cons.watchRetryCap()/2)) + 2; queries > limit {
		t.Errorf("the watch made %d queries during %v of outage, want at most %d (backoff)", queries, 3*testTTL, limit)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()

	// Every instance is back within TTL + 2s.
	registrytest.WaitDiscover(t, cons, k1, testTTL+2*time.Second, registrytest.HasIDs("a", "b"))
	registrytest.WaitDiscover(t, cons, k2, testTTL+2*time.Second, registrytest.HasIDs("c"))
	t.Logf("every instance was back %v after the agent", time.Since(up))

	// Changes after the restart reach the watches.
	register(t, prov, inst(k1, "d", "127.0.0.1:2004"))
	wl1.waitFor(t, 10*time.Second, "a, b and d", registrytest.HasIDs("a", "b", "d"))
	// Let the resync grace end, to see that it removes nothing.
	time.Sleep(time.Until(up.Add(testTTL + 3*time.Second)))
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	err = prov.Deregister(ctx, inst(k2, "c", ""))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	wl2.waitFor(t, 10*time.Second, "no instance after deregistering c", registrytest.HasIDs())

	check := func(name string, recs []watchRecord, want ...string) {
		for _, rec := range recs {
			if rec.err != nil {
				t.Errorf("%s: Next returned %v during the outage", name, rec.err)
			}
			for _, id := range want {
				if !slices.ContainsFunc(rec.list, func(in registry.Instance) bool { return in.ID == id }) {
					t.Errorf("%s: the watch delivered %s during or after the outage, without %q", name, registrytest.Format(rec.list), id)
				}
			}
		}
	}
	check("watch of "+k1.String(), wl1.snapshot()[before1:], "a", "b")
	recs2 := wl2.snapshot()
	check("watch of "+k2.String(), recs2[before2:len(recs2)-1], "c")

	out := logs.String()
	if strings.Contains(out, secretToken) {
		t.Errorf("the logs show the ACL token")
	}
	if n := logs.count("level=WARN", "watch query failed"); n != 2 {
		t.Errorf("%d warnings about failed watch queries, want 2 (one per watch):\n%s", n, out)
	}
	if n := logs.count("level=INFO", "watch resumed"); n != 2 {
		t.Errorf("%d notices of resumed watches, want 2:\n%s", n, out)
	}
	if n := logs.count("level=WARN", "cannot keep the instance registered"); n != 3 {
		t.Errorf("%d warnings about lost registrations, want 3 (one per instance):\n%s", n, out)
	}
	if n := logs.count("level=INFO", "is registered again"); n != 3 {
		t.Errorf("%d notices of restored registrations, want 3:\n%s", n, out)
	}
}

// TestAgentRestartLosesState kills the agent and starts it again at once:
// it comes back without any registration (checked with a service
// registered behind the adapter's back), and every instance of two
// providers is registered again within TTL + 2s, while the consumer's watch
// never loses them.
func TestAgentRestartLosesState(t *testing.T) {
	agent := testservers.StartConsul(t)
	raw := rawClient(t, agent)
	p1 := newTestRegistry(t, agent, nil)
	p2 := newTestRegistry(t, agent, nil)
	cons := newTestRegistry(t, agent, nil)
	key := registrytest.UniqueKey(t)
	var ids []string
	for i := range 3 {
		for j, p := range []*Registry{p1, p2} {
			id := fmt.Sprintf("p%d-%d", j+1, i)
			ids = append(ids, id)
			register(t, p, registry.Instance{Key: key, ID: id, Addr: fmt.Sprintf("127.0.0.1:%d", 3000+10*j+i), Weight: i + 1,
				Metadata: map[string]string{"provider": fmt.Sprint(j + 1)}})
		}
	}
	want := registrytest.WaitDiscover(t, cons, key, 10*time.Second, registrytest.HasIDs(ids...))
	if err := raw.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "canary", Name: "canary", Port: 1}); err != nil {
		t.Fatal(err)
	}
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	wl := recordWatch(t, w)
	wl.waitFor(t, 10*time.Second, "every instance", registrytest.HasIDs(ids...))
	before := len(wl.snapshot())

	for round, stop := range []func(){agent.Kill, agent.Stop} {
		stop()
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		if svcs, err := raw.Agent().Services(); err != nil {
			t.Fatal(err)
		} else if _, ok := svcs["canary"]; ok {
			t.Fatalf("round %d: the restarted agent still has the canary service: it did not lose its state", round+1)
		}
		registrytest.WaitDiscover(t, cons, key, testTTL+2*time.Second, func(list []registry.Instance) bool {
			return slices.EqualFunc(list, want, registrytest.SameInstance)
		})
		t.Logf("round %d: every instance was registered again %v after the restart", round+1, time.Since(up))
		if err := raw.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "canary", Name: "canary", Port: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for _, rec := range wl.snapshot()[before:] {
		if rec.err != nil || !registrytest.HasIDs(ids...)(rec.list) {
			t.Errorf("the watch delivered %s, %v across the restarts; want every instance throughout", registrytest.Format(rec.list), rec.err)
		}
	}
}

// TestConsumerRecordAgentRestart: a consumer record (port 0) is kept
// registered like a provider's instance: an agent that restarts and loses
// it has it again within TTL + 2s; with tcp-check it gets no TCP check (it
// listens nowhere) and so stays passing.
func TestConsumerRecordAgentRestart(t *testing.T) {
	agent := testservers.StartConsul(t)
	cons := newTestRegistry(t, agent, nil, func(c *Config) { c.TCPCheck = true })
	tool := newTestRegistry(t, agent, nil)
	key := registry.ConsumerKey(registrytest.UniqueKey(t))
	rec := registry.Instance{Key: key, ID: "c", Addr: "127.0.0.1:0", Weight: 100}
	register(t, cons, rec)
	registrytest.WaitDiscover(t, tool, key, 10*time.Second, registrytest.HasIDs("c"))
	agent.Stop()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	list := registrytest.WaitDiscover(t, tool, key, testTTL+2*time.Second, registrytest.HasIDs("c"))
	t.Logf("the consumer record was registered again %v after the restart", time.Since(up))
	if !registrytest.SameInstance(list[0], rec) {
		t.Errorf("Discover = %s, want %s", registrytest.Format(list), registrytest.Format([]registry.Instance{rec}))
	}
	// Still passing one TTL later: no failing TCP check on port 0.
	time.Sleep(testTTL + time.Second)
	registrytest.WaitDiscover(t, tool, key, time.Second, registrytest.HasIDs("c"))
}

// TestExternalDeregister checks that an instance an operator deregisters
// behind the provider's back is registered again within TTL, while one
// the provider deregisters stays deregistered.
func TestExternalDeregister(t *testing.T) {
	agent := testservers.StartConsul(t)
	raw := rawClient(t, agent)
	prov := newTestRegistry(t, agent, nil)
	key := registrytest.UniqueKey(t)
	a, b := inst(key, "a", "127.0.0.1:1"), inst(key, "b", "127.0.0.1:2")
	register(t, prov, a, b)
	registrytest.WaitDiscover(t, prov, key, 10*time.Second, registrytest.HasIDs("a", "b"))

	if err := raw.Agent().ServiceDeregister(ServiceID(key, "a")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	registrytest.WaitDiscover(t, prov, key, 10*time.Second, registrytest.HasIDs("b"))
	registrytest.WaitDiscover(t, prov, key, testTTL+2*time.Second, registrytest.HasIDs("a", "b"))
	t.Logf("the operator-deregistered instance was back after %v", time.Since(start))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := prov.Deregister(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Deregister is synchronous: the agent no longer has it...
	if svcs, err := raw.Agent().Services(); err != nil {
		t.Fatal(err)
	} else if _, ok := svcs[ServiceID(key, "b")]; ok {
		t.Fatal("the agent still has the instance after Deregister returned")
	}
	// ... and it is not registered again.
	time.Sleep(testTTL)
	if list, err := prov.Discover(ctx, key); err != nil || !registrytest.HasIDs("a")(list) {
		t.Errorf("after Deregister(b) and a TTL: Discover = %s, %v; want only a", registrytest.Format(list), err)
	}
}

// TestWatchNoSpin counts the queries of watches: none while nothing changes
// (the blocking query waits), and a rate-limited number while the service
// churns.
func TestWatchNoSpin(t *testing.T) {
	agent := testservers.StartConsul(t)
	r := newTestRegistry(t, agent, nil)
	key, missing := registrytest.UniqueKey(t), registrytest.UniqueKey(t)
	register(t, r, inst(key, "a", "127.0.0.1:1"))
	registrytest.WaitDiscover(t, r, key, 10*time.Second, registrytest.HasIDs("a"))
	var ws []*watcher
	for _, k := range []registry.ServiceKey{key, missing} {
		w, err := r.Watch(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = w.Next(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w.(*watcher))
	}

	// Quiet: the TTL passes (every TTL/3) change nothing in the catalog.
	q0, m0 := ws[0].queries.Load(), ws[1].queries.Load()
	const quiet = 3 * time.Second
	time.Sleep(quiet)
	q, m := ws[0].queries.Load()-q0, ws[1].queries.Load()-m0
	t.Logf("in %v without changes: %d queries watching a service, %d watching a missing one", quiet, q, m)
	if q > 1 || m > 1 {
		t.Errorf("in %v without changes the watches made %d and %d queries, want at most 1", quiet, q, m)
	}

	// Churn: an instance registered and deregistered every 20ms.
	q0 = ws[0].queries.Load()
	start := time.Now()
	const churn = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := inst(key, "b", "127.0.0.1:2")
	for i := 0; time.Since(start) < churn; i++ {
		var err error
		if i%2 == 0 {
			err = r.Register(ctx, b)
		} else {
			err = r.Deregister(ctx, b)
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	q = ws[0].queries.Load() - q0
	elapsed := time.Since(start)
	limit := int64(2 + elapsed/DefaultQueryInterval + 1)
	t.Logf("in %v of churn: %d queries (limit %d)", elapsed, q, limit)
	if q > limit {
		t.Errorf("in %v of churn the watch made %d queries, want at most %d (burst 2, then 1 per %v)", elapsed, q, limit, DefaultQueryInterval)
	}
	// The watch still delivers the final list.
	if err := r.Deregister(ctx, b); err != nil {
		t.Fatal(err)
	}
	register(t, r, inst(key, "c", "127.0.0.1:3"))
	registrytest.WaitFor(t, ws[0], 10*time.Second, registrytest.HasIDs("a", "c"))
}

// TestTCPCheck checks the optional TCP check: an instance whose port
// accepts connections is returned, one whose port refuses them is not, and
// one whose listener closes drops out.
func TestTCPCheck(t *testing.T) {
	agent := testservers.StartConsul(t)
	r := newTestRegistry(t, agent, nil, func(c *Config) { c.TCPCheck = true })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	key := registrytest.UniqueKey(t)
	register(t, r, inst(key, "listening", l.Addr().String()), inst(key, "refusing", closedAddr))
	start := time.Now()
	registrytest.WaitDiscover(t, r, key, testTTL+3*time.Second, registrytest.HasIDs("listening"))
	t.Logf("the listening instance passed its first TCP check after %v", time.Since(start))
	l.Close()
	start = time.Now()
	registrytest.WaitDiscover(t, r, key, testTTL+3*time.Second, registrytest.HasIDs())
	t.Logf("the instance whose listener closed dropped out after %v", time.Since(start))
}

// TestStoredForm checks what operators see in Consul, and that instances
// with metadata and IDs that do not fit Consul's meta rules survive the
// trip through a real agent.
func TestStoredForm(t *testing.T) {
	agent := testservers.StartConsul(t)
	raw := rawClient(t, agent)
	r := newTestRegistry(t, agent, nil)
	key := registry.ServiceKey{Service: "helloworld.Greeter" + strings.ReplaceAll(registrytest.UniqueKey(t).Service, ".", "_"), Version: "1.2.3", Group: "blue"}
	in := registry.Instance{Key: key, ID: "10.0.0.1:8080", Addr: "[::1]:8080", Weight: 70000,
		Metadata: map[string]string{"zone": "eu-1", "dotted.key": "v", "storks-id": "mine", "long": strings.Repeat("é", 400)}}
	odd := registry.Instance{Key: key, ID: strings.Repeat("ïd/", 300), Addr: "localhost:9", Metadata: map[string]string{"ünï": "cödé"}}
	register(t, r, in, odd)
	list := registrytest.WaitDiscover(t, r, key, 10*time.Second, registrytest.HasIDs(in.ID, odd.ID))
	want := []registry.Instance{in, odd}
	if !slices.EqualFunc(list, want, registrytest.SameInstance) {
		t.Errorf("Discover = %.300s\nwant %.300s", registrytest.Format(list), registrytest.Format(want))
	}

	svcs, err := raw.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	s := svcs[ServiceID(key, in.ID)]
	if s == nil {
		t.Fatalf("the agent has no service %q", ServiceID(key, in.ID))
	}
	if !strings.HasPrefix(s.Service, "helloworld-greeter") {
		t.Errorf("Consul service name %q, want helloworld-greeter...", s.Service)
	}
	for _, tag := range []string{"storks", "version=1.2.3", "group=blue"} {
		if !slices.Contains(s.Tags, tag) {
			t.Errorf("tags %q lack %q", s.Tags, tag)
		}
	}
	for k, v := range map[string]string{"storks-service": key.Service, "storks-version": "1.2.3", "storks-group": "blue",
		"storks-id": in.ID, "storks-weight": "70000", "zone": "eu-1"} {
		if s.Meta[k] != v {
			t.Errorf("meta %q = %q, want %q", k, s.Meta[k], v)
		}
	}
	if s.Address != "::1" || s.Port != 8080 || s.Weights.Passing != 65535 {
		t.Errorf("address %q port %d weight %d, want ::1 8080 65535", s.Address, s.Port, s.Weights.Passing)
	}
	checks, err := raw.Agent().Checks()
	if err != nil {
		t.Fatal(err)
	}
	c := checks[ttlCheckID(s.ID)]
	if c == nil || c.Type != "ttl" || c.Status != api.HealthPassing || c.ServiceID != s.ID {
		t.Errorf("TTL check = %+v, want a passing ttl check of the service", c)
	}
	// The tags filter as documented.
	entries, _, err := raw.Health().Service(s.Service, "version=1.2.3", true, nil)
	if err != nil || len(entries) != 2 {
		t.Errorf("health query with tag version=1.2.3: %d entries, %v; want 2", len(entries), err)
	}
}

// TestCloseStopsGoroutines checks that Close stops every goroutine the
// registry started (keepers, watches, HTTP connections).
func TestCloseStopsGoroutines(t *testing.T) {
	agent := testservers.StartConsul(t)
	settle := func() int {
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := settle()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, Config{Address: agent.Addr(), TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	key := registrytest.UniqueKey(t)
	register(t, r, inst(key, "a", "127.0.0.1:1"), inst(key, "b", "127.0.0.1:2"))
	var wg sync.WaitGroup
	for range 3 {
		w, err := r.Watch(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Next(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { // a Next waiting when Close comes
			defer wg.Done()
			w.Next(context.Background())
		}()
	}
	if _, err := r.Discover(ctx, key); err != nil {
		t.Fatal(err)
	}
	for range 2 { // rule watches, never stopped, one Next waiting
		rw, err := r.WatchRule(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rw.Next(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rw.Next(context.Background())
		}()
	}
	during := runtime.NumGoroutine()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := settle()
		if after <= before {
			t.Logf("goroutines: %d before Open, %d while running, %d after Close", before, during, after)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before Open, %d 5s after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.Close(); err != registry.ErrClosed {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
}

// TestResyncGrace checks the watch's behaviour when the agent comes back
// without the registrations: instances that come back within the resync
// grace are never removed from the consumer's list, those that do not are
// removed when the grace ends, and without the grace the consumer would
// have seen them all vanish. The "providers" here are registrations made
// by hand, so that the test decides when they come back.
func TestResyncGrace(t *testing.T) {
	agent := testservers.StartConsul(t)
	raw := rawClient(t, agent)
	logs := &syncBuffer{}
	cons := newTestRegistry(t, agent, logs) // grace: TTL + 2s
	noGrace := newTestRegistry(t, agent, nil, func(c *Config) { c.ResyncGrace = -1 })
	builder := newTestRegistry(t, agent, nil, func(c *Config) { c.TTL = time.Minute })
	key := registrytest.UniqueKey(t)
	regs := map[string]*api.AgentServiceRegistration{}
	for i, id := range []string{"back", "gone"} {
		reg, err := builder.registration(inst(key, id, fmt.Sprintf("127.0.0.1:%d", 4000+i)))
		if err != nil {
			t.Fatal(err)
		}
		regs[id] = reg
		if err := raw.Agent().ServiceRegister(reg); err != nil {
			t.Fatal(err)
		}
	}
	watch := func(r *Registry) *watchLog {
		w, err := r.Watch(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		wl := recordWatch(t, w)
		wl.waitFor(t, 10*time.Second, "both instances", registrytest.HasIDs("back", "gone"))
		return wl
	}
	wl, wlNoGrace := watch(cons), watch(noGrace)
	before := len(wl.snapshot())

	agent.Kill()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	registrytest.Eventually(t, 10*time.Second, func() error {
		if logs.count("watch resumed") == 0 {
			return fmt.Errorf("the watch has not resumed")
		}
		return nil
	})
	resumed := time.Now()
	// Without the grace, the consumer sees the empty list of the new agent.
	wlNoGrace.waitFor(t, 5*time.Second, "the empty list (no grace)", registrytest.HasIDs())
	time.Sleep(time.Second)
	if err := raw.Agent().ServiceRegister(regs["back"]); err != nil {
		t.Fatal(err)
	}
	wlNoGrace.waitFor(t, 5*time.Second, "the instance that came back (no grace)", registrytest.HasIDs("back"))
	// With it, the instance that did not come back goes when the grace ends.
	grace := cons.cfg.ResyncGrace
	at := wl.waitFor(t, grace+5*time.Second, "the instance that came back", registrytest.HasIDs("back"))
	t.Logf("the instance that did not come back was removed %v after the watch resumed (grace %v)", at.Sub(resumed), grace)
	if d := at.Sub(resumed); d < grace-time.Second || d > grace+2*time.Second {
		t.Errorf("the instance that did not come back was removed %v after the watch resumed, want about the grace, %v", d, grace)
	}
	recs := wl.snapshot()
	for _, rec := range recs[before : len(recs)-1] {
		if rec.err != nil || !registrytest.HasIDs("back", "gone")(rec.list) {
			t.Errorf("during the grace the watch delivered %s, %v; want both instances", registrytest.Format(rec.list), rec.err)
		}
	}
}
