package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// The rule subtests: they run when the registry under test implements
// [registry.RuleStore] (and fail at once when Harness.Rules says it must
// but it does not).

var ruleTests = []struct {
	name string
	f    func(*suite, *testing.T)
}{
	{"RuleGetMissing", (*suite).testRuleGetMissing},
	{"RulePutGetReplaceDelete", (*suite).testRulePutGetReplaceDelete},
	{"RulesList", (*suite).testRulesList},
	{"RuleWatch", (*suite).testRuleWatch},
	{"RuleWatchFirstCurrent", (*suite).testRuleWatchFirstCurrent},
	{"RuleTwoWatchers", (*suite).testRuleTwoWatchers},
	{"RuleWatchEnd", (*suite).testRuleWatchEnd},
	{"RuleClose", (*suite).testRuleClose},
	{"RuleInvalidInput", (*suite).testRuleInvalidInput},
	{"RuleRevisions", (*suite).testRuleRevisions},
	{"RuleRevisionsRace", (*suite).testRuleRevisionsRace},
	{"RulesApartFromInstances", (*suite).testRulesApartFromInstances},
	{"ConsumerRecord", (*suite).testConsumerRecord},
}

// ruleStore opens a client and returns it as a RuleStore, skipping the
// test if the registry has none.
func (s *suite) ruleStore(t *testing.T) (registry.Registry, registry.RuleStore) {
	t.Helper()
	r := s.open(t)
	rs, ok := r.(registry.RuleStore)
	if !ok {
		if s.h.Rules {
			t.Fatalf("%T does not implement registry.RuleStore; Harness.Rules says it must", r)
		}
		t.Skipf("%T does not implement registry.RuleStore", r)
	}
	return r, rs
}

// cleanupRule deletes the rule of key when t ends, with a client of its
// own, so that runs against a long-lived server leave nothing behind.
func (s *suite) cleanupRule(t *testing.T, keys ...registry.ServiceKey) {
	t.Cleanup(func() {
		r := s.h.Open(t)
		defer r.Close()
		rs, ok := r.(registry.RuleStore)
		if !ok {
			return
		}
		for _, k := range keys {
			ctx, cancel := s.opCtx()
			_ = rs.DeleteRule(ctx, k)
			cancel()
		}
	})
}

// ruleRevisions opens a client and returns it as a RuleStore with
// revisions, skipping the test if the registry has none.
func (s *suite) ruleRevisions(t *testing.T) registry.RuleRevisions {
	t.Helper()
	r, _ := s.ruleStore(t)
	rr, ok := r.(registry.RuleRevisions)
	if !ok {
		if s.h.Rules {
			t.Fatalf("%T does not implement registry.RuleRevisions; Harness.Rules says it must", r)
		}
		t.Skipf("%T does not implement registry.RuleRevisions", r)
	}
	return rr
}

func (s *suite) putRule(t *testing.T, rs registry.RuleStore, key registry.ServiceKey, doc string) {
	t.Helper()
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := rs.PutRule(ctx, key, []byte(doc)); err != nil {
		t.Fatalf("PutRule(%v, %q): %v", key, doc, err)
	}
}

func (s *suite) deleteRule(t *testing.T, rs registry.RuleStore, key registry.ServiceKey) {
	t.Helper()
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := rs.DeleteRule(ctx, key); err != nil {
		t.Fatalf("DeleteRule(%v): %v", key, err)
	}
}

// waitRule polls GetRule until it returns want (nil: ErrNoRule).
func (s *suite) waitRule(t *testing.T, rs registry.RuleStore, key registry.ServiceKey, want []byte) {
	t.Helper()
	Eventually(t, s.h.Settle, func() error {
		ctx, cancel := s.opCtx()
		defer cancel()
		doc, err := rs.GetRule(ctx, key)
		switch {
		case want == nil && errors.Is(err, registry.ErrNoRule):
			return nil
		case want == nil && err == nil:
			return fmt.Errorf("GetRule(%v) = %q, want ErrNoRule", key, doc)
		case err != nil:
			if want == nil {
				return fmt.Errorf("GetRule(%v): %v, want ErrNoRule", key, err)
			}
			return fmt.Errorf("GetRule(%v): %v, want %q", key, err, want)
		case !bytes.Equal(doc, want):
			return fmt.Errorf("GetRule(%v) = %q, want %q", key, doc, want)
		}
		return nil
	})
}

