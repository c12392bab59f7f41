package zookeeper

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// TestRuleWatchPartition cuts a consumer off the network for longer than
// its session timeout: its rule watch keeps its document while it is cut
// off (no nil), and in its new session it re-arms its watch, delivers the
// document as it is now and follows later changes; the consumer record it
// registered comes back, and the rule, persistent, is still there.
func TestRuleWatchPartition(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	const sessionTimeout = 2 * time.Second
	consNet := newFaultDialer()
	cons := openTest(t, srv, base, func(c *Config) { c.Dialer = consNet.dial; c.SessionTimeout = sessionTimeout })
	op := openTest(t, srv, base, nil)
	key := registrytest.UniqueKey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := op.PutRule(ctx, key, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	rec := registry.Instance{Key: registry.ConsumerKey(key), ID: "consumer", Addr: "127.0.0.1:0"}
	mustRegister(t, cons, rec)
	w, err := cons.WatchRule(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	next := func(d time.Duration) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return w.Next(ctx)
	}
	if doc, err := next(5 * time.Second); err != nil || string(doc) != "v1" {
		t.Fatalf("first Next = %q, %v", doc, err)
	}
	sid := cons.conn.SessionID()

	consNet.Cut()
	// The session expires: the consumer record goes.
	registrytest.WaitDiscover(t, op, rec.Key, sessionTimeout+3*time.Second, registrytest.HasIDs())
	if err := op.DeleteRule(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := op.PutRule(ctx, key, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if doc, err := next(sessionTimeout); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the cut-off watch delivered %q, %v; want nothing", doc, err)
	}

	consNet.Heal()
	if doc, err := next(15 * time.Second); err != nil || string(doc) != "v2" {
		t.Fatalf("Next after the partition = %q, %v; want v2", doc, err)
	}
	if cons.conn.SessionID() == sid {
		t.Fatalf("the session did not expire; the test did not test a new session")
	}
	registrytest.WaitDiscover(t, op, rec.Key, 15*time.Second, registrytest.HasIDs("consumer"))
	// The watch is armed in the new session.
	if err := op.PutRule(ctx, key, []byte("v3")); err != nil {
		t.Fatal(err)
	}
	if doc, err := next(5 * time.Second); err != nil || string(doc) != "v3" {
		t.Fatalf("Next after a change in the new session = %q, %v; want v3", doc, err)
	}
	if err := op.DeleteRule(ctx, key); err != nil {
		t.Fatal(err)
	}
	if doc, err := next(5 * time.Second); err != nil || doc != nil {
		t.Fatalf("Next after a delete = %q, %v; want nil", doc, err)
	}
}

// TestRuleLayout checks where the rule node is, that it is persistent, and
// that it is neither an instance nor a service of its own.
func TestRuleLayout(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	r := openTest(t, srv, base, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := registry.ServiceKey{Service: "a.B", Version: "1", Group: "g"}
	if err := r.PutRule(ctx, key, []byte("doc")); err != nil {
		t.Fatal(err)
	}
	path := base + "/g%2Fa.B:1/rule"
	if got := r.rulePath(key); got != path {
		t.Fatalf("rulePath = %q, want %q", got, path)
	}
	data, stat, err := r.conn.Get(path)
	if err != nil || string(data) != "doc" || stat.EphemeralOwner != 0 {
		t.Fatalf("Get(%s) = %q, %+v, %v; want a persistent node holding the document", path, data, stat, err)
	}
	if list, err := r.Discover(ctx, key); err != nil || len(list) != 0 {
		t.Errorf("Discover = %v, %v; want no instance", list, err)
	}
	if keys, err := r.Services(ctx); err != nil || len(keys) != 0 {
		t.Errorf("Services = %v, %v; want none", keys, err)
	}
	mustRegister(t, r, inst(key, "i", 1))
	if keys, err := r.Rules(ctx); err != nil || !slices.Equal(keys, []registry.ServiceKey{key}) {
		t.Errorf("Rules = %v, %v; want [%v]", keys, err, key)
	}
}
