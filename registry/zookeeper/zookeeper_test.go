package zookeeper

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// TestStartWhileDown: a provider and a consumer start while the server is
// down and work once it is up (see registrytest.RunStartWhileDown).
func TestStartWhileDown(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	registrytest.RunStartWhileDown(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			c := testConfig(t, srv, base)
			c.Logger = log
			return New(ctx, c)
		},
		Addr: srv.Addr(),
		Stop: func(*testing.T) { srv.Stop() },
		Start: func(t *testing.T) {
			if err := srv.Start(); err != nil {
				t.Fatalf("starting ZooKeeper again: %v", err)
			}
		},
		Settle: 15 * time.Second,
	})
}

// TestConformance runs the shared registry suite against a real ZooKeeper
// server, through registry.Open and the zookeeper:// scheme.
func TestConformance(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	url := srv.URL(uniqueBase(t) + "?session-timeout=5s&dial-timeout=10s")
	registrytest.Run(t, registrytest.Harness{
		Open: func(t *testing.T) registry.Registry {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			r, err := registry.Open(ctx, url)
			if err != nil {
				t.Fatalf("registry.Open(%q): %v", url, err)
			}
			return r
		},
		Settle:   10 * time.Second,
		Parallel: true,
		Rules:    true,
	})
}

// TestRuleOutage: a rule watch keeps its document while the server is down
// and delivers a change made once it is back (see
// registrytest.RunRuleOutage).
func TestRuleOutage(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	registrytest.RunRuleOutage(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			c := testConfig(t, srv, base)
			c.Logger = log
			return New(ctx, c)
		},
		Addr: srv.Addr(),
		Stop: func(*testing.T) { srv.Stop() },
		Start: func(t *testing.T) {
			if err := srv.Start(); err != nil {
				t.Fatalf("starting ZooKeeper again: %v", err)
			}
		},
		Settle: 15 * time.Second,
	})
}

// TestProviderDies: a provider whose process dies (its connections drop
// and it never sends closeSession) disappears from a consumer's Discover
// and Watch within the session timeout + 2s; a provider that closes its
// registry without deregistering disappears at once.
func TestProviderDies(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	const sessionTimeout = 2 * time.Second
	fd := newFaultDialer()
	dying := openTest(t, srv, base, func(c *Config) { c.Dialer = fd.dial; c.SessionTimeout = sessionTimeout })
	closing := openTest(t, srv, base, nil)
	healthy := openTest(t, srv, base, nil)
	cons := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	mustRegister(t, dying, inst(key, "dies", 1))
	mustRegister(t, closing, inst(key, "closes", 2))
	mustRegister(t, healthy, inst(key, "stays", 3))

	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("closes", "dies", "stays"))

	start := time.Now()
	if err := closing.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	registrytest.WaitFor(t, w, 2*time.Second, registrytest.HasIDs("dies", "stays"))
	t.Logf("a closed registry's instance disappeared after %v", time.Since(start))

	start = time.Now()
	fd.Cut()
	registrytest.WaitFor(t, w, sessionTimeout+2*time.Second, registrytest.HasIDs("stays"))
	t.Logf("a dead provider's instance disappeared from the watch after %v", time.Since(start))
	registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs("stays"))
}