// nextRule calls Next until it returns want (nil: no document), failing
// the test on an error or after Settle.
func (s *suite) nextRule(t *testing.T, w registry.RuleWatcher, want []byte) {
	t.Helper()
	ctx, cancel := s.opCtx()
	defer cancel()
	var got [][]byte
	for {
		doc, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("RuleWatcher.Next: %v, waiting for %s after %s", err, quoteDoc(want), quoteDocs(got))
		}
		got = append(got, doc)
		if (doc == nil) == (want == nil) && bytes.Equal(doc, want) {
			return
		}
	}
}

func quoteDoc(doc []byte) string {
	if doc == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", doc)
}

func quoteDocs(docs [][]byte) string {
	s := make([]string, len(docs))
	for i, d := range docs {
		s[i] = quoteDoc(d)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func (s *suite) watchRule(t *testing.T, rs registry.RuleStore, key registry.ServiceKey) registry.RuleWatcher {
	t.Helper()
	w, err := rs.WatchRule(context.Background(), key)
	if err != nil {
		t.Fatalf("WatchRule(%v): %v", key, err)
	}
	t.Cleanup(w.Stop)
	return w
}

// firstRule checks the first Next: the current document at once.
func (s *suite) firstRule(t *testing.T, w registry.RuleWatcher, want []byte) {
	t.Helper()
	ctx, cancel := s.opCtx()
	defer cancel()
	doc, err := w.Next(ctx)
	if err != nil || (doc == nil) != (want == nil) || !bytes.Equal(doc, want) {
		t.Fatalf("first RuleWatcher.Next = %s, %v; want %s", quoteDoc(doc), err, quoteDoc(want))
	}
}

func (s *suite) testRuleGetMissing(t *testing.T) {
	_, rs := s.ruleStore(t)
	key := UniqueKey(t)
	ctx, cancel := s.opCtx()
	defer cancel()
	doc, err := rs.GetRule(ctx, key)
	if !errors.Is(err, registry.ErrNoRule) {
		t.Fatalf("GetRule of a key without rule = %q, %v; want ErrNoRule", doc, err)
	}
	if err := rs.DeleteRule(ctx, key); err != nil {
		t.Fatalf("DeleteRule of a key without rule: %v; want nil", err)
	}
}

func (s *suite) testRulePutGetReplaceDelete(t *testing.T) {
	_, op := s.ruleStore(t)
	_, cons := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	s.putRule(t, op, key, "first")
	s.waitRule(t, op, key, []byte("first"))
	s.waitRule(t, cons, key, []byte("first"))

	// The caller's slice is not kept, and the returned one is a copy.
	doc := []byte("second")
	ctx, cancel := s.opCtx()
	err := op.PutRule(ctx, key, doc)
	cancel()
	if err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	copy(doc, "XXXXXX")
	s.waitRule(t, cons, key, []byte("second"))
	ctx, cancel = s.opCtx()
	got, err := cons.GetRule(ctx, key)
	cancel()
	if err == nil && len(got) > 0 {
		got[0] = 'Z'
	}
	s.waitRule(t, cons, key, []byte("second"))

	// Binary content and the largest document round-trip.
	big := bytes.Repeat([]byte{0, 1, 0xff, '\n'}, registry.MaxRuleSize/4)
	ctx, cancel = s.opCtx()
	err = op.PutRule(ctx, key, big)
	cancel()
	if err != nil {
		t.Fatalf("PutRule of %d bytes: %v", len(big), err)
	}
	s.waitRule(t, cons, key, big)

	s.deleteRule(t, op, key)
	s.waitRule(t, op, key, nil)
	s.waitRule(t, cons, key, nil)
	s.deleteRule(t, op, key) // deleting a missing rule is no error
}

func (s *suite) testRulesList(t *testing.T) {
	_, rs := s.ruleStore(t)
	base := UniqueKey(t)
	other := UniqueKey(t)
	keys := []registry.ServiceKey{
		{Service: base.Service, Version: "1.0.0", Group: "blue"},
		{Service: base.Service, Group: "blue"},
		{Service: base.Service, Version: "1.0.0"},
		base,
		{Service: other.Service, Version: "2"},
		registry.ConsumerKey(base),
	}
	s.cleanupRule(t, keys...)
	for i, k := range keys {
		s.putRule(t, rs, k, fmt.Sprintf("doc %d", i))
	}
	// Each key has its own document: version and group are part of it.
	for i, k := range keys {
		s.waitRule(t, rs, k, []byte(fmt.Sprintf("doc %d", i)))
	}
	want := slices.Clone(keys)
	registry.SortKeys(want)
	mine := func(got []registry.ServiceKey) []registry.ServiceKey {
		var out []registry.ServiceKey
		for _, k := range got {
			p := k.ProviderKey()
			if p.Service == base.Service || p.Service == other.Service {
				out = append(out, k)
			}
		}
		return out
	}
	Eventually(t, s.h.Settle, func() error {
		ctx, cancel := s.opCtx()
		defer cancel()
		got, err := rs.Rules(ctx)
		if err != nil {
			return fmt.Errorf("calling Rules: %v", err)
		}
		if !slices.IsSortedFunc(got, compareKeys) {
			t.Fatalf("Rules returned keys that are not sorted: %v", got)
		}
		if m := mine(got); !slices.Equal(m, want) {
			return fmt.Errorf("the keys of this test that Rules lists are %v, want %v", m, want)
		}
		return nil
	})

	// Deleting one leaves the others.
	s.deleteRule(t, rs, keys[0])
	s.waitRule(t, rs, keys[0], nil)
	for i, k := range keys[1:] {
		s.waitRule(t, rs, k, []byte(fmt.Sprintf("doc %d", i+1)))
	}
	want = slices.DeleteFunc(want, func(k registry.ServiceKey) bool { return k == keys[0] })
	Eventually(t, s.h.Settle, func() error {
		ctx, cancel := s.opCtx()
		defer cancel()
		got, err := rs.Rules(ctx)
		if err != nil {
			return fmt.Errorf("calling Rules: %v", err)
		}
		if m := mine(got); !slices.Equal(m, want) {
			return fmt.Errorf("after a delete, the keys of this test that Rules lists = %v, want %v", m, want)
		}
		return nil
	})
}

func compareKeys(a, b registry.ServiceKey) int {
	l := []registry.ServiceKey{b, a}
	registry.SortKeys(l)
	if l[0] == l[1] {
		return 0
	}
	if l[0] == a {
		return -1
	}
	return 1
}

func (s *suite) testRuleWatch(t *testing.T) {
	_, op := s.ruleStore(t)
	_, cons := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	// A rule of another version must not show up.
	otherVersion := registry.ServiceKey{Service: key.Service, Version: "other"}
	s.cleanupRule(t, otherVersion)

	w := s.watchRule(t, cons, key)
	s.firstRule(t, w, nil)
	s.putRule(t, op, otherVersion, "other version")
	s.putRule(t, op, key, "v1")
	s.nextRule(t, w, []byte("v1"))
	s.putRule(t, op, key, "v2")
	s.nextRule(t, w, []byte("v2"))
	s.deleteRule(t, op, key)
	s.nextRule(t, w, nil)
	s.putRule(t, op, key, "v3")
	s.nextRule(t, w, []byte("v3"))

	// Nothing more comes: the other version's rule does not.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if doc, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next without a change = %s, %v; want to wait", quoteDoc(doc), err)
	}
}

func (s *suite) testRuleWatchFirstCurrent(t *testing.T) {
	_, op := s.ruleStore(t)
	_, cons := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	s.putRule(t, op, key, "current")
	s.waitRule(t, cons, key, []byte("current"))
	w := s.watchRule(t, cons, key)
	s.firstRule(t, w, []byte("current"))
	s.deleteRule(t, op, key)
	s.nextRule(t, w, nil)
}

func (s *suite) testRuleTwoWatchers(t *testing.T) {
	_, op := s.ruleStore(t)
	_, cons := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	w1 := s.watchRule(t, cons, key)
	w2 := s.watchRule(t, op, key)
	s.firstRule(t, w1, nil)
	s.firstRule(t, w2, nil)
	s.putRule(t, op, key, "both")
	s.nextRule(t, w1, []byte("both"))
	s.nextRule(t, w2, []byte("both"))
	// Stopping one leaves the other.
	w1.Stop()
	s.putRule(t, op, key, "one")
	s.nextRule(t, w2, []byte("one"))
	ctx, cancel := s.opCtx()
	defer cancel()
	if _, err := w1.Next(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Next after Stop: %v, want ErrClosed", err)
	}
}

func (s *suite) testRuleWatchEnd(t *testing.T) {
	_, rs := s.ruleStore(t)
	key := UniqueKey(t)

	// Stop.
	w := s.watchRule(t, rs, key)
	s.firstRule(t, w, nil)
	w.Stop()
	w.Stop() // twice is fine
	ctx, cancel := s.opCtx()
	defer cancel()
	if doc, err := w.Next(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Next after Stop = %s, %v; want ErrClosed", quoteDoc(doc), err)
	}

	// Stop while Next waits.
	w = s.watchRule(t, rs, key)
	s.firstRule(t, w, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	w.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Next when Stop was called: %v, want ErrClosed", err)
		}
	case <-time.After(s.h.Settle):
		t.Fatalf("Next did not return within %v of Stop", s.h.Settle)
	}

	// The context of Next.
	w = s.watchRule(t, rs, key)
	s.firstRule(t, w, nil)
	nctx, ncancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := w.Next(nctx)
	ncancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with a context that expires: %v, want context.DeadlineExceeded", err)
	}
	var nilCtx context.Context
	if _, err := w.Next(nilCtx); err == nil {
		t.Errorf("Next with a nil context: no error")
	}

	// The context of WatchRule.
	wctx, wcancel := context.WithCancel(context.Background())
	w2, err := rs.WatchRule(wctx, key)
	if err != nil {
		wcancel()
		t.Fatalf("WatchRule: %v", err)
	}
	defer w2.Stop()
	s.firstRule(t, w2, nil)
	wcancel()
	if _, err := w2.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after the WatchRule context was canceled: %v, want context.Canceled", err)
	}
	// A WatchRule context that is done already.
	if w3, err := rs.WatchRule(wctx, key); err == nil {
		if _, err := w3.Next(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("WatchRule with a canceled context, Next: %v, want context.Canceled", err)
		}
		w3.Stop()
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("WatchRule with a canceled context: %v, want context.Canceled", err)
	}
}

