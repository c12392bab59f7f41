package etcd

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

func TestRuleKeys(t *testing.T) {
	keys := []registry.ServiceKey{
		{Service: "a.B"},
		{Service: "a.B", Version: "1.0"},
		{Service: "a.B", Group: "blue"},
		{Service: "a.B", Version: "1.0", Group: "blue"},
		{Service: "a.B@consumers", Version: "v%2F", Group: "g?#"},
	}
	seen := map[string]bool{}
	for _, k := range keys {
		ek := ruleKey("/storks", k)
		if seen[ek] {
			t.Errorf("two keys share the rule key %q", ek)
		}
		seen[ek] = true
		got, ok := parseRuleKey("/storks", ek)
		if !ok || got != k {
			t.Errorf("parseRuleKey(%q) = %v, %v; want %v", ek, got, ok, k)
		}
	}
	if got := ruleKey("/storks", keys[0]); got != "/storks/rules/a.B//" {
		t.Errorf("ruleKey(%v) = %q", keys[0], got)
	}
	for _, bad := range []string{"/storks/rules/a", "/storks/rules/a/b", "/storks/rules/a/b/c/d", "/storks/rules//b/c", "/storks/rules/a%2/b/c", "/storks/rules/a%2Eb//"} {
		if k, ok := parseRuleKey("/storks", bad); ok {
			t.Errorf("parseRuleKey(%q) = %v; want no key", bad, k)
		}
	}
}

// TestRulesBesideServiceCalledRules: the rule keys, under BasePath/rules/,
// are not taken for instances of a service called "rules", nor its
// instances for rules.
func TestRulesBesideServiceCalledRules(t *testing.T) {
	srv := testservers.StartEtcd(t)
	base := uniqueBase(t)
	r, logs := newTestRegistry(t, "r", srv.Endpoint(), base)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rules := registry.ServiceKey{Service: "rules"}
	in := inst(rules, "a", 1)
	mustRegister(t, r, in)
	for _, k := range []registry.ServiceKey{{Service: "x"}, {Service: "rules"}, {Service: "a"}} {
		if err := r.PutRule(ctx, k, []byte("doc")); err != nil {
			t.Fatal(err)
		}
	}
	w := mustWatch(t, r, rules)
	list, err := r.Discover(ctx, rules)
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Errorf("Discover(rules) = %v, %v; want instance a only", list, err)
	}
	if l, err := w.Next(ctx); err != nil || len(l) != 1 {
		t.Errorf("Watch(rules) first list = %v, %v; want instance a only", l, err)
	}
	if err := r.PutRule(ctx, registry.ServiceKey{Service: "y"}, []byte("doc")); err != nil {
		t.Fatal(err)
	}
	nctx, ncancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ncancel()
	if l, err := w.Next(nctx); err == nil {
		t.Errorf("Watch(rules) delivered %v after a rule was put", l)
	}
	keys, err := r.Rules(ctx)
	want := []registry.ServiceKey{{Service: "a"}, {Service: "rules"}, {Service: "x"}, {Service: "y"}}
	if err != nil || !slices.Equal(keys, want) {
		t.Errorf("Rules = %v, %v; want %v", keys, err, want)
	}
	svcs, err := r.Services(ctx)
	if err != nil || !slices.Equal(svcs, []registry.ServiceKey{rules}) {
		t.Errorf("Services = %v, %v; want [rules]", svcs, err)
	}
	if n := logs.warnings(); n != 0 {
		t.Errorf("%d warnings logged", n)
	}
}

// TestRuleWatchCompaction cuts a consumer off the server while the rule
// changes (deleted, then written again) and the history is compacted: the
// watch delivers nothing while cut off (no nil for the deletion it cannot
// see), then reads the key again and delivers the document as it is now,
// and follows later changes.
func TestRuleWatchCompaction(t *testing.T) {
	srv := testservers.StartEtcd(t)
	proxy := newFaultProxy(t, srv.Endpoint())
	base := uniqueBase(t)
	key := registrytest.UniqueKey(t)
	op, _ := newTestRegistry(t, "operator", srv.Endpoint(), base)
	cons, _ := newTestRegistry(t, "consumer", proxy.Addr(), base)
	mustPutRule(t, op, key, "v1")
	w := mustWatchRule(t, cons, key, []byte("v1"))
	before := w.(*ruleWatcher).loop.reads.Load()

	proxy.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := op.DeleteRule(ctx, key); err != nil {
		t.Fatal(err)
	}
	mustPutRule(t, op, key, "v2")
	mustPutRule(t, op, key, "v3")
	raw := srv.Client(t)
	resp, err := raw.Get(ctx, "compact-me")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if _, err := raw.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	nctx, ncancel := context.WithTimeout(ctx, time.Second)
	if doc, err := w.Next(nctx); err == nil {
		t.Fatalf("the cut-off watch delivered %q", doc)
	}
	ncancel()
	proxy.Restore()

	nextRule(t, w, "v3")
	deadline := time.Now().Add(5 * time.Second)
	for w.(*ruleWatcher).loop.reads.Load() <= before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if after := w.(*ruleWatcher).loop.reads.Load(); after <= before {
		t.Errorf("the watch did not read the key again after the compaction (rereads %d -> %d)", before, after)
	}
	mustPutRule(t, op, key, "v4")
	nextRule(t, w, "v4")
	if err := op.DeleteRule(ctx, key); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if doc, err := w.Next(ctx2); err != nil || doc != nil {
		t.Fatalf("Next after a delete = %q, %v; want nil", doc, err)
	}
}