// TestServerOutage stops the server for 3x the session timeout: the
// consumer's watch keeps its list (nothing delivered, no error), Discover
// serves the last known list, every provider is registered again within the
// session timeout + 2s of the restart, later changes are seen, and the
// outage is logged once, not once per retry.
func TestServerOutage(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	const sessionTimeout = 3 * time.Second
	cfg := func(c *Config) { c.SessionTimeout = sessionTimeout; c.DialTimeout = time.Second }
	prov1 := openTest(t, srv, base, cfg)
	prov2 := openTest(t, srv, base, cfg)
	consLog := newLogRecorder(t)
	cons := openTest(t, srv, base, func(c *Config) { cfg(c); c.Logger = slog.New(consLog) })
	key := registrytest.UniqueKey(t)
	mustRegister(t, prov1, inst(key, "p1", 1))
	mustRegister(t, prov2, inst(key, "p2", 2))
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("p1", "p2"))

	// Read the watch throughout: nothing may arrive during the outage.
	type result struct {
		list []registry.Instance
		err  error
		at   time.Time
	}
	results := make(chan result, 100)
	readCtx, stopReading := context.WithCancel(context.Background())
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			list, err := w.Next(readCtx)
			if readCtx.Err() != nil {
				return
			}
			results <- result{list, err, time.Now()}
			if err != nil {
				return
			}
		}
	}()

	srv.Stop()
	stopped := time.Now()
	// Discover serves the last known list while the server is down.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	list, err := cons.Discover(ctx, key)
	cancel()
	if err != nil || !registrytest.HasIDs("p1", "p2")(list) {
		t.Errorf("Discover during the outage = %s, %v; want the last known list [p1 p2]", registrytest.Format(list), err)
	}
	time.Sleep(3*sessionTimeout - time.Since(stopped))
	select {
	case r := <-results:
		t.Fatalf("the watch delivered %s, %v during the outage; want nothing", registrytest.Format(r.list), r.err)
	default:
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("restarting the server: %v", err)
	}
	restarted := time.Now()
	t.Logf("the server was down for %v", restarted.Sub(stopped))

	// Every provider is registered again, as a fresh client sees it.
	fresh := openTest(t, srv, base, nil)
	registrytest.WaitDiscover(t, fresh, key, sessionTimeout+2*time.Second, registrytest.HasIDs("p1", "p2"))
	t.Logf("the providers were registered %v after the restart", time.Since(restarted))

	// The watch sees later changes.
	mustRegister(t, fresh, inst(key, "p3", 3))
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("the watch returned an error after the restart: %v", r.err)
			}
			if len(r.list) == 0 {
				t.Fatalf("the watch delivered an empty list at %v after the restart", r.at.Sub(restarted))
			}
			done = registrytest.HasIDs("p1", "p2", "p3")(r.list)
		case <-deadline:
			t.Fatal("the watch did not see the instance registered after the restart")
		}
	}
	stopReading()
	<-readerDone

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	list, err = cons.Discover(ctx, key)
	cancel()
	if err != nil || !registrytest.HasIDs("p1", "p2", "p3")(list) {
		t.Errorf("Discover after the restart = %s, %v", registrytest.Format(list), err)
	}
	n, msgs := consLog.count(slog.LevelInfo)
	t.Logf("the consumer logged %d lines at Info or above: %q", n, msgs)
	if n > 6 {
		t.Errorf("the consumer logged %d lines at Info or above for one outage; want a few: %q", n, msgs)
	}
}