func (s *suite) testRuleClose(t *testing.T) {
	r, rs := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	s.putRule(t, rs, key, "doc")
	w := s.watchRule(t, rs, key)
	s.firstRule(t, w, []byte("doc"))
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := s.opCtx()
		defer cancel()
		_, err := w.Next(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Next when the registry was closed: %v, want ErrClosed", err)
		}
	case <-time.After(s.h.Settle):
		t.Fatalf("Next did not return within %v of Close", s.h.Settle)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if _, err := rs.GetRule(ctx, key); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("GetRule after Close: %v, want ErrClosed", err)
	}
	if err := rs.PutRule(ctx, key, []byte("x")); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("PutRule after Close: %v, want ErrClosed", err)
	}
	if err := rs.DeleteRule(ctx, key); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("DeleteRule after Close: %v, want ErrClosed", err)
	}
	if _, err := rs.Rules(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Rules after Close: %v, want ErrClosed", err)
	}
	if w, err := rs.WatchRule(ctx, key); !errors.Is(err, registry.ErrClosed) {
		if w != nil {
			w.Stop()
		}
		t.Errorf("WatchRule after Close: %v, want ErrClosed", err)
	}
	// The rule is still there for the other clients.
	_, other := s.ruleStore(t)
	s.waitRule(t, other, key, []byte("doc"))
}

func (s *suite) testRuleInvalidInput(t *testing.T) {
	_, rs := s.ruleStore(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	ctx, cancel := s.opCtx()
	defer cancel()
	checkInputError(t, "PutRule with a nil document", rs.PutRule(ctx, key, nil), "rule")
	checkInputError(t, "PutRule with an empty document", rs.PutRule(ctx, key, []byte{}), "rule")
	checkInputError(t, "PutRule with a document over MaxRuleSize",
		rs.PutRule(ctx, key, make([]byte, registry.MaxRuleSize+1)), "rule")
	for _, tc := range badKeys(key) {
		_, err := rs.GetRule(ctx, tc.key)
		checkInputError(t, "GetRule with "+tc.name, err, tc.field)
		checkInputError(t, "PutRule with "+tc.name, rs.PutRule(ctx, tc.key, []byte("doc")), tc.field)
		checkInputError(t, "DeleteRule with "+tc.name, rs.DeleteRule(ctx, tc.key), tc.field)
		w, err := rs.WatchRule(ctx, tc.key)
		if w != nil {
			w.Stop()
		}
		checkInputError(t, "WatchRule with "+tc.name, err, tc.field)
	}
	var nilCtx context.Context
	call := func(method string, f func() error) {
		t.Helper()
		checkInputError(t, method+" with a nil context", noPanic(t, method+" with a nil context", f), "context")
	}
	call("GetRule", func() error { _, err := rs.GetRule(nilCtx, key); return err })
	call("PutRule", func() error { return rs.PutRule(nilCtx, key, []byte("doc")) })
	call("DeleteRule", func() error { return rs.DeleteRule(nilCtx, key) })
	call("Rules", func() error { _, err := rs.Rules(nilCtx); return err })
	call("WatchRule", func() error {
		w, err := rs.WatchRule(nilCtx, key)
		if w != nil {
			w.Stop()
		}
		return err
	})
	if rr, ok := rs.(registry.RuleRevisions); ok {
		call("GetRuleRevision", func() error { _, _, err := rr.GetRuleRevision(nilCtx, key); return err })
		call("PutRuleIf", func() error { return rr.PutRuleIf(nilCtx, key, []byte("doc"), 0) })
		call("DeleteRuleIf", func() error { return rr.DeleteRuleIf(nilCtx, key, 0) })
	}
	// Nothing was stored.
	if doc, err := rs.GetRule(ctx, key); !errors.Is(err, registry.ErrNoRule) {
		t.Errorf("after invalid calls: GetRule = %q, %v; want ErrNoRule", doc, err)
	}
}

// testRulesApartFromInstances checks that rules and instances are kept
// apart: a rule is no instance (Discover, Services), an instance is no rule
// (Rules), and a rule survives the deregistration of every instance of its
// key, and their registration again.
func (s *suite) testRulesApartFromInstances(t *testing.T) {
	prov, rs := s.ruleStore(t)
	cons, crs := s.ruleStore(t)
	key := UniqueKey(t)
	onlyInstances := UniqueKey(t)
	s.cleanupRule(t, key, onlyInstances)
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	c := inst(onlyInstances, "c", 3)
	s.register(t, prov, a, b, c)
	s.putRule(t, rs, key, "kept")
	w := s.watchRule(t, crs, key)
	s.firstRule(t, w, []byte("kept"))
	s.waitDiscover(t, cons, key, a, b)

	s.deregister(t, prov, a, b)
	s.waitDiscover(t, cons, key)
	s.waitRule(t, crs, key, []byte("kept"))
	if l, ok := cons.(registry.Lister); ok {
		Eventually(t, s.h.Settle, func() error {
			ctx, cancel := s.opCtx()
			defer cancel()
			keys, err := l.Services(ctx)
			if err != nil {
				return err
			}
			if slices.Contains(keys, key) {
				return fmt.Errorf("the keys of Services include %v, which has a rule but no instance", key)
			}
			if !slices.Contains(keys, onlyInstances) {
				return fmt.Errorf("the keys of Services lack %v", onlyInstances)
			}
			return nil
		})
	}
	ctx, cancel := s.opCtx()
	keys, err := crs.Rules(ctx)
	cancel()
	if err != nil {
		t.Fatalf("Rules: %v", err)
	}
	if !slices.Contains(keys, key) || slices.Contains(keys, onlyInstances) {
		t.Errorf("Rules = %v; want %v listed and %v (instances, no rule) not", keys, key, onlyInstances)
	}

	s.register(t, prov, a)
	s.waitDiscover(t, cons, key, a)
	s.waitRule(t, crs, key, []byte("kept"))

	// The watch saw no change of the rule through all this.
	nctx, ncancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer ncancel()
	if doc, err := w.Next(nctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the rule watch delivered %s, %v while only instances changed; want nothing", quoteDoc(doc), err)
	}
	s.deregister(t, prov, a, c)
}

// testConsumerRecord checks that a consumer record (an instance of a
// consumer key, whose port may be 0) is registered, listed and
// deregistered like any instance.
func (s *suite) testConsumerRecord(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	key.Version, key.Group = "1.0.0", "blue"
	ck := registry.ConsumerKey(key)
	rec := registry.Instance{
		Key:  ck,
		ID:   "consumer-1",
		Addr: "127.0.0.1:0",
		Metadata: map[string]string{
			registry.MetadataApplication: "billing",
			registry.MetadataPID:         "4242",
			registry.MetadataHostname:    "host-1",
		},
	}
	provider := inst(key, "p", 1)
	s.register(t, prov, rec, provider)
	s.waitDiscover(t, cons, ck, rec)
	s.waitDiscover(t, cons, key, provider) // a consumer is no provider
	w := s.watch(t, cons, ck)
	w.until(t, false, rec)
	if l, ok := cons.(registry.Lister); ok {
		Eventually(t, s.h.Settle, func() error {
			ctx, cancel := s.opCtx()
			defer cancel()
			keys, err := l.Services(ctx)
			if err != nil {
				return err
			}
			if !slices.Contains(keys, ck) || !slices.Contains(keys, key) {
				return fmt.Errorf("the keys of Services are %v; want both %v and %v", keys, ck, key)
			}
			return nil
		})
	}
	// Port 0 is only for consumer keys.
	bad := rec
	bad.Key = key
	ctx, cancel := s.opCtx()
	err := prov.Register(ctx, bad)
	cancel()
	checkInputError(t, "Register of a provider with port 0", err, "address")

	s.deregister(t, prov, rec)
	s.waitDiscover(t, cons, ck)
	w.until(t, false)
	s.waitDiscover(t, cons, key, provider)
}

// RunRuleOutage checks what a rule watch does while the server is down,
// with a real server that it stops and starts again (o.Stop, o.Start; the
// server must be running when it is called): the watch keeps its document
// (Next reports no deletion: it waits, or returns an error) while the
// server is down, and once the server is back it delivers a document
// written then. Only the fields of o that RunStartWhileDown uses are used,
// and the registry o.Open returns must implement registry.RuleStore.
func RunRuleOutage(t *testing.T, o Outage) {
	t.Helper()
	if o.Open == nil || o.Stop == nil || o.Start == nil {
		t.Fatal("registrytest: Outage needs Open, Stop and Start")
	}
	settle := o.Settle
	if settle <= 0 {
		settle = DefaultSettle
	}
	var logs LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r, err := o.Open(ctx, logs.Logger())
	cancel()
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	rs, ok := r.(registry.RuleStore)
	if !ok {
		t.Fatalf("%T does not implement registry.RuleStore", r)
	}
	key := UniqueKey(t)
	ctx, cancel = context.WithTimeout(context.Background(), settle)
	err = rs.PutRule(ctx, key, []byte("before"))
	cancel()
	if err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	w, err := rs.WatchRule(context.Background(), key)
	if err != nil {
		t.Fatalf("WatchRule: %v", err)
	}
	t.Cleanup(w.Stop)
	ctx, cancel = context.WithTimeout(context.Background(), settle)
	doc, err := w.Next(ctx)
	cancel()
	if err != nil || string(doc) != "before" {
		t.Fatalf("first Next = %s, %v; want \"before\"", quoteDoc(doc), err)
	}

	o.Stop(t)
	down := time.Now()
	errs := 0
	for time.Since(down) < 3*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		doc, err := w.Next(ctx)
		cancel()
		switch {
		case err == nil:
			t.Fatalf("Next while the server is down = %s; want it to wait (or fail)", quoteDoc(doc))
		case errors.Is(err, registry.ErrClosed):
			t.Fatalf("Next while the server is down: %v; the watch ended", err)
		case !errors.Is(err, context.DeadlineExceeded):
			errs++
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("while the server was down, Next waited (and returned %d errors other than its deadline)", errs)

	o.Start(t)
	up := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), settle)
		err = rs.PutRule(ctx, key, []byte("after"))
		cancel()
		if err == nil {
			break
		}
		if time.Since(up) > settle {
			t.Fatalf("PutRule did not work within %v of the server's start: %v", settle, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel = context.WithTimeout(context.Background(), settle)
	defer cancel()
	for {
		doc, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("Next after the server's start: %v; want \"after\"\nlog:\n%s", err, logs.String())
		}
		if string(doc) == "after" {
			break
		}
		// A server that lost its data (an in-memory one) may report the
		// rule as missing once it is back; that is not an outage.
	}
	t.Logf("the rule watch delivered the document written after the restart %v after the server's start", time.Since(up).Round(time.Millisecond))
	ctx2, cancel2 := context.WithTimeout(context.Background(), settle)
	defer cancel2()
	_ = rs.DeleteRule(ctx2, key)
}

// testRuleRevisions: conditional writes succeed at the current revision
// and fail with ErrRuleChanged at any other, for puts and deletes, with
// and without a document, across two clients; their writes reach watchers
// like unconditional ones.
func (s *suite) testRuleRevisions(t *testing.T) {
	a, b := s.ruleRevisions(t), s.ruleRevisions(t)
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Duration(max(s.h.Settle, time.Second)))
	defer cancel()
	w := s.watchRule(t, b.(registry.RuleStore), key)
	s.firstRule(t, w, nil)

	changed := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, registry.ErrRuleChanged) {
			t.Fatalf("%s: %v; want ErrRuleChanged", what, err)
		}
	}
	get := func(rr registry.RuleRevisions, want string) int64 {
		t.Helper()
		doc, rev, err := rr.GetRuleRevision(ctx, key)
		if want == "" {
			if !errors.Is(err, registry.ErrNoRule) || rev != 0 || doc != nil {
				t.Fatalf("GetRuleRevision of a key without rule = %q, %d, %v; want nil, 0, ErrNoRule", doc, rev, err)
			}
			return 0
		}
		if err != nil || string(doc) != want || rev == 0 {
			t.Fatalf("GetRuleRevision = %q, %d, %v; want %q at a revision other than 0", doc, rev, err, want)
		}
		return rev
	}

	get(a, "")
	if err := a.DeleteRuleIf(ctx, key, 0); err != nil {
		t.Fatalf("DeleteRuleIf(0) of a key without rule: %v; want nil", err)
	}
	changed("PutRuleIf(7) of a key without rule", a.PutRuleIf(ctx, key, []byte("never"), 7))
	if err := a.PutRuleIf(ctx, key, []byte("one"), 0); err != nil {
		t.Fatalf("PutRuleIf(0) of a key without rule: %v", err)
	}
	s.nextRule(t, w, []byte("one"))
	rev1 := get(b, "one")
	changed("PutRuleIf(0) of a key with a rule", b.PutRuleIf(ctx, key, []byte("never"), 0))
	changed("DeleteRuleIf(0) of a key with a rule", b.DeleteRuleIf(ctx, key, 0))

	// Two writers read the same revision: the first to write wins, the
	// second is told, whichever client it uses.
	if err := b.PutRuleIf(ctx, key, []byte("two"), rev1); err != nil {
		t.Fatalf("PutRuleIf at the current revision: %v", err)
	}
	s.nextRule(t, w, []byte("two"))
	changed("PutRuleIf at the revision before the last write", a.PutRuleIf(ctx, key, []byte("never"), rev1))
	changed("DeleteRuleIf at the revision before the last write", a.DeleteRuleIf(ctx, key, rev1))
	rev2 := get(a, "two")
	if rev2 == rev1 {
		t.Fatalf("the revision did not change with the document: %d", rev2)
	}

	// An unconditional write is a change too.
	if err := a.(registry.RuleStore).PutRule(ctx, key, []byte("three")); err != nil {
		t.Fatal(err)
	}
	s.nextRule(t, w, []byte("three"))
	changed("PutRuleIf after an unconditional write", b.PutRuleIf(ctx, key, []byte("never"), rev2))
	rev3 := get(b, "three")
	if err := b.DeleteRuleIf(ctx, key, rev3); err != nil {
		t.Fatalf("DeleteRuleIf at the current revision: %v", err)
	}
	s.nextRule(t, w, nil)
	get(a, "")
	if err := a.DeleteRuleIf(ctx, key, rev3); err != nil {
		t.Fatalf("DeleteRuleIf of a deleted rule at its last revision: %v; want nil (nothing to delete)", err)
	}
	changed("PutRuleIf of a deleted rule at its last revision", a.PutRuleIf(ctx, key, []byte("never"), rev3))

	// Bad input is refused as by the unconditional writes.
	var ie *registry.InputError
	if err := a.PutRuleIf(ctx, key, nil, 0); !errors.As(err, &ie) {
		t.Fatalf("PutRuleIf of an empty document: %v; want an *InputError", err)
	}
	if err := a.PutRuleIf(ctx, registry.ServiceKey{}, []byte("x"), 0); !errors.As(err, &ie) {
		t.Fatalf("PutRuleIf of an empty key: %v; want an *InputError", err)
	}
	get(b, "")
}