// TestSessionExpiry expires the sessions of a provider and of a consumer
// the standard way (a second connection attaches to the session and closes
// it): the provider is registered again in its new session, and the watches
// of both keep working.
func TestSessionExpiry(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	provDialer, consDialer := newFaultDialer(), newFaultDialer()
	prov := openTest(t, srv, base, func(c *Config) { c.Dialer = provDialer.dial })
	cons := openTest(t, srv, base, func(c *Config) { c.Dialer = consDialer.dial })
	other := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	a := inst(key, "a", 1)
	a.Metadata = map[string]string{"zone": "z1"}
	mustRegister(t, prov, a)
	consW, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer consW.Stop()
	provW, err := prov.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer provW.Stop()
	registrytest.WaitFor(t, consW, 10*time.Second, registrytest.HasIDs("a"))
	registrytest.WaitFor(t, provW, 10*time.Second, registrytest.HasIDs("a"))

	expire := func(name string, r *Registry, d *faultDialer) {
		t.Helper()
		sid := r.conn.SessionID()
		pw := d.password(sid)
		if pw == nil {
			t.Fatalf("no password seen for the %s's session 0x%x", name, sid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.ExpireSession(ctx, sid, pw); err != nil {
			t.Fatalf("expiring the %s's session: %v", name, err)
		}
		start := time.Now()
		registrytest.Eventually(t, 10*time.Second, func() error {
			if got := r.conn.SessionID(); got == sid || r.conn.State() != zk.StateHasSession {
				return errors.New("the " + name + " has no new session yet")
			}
			return nil
		})
		t.Logf("the %s has a new session %v after the expiry", name, time.Since(start))
	}
	owner := func() int64 {
		_, stat, err := other.conn.Get(prov.nodePath(key, "a"))
		if err != nil {
			return 0
		}
		return stat.EphemeralOwner
	}

	for round := 1; round <= 2; round++ {
		start := time.Now()
		expire("provider", prov, provDialer)
		registrytest.Eventually(t, 2*time.Second+2*time.Second, func() error {
			if o, sid := owner(), prov.conn.SessionID(); o != sid {
				return errors.New("the instance node is not owned by the provider's new session")
			}
			return nil
		})
		t.Logf("round %d: the provider was registered again %v after its session was expired", round, time.Since(start))
		registrytest.WaitDiscover(t, other, key, 0, func(l []registry.Instance) bool {
			return len(l) == 1 && registrytest.SameInstance(l[0], a)
		})
		// The consumer may or may not have seen the instance go and come
		// back; either way it ends up with it.
		if l, ok := drain(consW, 500*time.Millisecond); ok && !registrytest.HasIDs("a")(l) {
			t.Fatalf("round %d: the consumer's watch ended with %s", round, registrytest.Format(l))
		}
	}

	// The provider's own watch survived its session expiries.
	mustRegister(t, other, inst(key, "b", 2))
	registrytest.WaitFor(t, provW, 5*time.Second, registrytest.HasIDs("a", "b"))
	registrytest.WaitFor(t, consW, 5*time.Second, registrytest.HasIDs("a", "b"))

	// So does the consumer's.
	expire("consumer", cons, consDialer)
	mustRegister(t, other, inst(key, "c", 3))
	registrytest.WaitFor(t, consW, 5*time.Second, registrytest.HasIDs("a", "b", "c"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := other.Deregister(ctx, inst(key, "b", 2)); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, consW, 5*time.Second, registrytest.HasIDs("a", "c"))
	registrytest.WaitFor(t, provW, 5*time.Second, registrytest.HasIDs("a", "c"))
}

// TestNetworkPartition cuts a provider and a consumer off the network for
// longer than their session timeout, so that the server expires both
// sessions: when the network comes back, the provider registers itself
// again (it does not silently drop out for good) and the consumer's watch
// resumes in its new session and delivers the list as it is now.
func TestNetworkPartition(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	const sessionTimeout = 2 * time.Second
	provNet, consNet := newFaultDialer(), newFaultDialer()
	prov := openTest(t, srv, base, func(c *Config) { c.Dialer = provNet.dial; c.SessionTimeout = sessionTimeout })
	cons := openTest(t, srv, base, func(c *Config) { c.Dialer = consNet.dial; c.SessionTimeout = sessionTimeout })
	other := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	mustRegister(t, prov, inst(key, "a", 1))
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))
	provSession, consSession := prov.conn.SessionID(), cons.conn.SessionID()

	provNet.Cut()
	consNet.Cut()
	// The server expires the provider's session and deletes its node.
	registrytest.WaitDiscover(t, other, key, sessionTimeout+2*time.Second, registrytest.HasIDs())
	mustRegister(t, other, inst(key, "b", 2))
	// Cut off, the consumer keeps its last list.
	if l, err := nextWithin(w, sessionTimeout); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the cut-off consumer's watch delivered %s, %v; want nothing", registrytest.Format(l), err)
	}

	provNet.Heal()
	consNet.Heal()
	healed := time.Now()
	registrytest.WaitDiscover(t, other, key, sessionTimeout+2*time.Second, registrytest.HasIDs("a", "b"))
	t.Logf("the provider was registered again %v after the network came back", time.Since(healed))
	registrytest.WaitFor(t, w, sessionTimeout+2*time.Second, registrytest.HasIDs("a", "b"))
	t.Logf("the consumer's watch had the current list %v after the network came back", time.Since(healed))
	if prov.conn.SessionID() == provSession || cons.conn.SessionID() == consSession {
		t.Errorf("a session survived the partition; the test did not test expiry")
	}
	if err := other.Deregister(context.Background(), inst(key, "b", 2)); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))
}