// testRuleRevisionsRace: writers on their own clients each append a line
// to one document with read-modify-conditional-write loops, all at once;
// every line is in the end, none lost to a concurrent write.
func (s *suite) testRuleRevisionsRace(t *testing.T) {
	const writers = 6
	key := UniqueKey(t)
	s.cleanupRule(t, key)
	stores := make([]registry.RuleRevisions, writers)
	for i := range stores {
		stores[i] = s.ruleRevisions(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := make(chan struct{})
	errs := make(chan error, writers)
	conflicts := make(chan int, writers)
	for i, rr := range stores {
		go func() {
			<-start
			line := fmt.Sprintf("writer %d\n", i)
			for n := 0; ; n++ {
				doc, rev, err := rr.GetRuleRevision(ctx, key)
				if err != nil && !errors.Is(err, registry.ErrNoRule) {
					errs <- err
					return
				}
				err = rr.PutRuleIf(ctx, key, append(doc, line...), rev)
				if errors.Is(err, registry.ErrRuleChanged) {
					continue
				}
				conflicts <- n
				errs <- err
				return
			}
		}()
	}
	close(start)
	lost := 0
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		lost += <-conflicts
	}
	doc, _, err := stores[0].GetRuleRevision(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writers {
		if !bytes.Contains(doc, []byte(fmt.Sprintf("writer %d\n", i))) {
			t.Errorf("the line of writer %d is lost: %q", i, doc)
		}
	}
	if n := bytes.Count(doc, []byte("\n")); n != writers {
		t.Errorf("the document has %d lines, want %d: %q", n, writers, doc)
	}
	t.Logf("%d writers, %d conditional writes refused and retried", writers, lost)
}