// TestStaleNodeReplaced: a provider that restarts registers its instance ID
// again while the node of its previous run (whose session has not timed out
// yet) is still there: the new registration replaces that node at once, and
// stays when the old session expires.
func TestStaleNodeReplaced(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	const oldTimeout = 4 * time.Second
	fd := newFaultDialer()
	old := openTest(t, srv, base, func(c *Config) { c.Dialer = fd.dial; c.SessionTimeout = oldTimeout })
	cons := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	v1 := inst(key, "x", 1111)
	mustRegister(t, old, v1)
	registrytest.WaitDiscover(t, cons, key, 0, registrytest.HasIDs("x"))

	fd.Cut() // the old process dies; its node stays for oldTimeout
	killed := time.Now()
	restarted := openTest(t, srv, base, nil)
	v2 := inst(key, "x", 2222)
	v2.Metadata = map[string]string{"run": "2"}
	start := time.Now()
	mustRegister(t, restarted, v2)
	t.Logf("Register over the stale node took %v", time.Since(start))
	same := func(l []registry.Instance) bool { return len(l) == 1 && registrytest.SameInstance(l[0], v2) }
	registrytest.WaitDiscover(t, cons, key, 2*time.Second, same)
	if time.Since(killed) > oldTimeout-time.Second {
		t.Fatalf("the test was too slow (%v) to see the node replaced before the old session expired", time.Since(killed))
	}
	_, stat, err := cons.conn.Get(cons.nodePath(key, "x"))
	if err != nil || stat.EphemeralOwner != restarted.conn.SessionID() {
		t.Fatalf("the node is owned by session 0x%x (err %v); want the new provider's 0x%x", stat.EphemeralOwner, err, restarted.conn.SessionID())
	}

	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if l, err := nextWithin(w, 5*time.Second); err != nil || !same(l) {
		t.Fatalf("first Next = %s, %v", registrytest.Format(l), err)
	}
	// The old session expires: nothing changes.
	wait := time.Until(killed.Add(oldTimeout + 2*time.Second))
	if l, err := nextWithin(w, wait); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("when the old session expired the watch delivered %s, %v; want no change", registrytest.Format(l), err)
	}
	registrytest.WaitDiscover(t, cons, key, time.Second, same)
}

// TestLastRegisterWins: when two live registries register the same ID, the
// later one holds the node and the earlier one stops keeping its own (no
// tug of war).
func TestLastRegisterWins(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	first, second, cons := openTest(t, srv, base, nil), openTest(t, srv, base, nil), openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	mustRegister(t, first, inst(key, "x", 1))
	registrytest.WaitDiscover(t, cons, key, 0, registrytest.HasIDs("x"))
	mustRegister(t, second, inst(key, "x", 2))
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	isSecond := func(l []registry.Instance) bool { return len(l) == 1 && l[0].Addr == "127.0.0.1:2" }
	registrytest.WaitFor(t, w, 5*time.Second, isSecond)
	if l, err := nextWithin(w, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the watch delivered %s, %v; want the second registration to stay", registrytest.Format(l), err)
	}
	registrytest.Eventually(t, 5*time.Second, func() error {
		first.mu.Lock()
		defer first.mu.Unlock()
		if len(first.entries) != 0 {
			return errors.New("the first registry still keeps its registration")
		}
		return nil
	})
}

// TestReplacesNodeOfPastSession: a node of the instance that belongs to one
// of the registry's own earlier sessions (possible right after a session
// change, before the server deleted it) is replaced, not given up. The
// "earlier session" is simulated by marking another client's session as
// one of the registry's past sessions.
func TestReplacesNodeOfPastSession(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	prov, other, cons := openTest(t, srv, base, nil), openTest(t, srv, base, nil), openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	mustRegister(t, prov, inst(key, "x", 1))
	prov.mu.Lock()
	prov.past[other.conn.SessionID()] = true
	prov.mu.Unlock()
	mustRegister(t, other, inst(key, "x", 2))
	registrytest.Eventually(t, 5*time.Second, func() error {
		_, stat, err := cons.conn.Get(cons.nodePath(key, "x"))
		if err != nil {
			return err
		}
		if stat.EphemeralOwner != prov.conn.SessionID() {
			return errors.New("the node is not the provider's again")
		}
		return nil
	})
	registrytest.WaitDiscover(t, cons, key, 5*time.Second, func(l []registry.Instance) bool {
		return len(l) == 1 && l[0].Addr == "127.0.0.1:1"
	})
}

// TestWatchForeignNodes: the watch follows instance nodes written by other
// clients, including data changes of a node (data watches), and ignores
// nodes that are not Storks instances.
func TestWatchForeignNodes(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	cons := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs())

	raw, _, err := zk.Connect([]string{srv.Addr()}, 5*time.Second, zk.WithLogInfo(false), zk.WithLogger(nopLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	acl := zk.WorldACL(zk.PermAll)
	dir := cons.providersDir(key)
	for _, p := range cons.parents(dir) {
		if _, err := raw.Create(p, nil, 0, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			t.Fatalf("Create(%s): %v", p, err)
		}
	}
	a := inst(key, "a", 1)
	data, _ := encode(a)
	if _, err := raw.Create(dir+"/a", data, zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Create(dir+"/garbage", []byte("not json"), zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	other := inst(registry.ServiceKey{Service: "other.Service"}, "wrong-key", 2)
	data, _ = encode(other)
	if _, err := raw.Create(dir+"/wrong-key", data, zk.FlagEphemeral, acl); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))

	a.Addr, a.Metadata = "127.0.0.1:9999", map[string]string{"v": "2"}
	data, _ = encode(a)
	if _, err := raw.Set(dir+"/a", data, -1); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, w, 5*time.Second, func(l []registry.Instance) bool {
		return len(l) == 1 && registrytest.SameInstance(l[0], a)
	})
	if err := raw.Delete(dir+"/a", -1); err != nil {
		t.Fatal(err)
	}
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs())

	// The providers node itself goes away and comes back.
	for _, name := range []string{"garbage", "wrong-key"} {
		if err := raw.Delete(dir+"/"+name, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := raw.Delete(dir, -1); err != nil {
		t.Fatal(err)
	}
	prov := openTest(t, srv, base, nil)
	mustRegister(t, prov, inst(key, "b", 2))
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("b"))
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// TestRegisterUpdateInPlace: registering an ID again updates the node's
// data in place (same node, no gap for a watch).
func TestRegisterUpdateInPlace(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	prov, cons := openTest(t, srv, base, nil), openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	v1 := inst(key, "x", 1)
	mustRegister(t, prov, v1)
	_, stat1, err := cons.conn.Get(cons.nodePath(key, "x"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("x"))
	v2 := inst(key, "x", 2)
	mustRegister(t, prov, v2)
	l, err := nextWithin(w, 5*time.Second)
	if err != nil || len(l) != 1 || !registrytest.SameInstance(l[0], v2) {
		t.Fatalf("Next after the update = %s, %v; want %s", registrytest.Format(l), err, registrytest.Format([]registry.Instance{v2}))
	}
	_, stat2, err := cons.conn.Get(cons.nodePath(key, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if stat2.Czxid != stat1.Czxid || stat2.Version != stat1.Version+1 {
		t.Errorf("the node was re-created (czxid %d -> %d, version %d -> %d); want an in-place update", stat1.Czxid, stat2.Czxid, stat1.Version, stat2.Version)
	}
}

// TestRegisterFailureRestores: a Register whose context ends before the
// server answers returns an error and leaves nothing registered.
func TestRegisterFailureRestores(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	fd := newFaultDialer()
	prov := openTest(t, srv, base, func(c *Config) { c.Dialer = fd.dial; c.SessionTimeout = 10 * time.Second })
	cons := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	mustRegister(t, prov, inst(key, "kept", 1))
	fd.Cut()
	registrytest.Eventually(t, 5*time.Second, func() error {
		if prov.conn.State() == zk.StateHasSession {
			return errors.New("still connected")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := prov.Register(ctx, inst(key, "new", 2))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), srv.Addr()) {
		t.Fatalf("Register while cut off = %v; want a deadline error naming the server", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = prov.Deregister(ctx, inst(key, "kept", 1))
	cancel()
	if err == nil {
		t.Fatal("Deregister while cut off: no error")
	}
	fd.Heal()
	// The session survived: "kept" is deleted by the background retry of
	// the failed Deregister, and "new" was never created.
	registrytest.WaitDiscover(t, cons, key, 5*time.Second, registrytest.HasIDs())
	time.Sleep(500 * time.Millisecond)
	registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs())
	prov.mu.Lock()
	n := len(prov.entries)
	prov.mu.Unlock()
	if n != 0 {
		t.Errorf("the provider keeps %d registrations; want none", n)
	}
}

// TestOpenErrors: bad URLs name the bad part; a server that answers in
// another protocol, or the end of the context, makes Open fail naming the
// address; a closed port does not (see registrytest.CheckRefused).
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ url, field string }{
		{"zookeeper://", "URL host"},
		{"zookeeper:///base", "URL host"},
		{"zookeeper://h:0/x", "URL host"},
		{"zookeeper://h:99999/x", "URL host"},
		{"zookeeper://h:1,/x", "URL"},
		{"zookeeper://h:1,,h:2/x", "URL host"},
		{"zookeeper://bad_host!:1/x", "URL"},
		{"zookeeper://h:1/a//b", "URL path"},
		{"zookeeper://h:1/a/../b", "URL path"},
		{"zookeeper://h:1/zookeeper/x", "URL path"},
		{"zookeeper://h:1/x?ttl=2s", "URL query parameter"},
		{"zookeeper://h:1/x?session-timeout=abc", "session-timeout"},
		{"zookeeper://h:1/x?dial-timeout=-1s", "dial-timeout"},
		{"zookeeper://h:1/x?dial-timeout=1s&dial-timeout=2s", "URL query parameter"},
		{"zookeeper://u@h:1/x", "URL user info"},
		{"zookeeper://h:1/x#frag", "URL fragment"},
	} {
		r, err := registry.Open(ctx, tc.url)
		if err == nil {
			r.Close()
			t.Errorf("Open(%q): no error", tc.url)
			continue
		}
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Open(%q) = %v; want an InputError naming %q", tc.url, err, tc.field)
		}
	}

	// A closed port: Open returns at once, calls fail at once (see
	// registrytest.CheckRefused).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	registrytest.CheckRefused(t, "zookeeper://"+addr+"/x?dial-timeout=1s", addr)

	// A server that answers HTTP or TLS, not ZooKeeper's protocol.
	for _, answer := range []string{"HTTP/1.1 400 Bad Request\r\n\r\n", "\x15\x03\x01\x00\x02\x02\x46"} {
		other, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		go func() {
			for {
				c, err := other.Accept()
				if err != nil {
					return
				}
				c.Read(make([]byte, 512))
				c.Write([]byte(answer))
				c.Close()
			}
		}()
		r, err := registry.Open(ctx, "zookeeper://"+other.Addr().String()+"/x?dial-timeout=2s")
		if err == nil {
			r.Close()
			t.Fatalf("Open of a server that answers %q: no error", answer)
		}
		if !strings.Contains(err.Error(), other.Addr().String()) || !strings.Contains(err.Error(), "does not speak ZooKeeper's protocol") {
			t.Errorf("Open of a server that answers %q: %v; want an error naming the address and the protocol", answer, err)
		}
		t.Logf("a server that answers %q: %v", answer, err)
	}

	// A server that accepts and never answers, bounded by the context.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	before := runtime.NumGoroutine()
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	r, err := registry.Open(cctx, "zookeeper://"+silent.Addr().String()+"/x?dial-timeout=30s")
	cancel()
	if err == nil {
		r.Close()
		t.Fatal("Open of a silent server: no error")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Open of a silent server with a 500ms context took %v", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), silent.Addr().String()) {
		t.Errorf("Open of a silent server: %v; want a deadline error naming the address", err)
	}
	t.Logf("silent server: %v", err)
	registrytest.Eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return errors.New("goroutines left behind by the failed Open")
		}
		return nil
	})

	// A context that is already done.
	cctx, cancel = context.WithCancel(ctx)
	cancel()
	if _, err := registry.Open(cctx, "zookeeper://"+addr+"/x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a canceled context: %v", err)
	}
}

// TestConfigErrors: New rejects bad configurations with InputErrors naming
// the field.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		c     Config
		field string
	}{
		{"no servers", Config{}, "servers"},
		{"empty server", Config{Servers: []string{""}}, "server address"},
		{"bad port", Config{Servers: []string{"h:x"}}, "server address"},
		{"bad IPv6", Config{Servers: []string{"::1:2181"}}, "server address"},
		{"relative base", Config{Servers: []string{"h:1"}, BasePath: "storks"}, "base path"},
		{"control char", Config{Servers: []string{"h:1"}, BasePath: "/a\x01"}, "base path"},
		{"negative session timeout", Config{Servers: []string{"h:1"}, SessionTimeout: -time.Second}, "session timeout"},
		{"negative dial timeout", Config{Servers: []string{"h:1"}, DialTimeout: -time.Second}, "dial timeout"},
	} {
		_, err := New(context.Background(), tc.c)
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: New = %v; want an InputError naming %q", tc.name, err, tc.field)
		}
	}
	c, err := Config{Servers: []string{"h", "[::1]:2182", "h:2181"}, BasePath: "/a/b/"}.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Servers, ","); got != "h:2181,[::1]:2182" {
		t.Errorf("servers = %q", got)
	}
	if c.BasePath != "/a/b" || c.SessionTimeout != DefaultSessionTimeout || c.DialTimeout != DefaultDialTimeout {
		t.Errorf("normalized config = %+v", c)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"helloworld.Greeter":   "helloworld.Greeter",
		"blue/svc:1.0":         "blue%2Fsvc:1.0",
		"10.0.0.1:8080":        "10.0.0.1:8080",
		"/x y%":                "%2Fx%20y%25",
		".":                    "%2E",
		"..":                   "%2E%2E",
		"...":                  "...",
		"ü":                    "%C3%BC",
		"a.b-c_d~e@f":          "a.b-c_d~e@f",
		"query?a=b&c=d#frag\n": "query%3Fa%3Db%26c%3Dd%23frag%0A",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseKeyName(t *testing.T) {
	for _, k := range []registry.ServiceKey{
		{Service: "a.B"},
		{Service: "a.B", Version: "1.0"},
		{Service: "a.B", Group: "blue"},
		{Service: "a.B", Version: "1.0", Group: "blue"},
		{Service: "ü.x", Version: "v%1", Group: "g@1"},
	} {
		got, ok := parseKeyName(escape(k.String()))
		if !ok || got != k {
			t.Errorf("parseKeyName(escape(%v)) = %v, %v", k, got, ok)
		}
	}
	for _, bad := range []string{"", "%", "%zz", "a%2", "g%2Fs%2Fx", "%2Fsvc", "svc:", "a%20b"} {
		if k, ok := parseKeyName(bad); ok {
			t.Errorf("parseKeyName(%q) = %v, true; want false", bad, k)
		}
	}
}

// TestCloseStopsGoroutines: Close stops every goroutine the registry and
// its client started.
func TestCloseStopsGoroutines(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	before := runtime.NumGoroutine()
	for range 3 {
		r := openTest(t, srv, base, nil)
		key := registrytest.UniqueKey(t)
		mustRegister(t, r, inst(key, "a", 1), inst(key, "b", 2))
		w, err := r.Watch(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a", "b"))
		if _, err := r.Discover(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		// Rule watches, never stopped, one of a rule that exists.
		if err := r.PutRule(context.Background(), key, []byte("doc")); err != nil {
			t.Fatal(err)
		}
		var rws []registry.RuleWatcher
		for _, k := range []registry.ServiceKey{key, registrytest.UniqueKey(t)} {
			rw, err := r.WatchRule(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rw.Next(context.Background()); err != nil {
				t.Fatal(err)
			}
			rws = append(rws, rw)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Next(context.Background()); !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Next after Close: %v", err)
		}
		for _, rw := range rws {
			if _, err := rw.Next(context.Background()); !errors.Is(err, registry.ErrClosed) {
				t.Errorf("rule watch Next after Close: %v", err)
			}
		}
		if err := r.Close(); !errors.Is(err, registry.ErrClosed) {
			t.Errorf("second Close: %v", err)
		}
	}
	var after int
	registrytest.Eventually(t, 5*time.Second, func() error {
		if after = runtime.NumGoroutine(); after > before {
			return errors.New("goroutines are left behind")
		}
		return nil
	})
	t.Logf("goroutines: %d before, %d after", before, after)
}
