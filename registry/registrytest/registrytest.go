// Package registrytest is the conformance suite for [registry.Registry]
// implementations. Every adapter runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		endpoints := startServer(t) // or skip when no server is available
//		registrytest.Run(t, registrytest.Harness{
//			Open: func(t *testing.T) registry.Registry {
//				r, err := registry.Open(context.Background(), "etcd://"+endpoints)
//				if err != nil {
//					t.Fatal(err)
//				}
//				return r
//			},
//			Settle:   5 * time.Second,
//			Parallel: true,
//		})
//	}
//
// The suite is written for networked, eventually consistent backends: it
// never sleeps to let a change propagate but polls Discover and reads the
// watch until the expected list shows up or Harness.Settle has passed, it
// opens separate provider-side and consumer-side clients that can only see
// each other through the backend, and every subtest uses service names of its
// own (see [UniqueKey]), so one server can serve every subtest, in parallel,
// and many runs.
//
// Registries that implement [registry.RuleStore] also run the rule
// subtests (get, put, replace, delete, Rules, WatchRule, invalid input,
// rules kept apart from instances); Harness.Rules makes them required. A
// consumer-record subtest (an instance of registry.ConsumerKey with port 0)
// runs for every registry. [RunRuleOutage] checks a rule watch across a
// stop and a start of a real server.
//
// The helpers (Eventually, WaitFor, WaitDiscover, HasIDs, ...) are exported
// for the adapters' own tests.
package registrytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Harness describes the registry under test.
type Harness struct {
	// Open returns a new client of the registry under test: a new
	// connection for networked registries, a new handle for in-process ones.
	// All clients opened during one Run must share their registrations (talk
	// to the same server). The suite closes every client it opens, and calls
	// Open from the goroutine of the test it passes, so Open may call
	// t.Fatal. Required.
	Open func(t *testing.T) registry.Registry

	// Settle bounds how long a change made through one client may take to
	// show up in Discover and in watches of another client, and how long any
	// single call may take. Zero means DefaultSettle.
	Settle time.Duration

	// Parallel runs the subtests in parallel with each other (they only
	// share the server). They are then grouped under a subtest named
	// "parallel", so Run still returns only when all of them are done.
	Parallel bool

	// Rules says that the registry implements [registry.RuleStore] and
	// [registry.RuleRevisions], which the rule subtests then require. The rule subtests run whenever the
	// registry implements it; without Rules, they are skipped if it does
	// not.
	Rules bool
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("registrytest: Harness.Open is nil")
	}
	if h.Settle <= 0 {
		h.Settle = DefaultSettle
	}
	s := &suite{h: h}
	tests := []struct {
		name string
		f    func(*suite, *testing.T)
	}{
		{"RegisterDiscover", (*suite).testRegisterDiscover},
		{"DiscoverUnknownKey", (*suite).testDiscoverUnknownKey},
		{"SeveralInstances", (*suite).testSeveralInstances},
		{"ReRegisterReplaces", (*suite).testReRegisterReplaces},
		{"Deregister", (*suite).testDeregister},
		{"DeregisterUnknown", (*suite).testDeregisterUnknown},
		{"WatchFirstEmpty", (*suite).testWatchFirstEmpty},
		{"WatchFirstCurrent", (*suite).testWatchFirstCurrent},
		{"WatchChanges", (*suite).testWatchChanges},
		{"WatchBurst", (*suite).testWatchBurst},
		{"MultipleWatchers", (*suite).testMultipleWatchers},
		{"VersionGroupIsolation", (*suite).testIsolation},
		{"MetadataWeight", (*suite).testMetadataWeight},
		{"WeightZeroRegisteredAt", (*suite).testWeightZeroRegisteredAt},
		{"IDCharacters", (*suite).testIDCharacters},
		{"ReturnedCopies", (*suite).testReturnedCopies},
		{"InvalidInput", (*suite).testInvalidInput},
		{"NilContext", (*suite).testNilContext},
		{"WatchStop", (*suite).testWatchStop},
		{"NextContext", (*suite).testNextContext},
		{"WatchContext", (*suite).testWatchContext},
		{"Close", (*suite).testClose},
		{"Concurrent", (*suite).testConcurrent},
		{"Lister", (*suite).testLister},
	}
	tests = append(tests, ruleTests...)
	run := func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if h.Parallel {
					t.Parallel()
				}
				tc.f(s, t)
			})
		}
	}
	if h.Parallel {
		t.Run("parallel", run)
	} else {
		run(t)
	}
}

type suite struct{ h Harness }

// open opens a client that is closed when t ends.
func (s *suite) open(t *testing.T) registry.Registry {
	t.Helper()
	r := s.h.Open(t)
	if r == nil {
		t.Fatal("Harness.Open returned nil")
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// pair opens a provider-side and a consumer-side client.
func (s *suite) pair(t *testing.T) (prov, cons registry.Registry) {
	t.Helper()
	return s.open(t), s.open(t)
}

// opCtx bounds a single call.
func (s *suite) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.h.Settle)
}

func (s *suite) register(t *testing.T, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := s.opCtx()
		err := r.Register(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Register(%s): %v", Format([]registry.Instance{in}), err)
		}
	}
}

func (s *suite) deregister(t *testing.T, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := s.opCtx()
		err := r.Deregister(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Deregister(key %v, ID %q): %v", in.Key, in.ID, err)
		}
	}
}

func (s *suite) discover(t *testing.T, r registry.Registry, key registry.ServiceKey) []registry.Instance {
	t.Helper()
	ctx, cancel := s.opCtx()
	defer cancel()
	list, err := r.Discover(ctx, key)
	if err != nil {
		t.Fatalf("Discover(%v): %v", key, err)
	}
	checkList(t, "Discover", key, list)
	return list
}

// waitDiscover polls Discover until it returns exactly want (in any order;
// lists must be sorted by ID, which checkList verifies).
func (s *suite) waitDiscover(t *testing.T, r registry.Registry, key registry.ServiceKey, want ...registry.Instance) []registry.Instance {
	t.Helper()
	want = sorted(want)
	list := WaitDiscover(t, r, key, s.h.Settle, func(list []registry.Instance) bool { return sameInstances(list, want) })
	checkList(t, "Discover", key, list)
	return list
}

// watchT wraps a watcher and checks every list it returns.
type watchT struct {
	s       *suite
	w       registry.Watcher
	key     registry.ServiceKey
	started bool
	prev    []registry.Instance
}

// watch starts a watch on r that is stopped when t ends.
func (s *suite) watch(t *testing.T, r registry.Registry, key registry.ServiceKey) *watchT {
	t.Helper()
	w, err := r.Watch(context.Background(), key)
	if err != nil {
		t.Fatalf("Watch(%v): %v", key, err)
	}
	if w == nil {
		t.Fatalf("Watch(%v) returned a nil watcher and no error", key)
	}
	t.Cleanup(w.Stop)
	return &watchT{s: s, w: w, key: key}
}

func (x *watchT) next(t *testing.T, ctx context.Context) ([]registry.Instance, error) {
	t.Helper()
	list, err := x.w.Next(ctx)
	if err != nil {
		return nil, err
	}
	checkList(t, "Watcher.Next", x.key, list)
	if x.started && sameInstances(list, x.prev) {
		t.Errorf("Watcher.Next returned the same list twice in a row, %s; it must block until the list differs", Format(list))
	}
	x.started = true
	x.prev = clone(list)
	return list, nil
}

// first returns the first list of the watch, which must come at once.
func (x *watchT) first(t *testing.T) []registry.Instance {
	t.Helper()
	if x.started {
		t.Fatal("registrytest: first called twice")
	}
	ctx, cancel := x.s.opCtx()
	defer cancel()
	list, err := x.next(t, ctx)
	if err != nil {
		t.Fatalf("first Watcher.Next: %v (the first call must return the current list at once)", err)
	}
	return list
}

// until reads lists until one is exactly want and returns it. If strict, no
// other list may come first; otherwise intermediate lists are skipped.
func (x *watchT) until(t *testing.T, strict bool, want ...registry.Instance) []registry.Instance {
	t.Helper()
	want = sorted(want)
	ctx, cancel := x.s.opCtx()
	defer cancel()
	for {
		list, err := x.next(t, ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the watch did not deliver %s within %v; the last list it returned was %s",
					Format(want), x.s.h.Settle, Format(x.prev))
			}
			t.Fatalf("Watcher.Next: %v", err)
		}
		if sameInstances(list, want) {
			return list
		}
		if strict {
			t.Fatalf("the watch returned %s; want %s", Format(list), Format(want))
		}
	}
}

// checkList checks the invariants of every returned list: sorted by ID, no
// ID twice, every instance of the requested key.
func checkList(t *testing.T, op string, key registry.ServiceKey, list []registry.Instance) {
	t.Helper()
	for i, in := range list {
		if in.Key != key {
			t.Errorf("%s(%v) returned an instance of key %v: %s", op, key, in.Key, Format(list))
			return
		}
		if i > 0 && list[i-1].ID >= in.ID {
			t.Errorf("%s(%v) returned a list not sorted by ID, or with an ID twice: %s", op, key, Format(list))
			return
		}
	}
}

func sameInstances(got, want []registry.Instance) bool {
	return slices.EqualFunc(got, want, SameInstance)
}

func sorted(list []registry.Instance) []registry.Instance {
	list = slices.Clone(list)
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return list
}

func clone(list []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(list))
	for i, in := range list {
		out[i] = in.Clone()
	}
	return out
}

func inst(key registry.ServiceKey, id string, port int) registry.Instance {
	return registry.Instance{Key: key, ID: id, Addr: "127.0.0.1:" + strconv.Itoa(port)}
}

func (s *suite) testRegisterDiscover(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	key.Version, key.Group = "1.0.0", "blue"
	in := registry.Instance{
		Key:      key,
		ID:       "instance-1",
		Addr:     "127.0.0.1:20880",
		Weight:   42,
		Metadata: map[string]string{"zone": "eu-west-1a", "build": "1.2.3"},
	}
	s.register(t, prov, in)
	s.waitDiscover(t, cons, key, in)
	s.waitDiscover(t, prov, key, in)
}

func (s *suite) testDiscoverUnknownKey(t *testing.T) {
	r := s.open(t)
	key := UniqueKey(t)
	for _, k := range []registry.ServiceKey{key, {Service: key.Service, Version: "9.9.9", Group: "nobody"}} {
		if list := s.discover(t, r, k); len(list) != 0 {
			t.Errorf("Discover(%v) of an unknown key = %s, want an empty list", k, Format(list))
		}
	}
}

func (s *suite) testSeveralInstances(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	c, a, b := inst(key, "c", 3), inst(key, "a", 1), inst(key, "b", 2)
	s.register(t, prov, c, a, b)
	s.waitDiscover(t, cons, key, a, b, c)
}

func (s *suite) testReRegisterReplaces(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	w.first(t)
	v1 := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1001", Weight: 1, Metadata: map[string]string{"v": "1"}}
	v2 := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.2:1002", Weight: 2, Metadata: map[string]string{"v": "2", "new": "yes"}}
	s.register(t, prov, v1)
	s.waitDiscover(t, cons, key, v1)
	w.until(t, false, v1)
	s.register(t, prov, v2)
	s.waitDiscover(t, cons, key, v2)
	w.until(t, false, v2)
	// Registering the same instance again changes nothing.
	s.register(t, prov, v2)
	s.waitDiscover(t, cons, key, v2)
}

func (s *suite) testDeregister(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	s.register(t, prov, a, b)
	s.waitDiscover(t, cons, key, a, b)
	// Deregister needs only the key and the ID.
	s.deregister(t, prov, registry.Instance{Key: key, ID: "a"})
	s.waitDiscover(t, cons, key, b)
	s.deregister(t, prov, b)
	s.waitDiscover(t, cons, key)
	s.waitDiscover(t, prov, key)
}

func (s *suite) testDeregisterUnknown(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	s.deregister(t, prov, inst(key, "never-registered", 1))
	a := inst(key, "a", 1)
	s.register(t, prov, a)
	s.waitDiscover(t, cons, key, a)
	s.deregister(t, prov, inst(key, "b", 2)) // unknown ID of a known key
	s.waitDiscover(t, cons, key, a)
	// Deregistering through another client is not tested: adapters that
	// keep registrations alive rightly restore an instance that something
	// other than its owner removed while the owner still runs.
	s.deregister(t, prov, a)
	s.waitDiscover(t, cons, key)
	s.deregister(t, prov, a) // twice
	s.waitDiscover(t, cons, key)
}

func (s *suite) testWatchFirstEmpty(t *testing.T) {
	r := s.open(t)
	key := UniqueKey(t)
	if list := s.watch(t, r, key).first(t); len(list) != 0 {
		t.Errorf("first Next of an unknown key = %s, want an empty list", Format(list))
	}
}

func (s *suite) testWatchFirstCurrent(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	a.Metadata = map[string]string{"k": "v"}
	s.register(t, prov, a, b)
	s.waitDiscover(t, cons, key, a, b)
	if list := s.watch(t, cons, key).first(t); !sameInstances(list, []registry.Instance{a, b}) {
		t.Errorf("first Next = %s, want the current list %s", Format(list), Format([]registry.Instance{a, b}))
	}
}

func (s *suite) testWatchChanges(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	if list := w.first(t); len(list) != 0 {
		t.Fatalf("first Next = %s, want an empty list", Format(list))
	}
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	s.register(t, prov, a)
	w.until(t, true, a)
	s.register(t, prov, b)
	w.until(t, true, a, b)
	s.deregister(t, prov, a)
	w.until(t, true, b)
	s.deregister(t, prov, b)
	w.until(t, true)
}

func (s *suite) testWatchBurst(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	w.first(t)
	var all []registry.Instance
	for i := range 20 {
		all = append(all, inst(key, fmt.Sprintf("i%02d", i), 3000+i))
	}
	// Changes that come faster than the consumer reads may be coalesced, but
	// the last list must arrive.
	s.register(t, prov, all...)
	w.until(t, false, all...)
	late := s.watch(t, cons, key)
	late.first(t)
	s.deregister(t, prov, all...)
	w.until(t, false)
	late.until(t, false)
}

func (s *suite) testMultipleWatchers(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w1, w2, w3 := s.watch(t, cons, key), s.watch(t, cons, key), s.watch(t, prov, key)
	for _, w := range []*watchT{w1, w2, w3} {
		w.first(t)
	}
	a, b := inst(key, "a", 1), inst(key, "b", 2)
	s.register(t, prov, a)
	for _, w := range []*watchT{w1, w2, w3} {
		w.until(t, false, a)
	}
	w1.w.Stop()
	s.register(t, prov, b)
	for _, w := range []*watchT{w2, w3} {
		w.until(t, false, a, b)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if _, err := w1.w.Next(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Next on a stopped watcher: err = %v, want ErrClosed (and stopping one watcher must not affect the others)", err)
	}
}

func (s *suite) testIsolation(t *testing.T) {
	prov, cons := s.pair(t)
	base := UniqueKey(t)
	keys := []registry.ServiceKey{
		{Service: base.Service},
		{Service: base.Service, Version: "1.0.0"},
		{Service: base.Service, Version: "2.0.0"},
		{Service: base.Service, Group: "blue"},
		{Service: base.Service, Version: "1.0.0", Group: "blue"},
		{Service: base.Service + "2"}, // a service whose name has the other as prefix
	}
	var ins []registry.Instance
	var ws []*watchT
	for i, k := range keys {
		w := s.watch(t, cons, k)
		w.first(t)
		ws = append(ws, w)
		// The same ID under every key: instances are identified by key and ID.
		in := registry.Instance{Key: k, ID: "same-id", Addr: "127.0.0.1:" + strconv.Itoa(4000+i), Metadata: map[string]string{"variant": strconv.Itoa(i)}}
		ins = append(ins, in)
	}
	s.register(t, prov, ins...)
	for i, k := range keys {
		s.waitDiscover(t, cons, k, ins[i])
		ws[i].until(t, true, ins[i])
	}
	s.deregister(t, prov, ins[1])
	s.waitDiscover(t, cons, keys[1])
	ws[1].until(t, true)
	for i, k := range keys {
		if i == 1 {
			continue
		}
		if list := s.discover(t, cons, k); !sameInstances(list, ins[i:i+1]) {
			t.Errorf("after deregistering %v: Discover(%v) = %s, want %s", keys[1], k, Format(list), Format(ins[i:i+1]))
		}
	}
	other := registry.Instance{Key: keys[0], ID: "other", Addr: "127.0.0.1:4100"}
	s.register(t, prov, other)
	ws[0].until(t, true, ins[0], other)
	s.waitDiscover(t, cons, keys[0], ins[0], other)
}

func (s *suite) testMetadataWeight(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	many := make(map[string]string)
	for i := range 20 {
		many[fmt.Sprintf("key_%02d", i)] = strings.Repeat("v", i)
	}
	ins := []registry.Instance{
		{Key: key, ID: "no-weight-no-metadata", Addr: "127.0.0.1:5001"},
		{Key: key, ID: "weight-1-empty-metadata", Addr: "127.0.0.1:5002", Weight: 1, Metadata: map[string]string{}},
		{Key: key, ID: "big-weight", Addr: "127.0.0.1:5003", Weight: 1_000_000, Metadata: map[string]string{"zone": "a"}},
		{Key: key, ID: "odd-values", Addr: "127.0.0.1:5004", Weight: 7, Metadata: map[string]string{
			"url":                 "http://h:1/p?q=1&r=2#f",
			"unicode":             "héllo wörld ✓",
			"equals":              "a=b;c=d,e",
			"slash":               "a/b\\c",
			"quote":               `say "hi" 'there'`,
			"spaces":              "  padded  ",
			"long":                strings.Repeat("0123456789", 40),
			"dash-key_underscore": "x",
		}},
		{Key: key, ID: "many-entries", Addr: "localhost:5005", Weight: 3, Metadata: many},
		{Key: key, ID: "ipv6", Addr: "[::1]:5006", Weight: 100},
		{Key: key, ID: "weight-0-registered-at", Addr: "127.0.0.1:5007", Weight: 0,
			Metadata: map[string]string{registry.MetadataRegisteredAt: "1733480000123", registry.MetadataLoad: "qps=12.5 inflight=3"}},
	}
	s.register(t, prov, ins...)
	// SameInstance lets nil metadata come back as an empty map; weight 0
	// must come back as 0.
	s.waitDiscover(t, cons, key, ins...)
	w := s.watch(t, cons, key)
	if list := w.first(t); !sameInstances(list, sorted(ins)) {
		t.Errorf("first Next = %s, want %s", Format(list), Format(sorted(ins)))
	}
}

// testWeightZeroRegisteredAt checks that weight 0 (no traffic) and the
// registration time the runtime sets round-trip exactly, through Discover
// and through a watch, including when an instance changes from weight 0 to
// another weight and back: a registry that writes 0 as "no weight" would
// read it back as DefaultWeight and send traffic to a drained provider, and
// one that drops registry.MetadataRegisteredAt silently turns warm-up off.
func (s *suite) testWeightZeroRegisteredAt(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	w.first(t)
	at := map[string]string{registry.MetadataRegisteredAt: "1733480000123"}
	zero := registry.Instance{Key: key, ID: "z", Addr: "127.0.0.1:6001", Weight: 0, Metadata: at}
	five := registry.Instance{Key: key, ID: "z", Addr: "127.0.0.1:6001", Weight: 5, Metadata: at}
	full := registry.Instance{Key: key, ID: "d", Addr: "127.0.0.1:6002", Weight: registry.DefaultWeight,
		Metadata: map[string]string{registry.MetadataRegisteredAt: "1733480009999"}}
	s.register(t, prov, zero, full)
	s.waitDiscover(t, cons, key, zero, full)
	w.until(t, false, zero, full)
	s.register(t, prov, five)
	s.waitDiscover(t, cons, key, five, full)
	w.until(t, false, five, full)
	s.register(t, prov, zero)
	s.waitDiscover(t, cons, key, zero, full)
	list := w.until(t, false, zero, full)
	for _, in := range list {
		if _, ok := in.Metadata[registry.MetadataRegisteredAt]; !ok {
			t.Errorf("instance %q lost its %s metadata: %s", in.ID, registry.MetadataRegisteredAt, Format(list))
		}
	}
}

func (s *suite) testIDCharacters(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	ids := []string{
		"10.0.0.1:8080",
		"node/1",
		"/leading-slash",
		"with space",
		"percent%2Fencoded",
		"query?a=b&c=d#frag",
		"ünïcödé",
		"a.b-c_d~e",
		strings.Repeat("x", 200),
	}
	var ins []registry.Instance
	for i, id := range ids {
		ins = append(ins, inst(key, id, 6000+i))
	}
	s.register(t, prov, ins...)
	s.waitDiscover(t, cons, key, ins...)
	w := s.watch(t, cons, key)
	w.first(t)
	s.deregister(t, prov, ins[1])
	rest := slices.Delete(slices.Clone(ins), 1, 2)
	s.waitDiscover(t, cons, key, rest...)
	w.until(t, false, rest...)
}

func (s *suite) testReturnedCopies(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	a := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: map[string]string{"zone": "a"}}
	s.register(t, prov, a)
	list := s.waitDiscover(t, cons, key, a)
	list[0].Metadata["zone"] = "changed by the caller"
	list[0].Metadata["added"] = "by the caller"
	list[0].Addr = "10.9.9.9:9"
	if list := s.discover(t, cons, key); !sameInstances(list, []registry.Instance{a}) {
		t.Errorf("after changing a returned instance: Discover = %s, want %s", Format(list), Format([]registry.Instance{a}))
	}
	w := s.watch(t, cons, key)
	first := w.first(t)
	if len(first) == 1 {
		first[0].Metadata["zone"] = "changed by the caller"
	}
	if list := s.watch(t, cons, key).first(t); !sameInstances(list, []registry.Instance{a}) {
		t.Errorf("after changing a list returned by a watch: first Next of another watch = %s, want %s", Format(list), Format([]registry.Instance{a}))
	}
	if list := s.discover(t, prov, key); !sameInstances(list, []registry.Instance{a}) {
		t.Errorf("after changing a list returned by a watch: Discover = %s, want %s", Format(list), Format([]registry.Instance{a}))
	}
}

func (s *suite) testInvalidInput(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	good := registry.Instance{Key: key, ID: "ok", Addr: "127.0.0.1:1"}
	badInstances := []struct {
		name  string
		mod   func(*registry.Instance)
		field string
	}{
		{"empty service", func(in *registry.Instance) { in.Key.Service = "" }, "service"},
		{"service with slash", func(in *registry.Instance) { in.Key.Service += "/x" }, "service"},
		{"service with colon", func(in *registry.Instance) { in.Key.Service += ":x" }, "service"},
		{"service with space", func(in *registry.Instance) { in.Key.Service += " x" }, "service"},
		{"version with slash", func(in *registry.Instance) { in.Key.Version = "1/2" }, "version"},
		{"group with colon", func(in *registry.Instance) { in.Key.Group = "a:b" }, "group"},
		{"empty ID", func(in *registry.Instance) { in.ID = "" }, "instance ID"},
		{"empty address", func(in *registry.Instance) { in.Addr = "" }, "address"},
		{"address without port", func(in *registry.Instance) { in.Addr = "127.0.0.1" }, "address"},
		{"address without host", func(in *registry.Instance) { in.Addr = ":8080" }, "address"},
		{"port 0", func(in *registry.Instance) { in.Addr = "127.0.0.1:0" }, "address"},
		{"port 65536", func(in *registry.Instance) { in.Addr = "127.0.0.1:65536" }, "address"},
		{"port not a number", func(in *registry.Instance) { in.Addr = "127.0.0.1:http" }, "address"},
		{"negative weight", func(in *registry.Instance) { in.Weight = -1 }, "weight"},
	}
	for _, tc := range badInstances {
		in := good.Clone()
		tc.mod(&in)
		ctx, cancel := s.opCtx()
		err := prov.Register(ctx, in)
		cancel()
		checkInputError(t, "Register with "+tc.name, err, tc.field)
	}

	for _, tc := range badKeys(key) {
		ctx, cancel := s.opCtx()
		_, err := cons.Discover(ctx, tc.key)
		checkInputError(t, "Discover with "+tc.name, err, tc.field)
		w, err := cons.Watch(ctx, tc.key)
		if w != nil {
			w.Stop()
		}
		checkInputError(t, "Watch with "+tc.name, err, tc.field)
		err = prov.Deregister(ctx, registry.Instance{Key: tc.key, ID: "ok"})
		checkInputError(t, "Deregister with "+tc.name, err, tc.field)
		cancel()
	}
	ctx, cancel := s.opCtx()
	err := prov.Deregister(ctx, registry.Instance{Key: key})
	cancel()
	checkInputError(t, "Deregister with an empty ID", err, "instance ID")

	// The clients still work and nothing was registered.
	if list := s.discover(t, cons, key); len(list) != 0 {
		t.Errorf("after invalid calls: Discover = %s, want an empty list", Format(list))
	}
	s.register(t, prov, good)
	s.waitDiscover(t, cons, key, good)
}

// testNilContext checks that every method given a nil context returns an
// error instead of panicking, and does nothing.
func (s *suite) testNilContext(t *testing.T) {
	r := s.open(t)
	key := UniqueKey(t)
	a := inst(key, "a", 1)
	var nilCtx context.Context
	call := func(method string, f func() error) {
		t.Helper()
		if err := noPanic(t, method+" with a nil context", f); err == nil {
			t.Errorf("%s with a nil context: no error", method)
		}
	}
	call("Register", func() error { return r.Register(nilCtx, a) })
	call("Deregister", func() error { return r.Deregister(nilCtx, a) })
	call("Discover", func() error { _, err := r.Discover(nilCtx, key); return err })
	call("Watch", func() error {
		w, err := r.Watch(nilCtx, key)
		if w != nil {
			w.Stop()
		}
		return err
	})
	if l, ok := r.(registry.Lister); ok {
		call("Services", func() error { _, err := l.Services(nilCtx); return err })
	}
	// Nothing was registered, and the client still works.
	if list := s.discover(t, r, key); len(list) != 0 {
		t.Errorf("after Register with a nil context: Discover = %s, want an empty list", Format(list))
	}
}

// badKey is an invalid service key, and the field its error must name.
type badKey struct {
	name  string
	key   registry.ServiceKey
	field string
}

// badKeys returns invalid variants of key.
func badKeys(key registry.ServiceKey) []badKey {
	return []badKey{
		{"empty service", registry.ServiceKey{}, "service"},
		{"service with slash", registry.ServiceKey{Service: key.Service + "/x"}, "service"},
		{"version with colon", registry.ServiceKey{Service: key.Service, Version: "1:2"}, "version"},
		{"group with slash", registry.ServiceKey{Service: key.Service, Group: "a/b"}, "group"},
	}
}

// noPanic returns what f returns, and an error if f panics, which it
// reports as a failure of what.
func noPanic(t *testing.T, what string, f func() error) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s panicked: %v", what, p)
			err = errors.New("panicked")
		}
	}()
	return f()
}

func checkInputError(t *testing.T, what string, err error, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	var ie *registry.InputError
	if !errors.As(err, &ie) {
		t.Errorf("%s: error %q (%T) is not a *registry.InputError", what, err, err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("%s: error %q does not name the field %q", what, err, field)
	}
}

func (s *suite) testWatchStop(t *testing.T) {
	r := s.open(t)
	key := UniqueKey(t)
	w := s.watch(t, r, key)
	w.first(t)
	w.w.Stop()
	ctx, cancel := s.opCtx()
	defer cancel()
	for i := range 2 {
		if _, err := w.w.Next(ctx); !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Next #%d after Stop: err = %v, want ErrClosed", i+1, err)
		}
	}
	w.w.Stop() // a second Stop is harmless

	// Stop from another goroutine ends a Next that is waiting.
	w2 := s.watch(t, r, key)
	w2.first(t)
	errc := make(chan error, 1)
	go func() {
		_, err := w2.w.Next(ctx)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Next block; the result is the same if it has not yet
	w2.w.Stop()
	if err := <-errc; !errors.Is(err, registry.ErrClosed) {
		t.Errorf("waiting Next when Stop is called: err = %v, want ErrClosed", err)
	}

	// A new watch on the same client and key still works.
	p := s.open(t)
	w3 := s.watch(t, r, key)
	w3.first(t)
	a := inst(key, "a", 1)
	s.register(t, p, a)
	w3.until(t, false, a)
}

func (s *suite) testNextContext(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	w.first(t)

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if list, err := w.w.Next(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a canceled context = %s, %v; want context.Canceled", Format(list), err)
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if list, err := w.w.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with an expiring context and no change = %s, %v; want context.DeadlineExceeded", Format(list), err)
	}

	// The context of Next bounds that call only: the watch goes on.
	a := inst(key, "a", 1)
	s.register(t, prov, a)
	w.until(t, false, a)
}

func (s *suite) testWatchContext(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := cons.Watch(wctx, key)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	defer w.Stop()
	ctx, cancelOp := s.opCtx()
	defer cancelOp()
	if _, err := w.Next(ctx); err != nil {
		t.Fatalf("first Next: %v", err)
	}
	cancel()
	// The watch ends: Next returns the watch context's error or ErrClosed,
	// and does so for good.
	for i := range 2 {
		list, err := w.Next(ctx)
		if !errors.Is(err, context.Canceled) && !errors.Is(err, registry.ErrClosed) {
			t.Fatalf("Next #%d after the Watch context was canceled = %s, %v; want context.Canceled or ErrClosed", i+1, Format(list), err)
		}
	}

	// Watching with a context that is already done fails, in Watch or in
	// the first Next.
	if w, err := cons.Watch(wctx, key); err == nil {
		list, err := w.Next(ctx)
		w.Stop()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Watch with a canceled context: first Next = %s, %v; want an error", Format(list), err)
		}
	}

	// The client is fine.
	w2 := s.watch(t, cons, key)
	w2.first(t)
	a := inst(key, "a", 1)
	s.register(t, prov, a)
	w2.until(t, false, a)
}

func (s *suite) testClose(t *testing.T) {
	prov, cons := s.pair(t)
	key := UniqueKey(t)
	a := inst(key, "a", 1)
	s.register(t, prov, a)
	s.waitDiscover(t, cons, key, a)
	w := s.watch(t, cons, key)
	w.first(t)
	ctx, cancel := s.opCtx()
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := w.w.Next(ctx)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Next block; the result is the same if it has not yet
	if err := cons.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, registry.ErrClosed) {
		t.Errorf("waiting Next when the registry is closed: err = %v, want ErrClosed", err)
	}
	if _, err := w.w.Next(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Next after Close: err = %v, want ErrClosed", err)
	}
	w.w.Stop()

	b := inst(key, "b", 2)
	if err := cons.Register(ctx, b); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Register after Close: err = %v, want ErrClosed", err)
	}
	if err := cons.Deregister(ctx, a); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Deregister after Close: err = %v, want ErrClosed", err)
	}
	if list, err := cons.Discover(ctx, key); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Discover after Close = %s, %v; want ErrClosed", Format(list), err)
	}
	if w, err := cons.Watch(ctx, key); !errors.Is(err, registry.ErrClosed) {
		if w != nil {
			w.Stop()
		}
		t.Errorf("Watch after Close: err = %v, want ErrClosed", err)
	}
	if err := cons.Close(); err != nil && !errors.Is(err, registry.ErrClosed) {
		t.Errorf("second Close: err = %v, want nil or ErrClosed", err)
	}

	// Closing one client does not affect the others.
	s.register(t, prov, b)
	s.waitDiscover(t, prov, key, a, b)
	s.waitDiscover(t, s.open(t), key, a, b)
}

func (s *suite) testConcurrent(t *testing.T) {
	prov1, prov2, cons := s.open(t), s.open(t), s.open(t)
	key := UniqueKey(t)
	w := s.watch(t, cons, key)
	w.first(t)
	const workers, each = 8, 5
	var all []registry.Instance
	for i := range workers * each {
		all = append(all, inst(key, fmt.Sprintf("w%d-%d", i/each, i%each), 7000+i))
	}
	parallel := func(op func(r registry.Registry, in registry.Instance) error) {
		var wg sync.WaitGroup
		errc := make(chan error, len(all))
		for g := range workers {
			r := prov1
			if g%2 == 1 {
				r = prov2
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, in := range all[g*each : (g+1)*each] {
					if err := op(r, in); err != nil {
						errc <- fmt.Errorf("instance %s: %w", in.ID, err)
					}
				}
			}()
		}
		// Discover concurrently with the writers.
		for range 10 {
			ctx, cancel := s.opCtx()
			_, err := cons.Discover(ctx, key)
			cancel()
			if err != nil {
				t.Errorf("concurrent Discover: %v", err)
			}
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
	}
	parallel(func(r registry.Registry, in registry.Instance) error {
		ctx, cancel := s.opCtx()
		defer cancel()
		return r.Register(ctx, in)
	})
	s.waitDiscover(t, cons, key, all...)
	w.until(t, false, all...)
	parallel(func(r registry.Registry, in registry.Instance) error {
		ctx, cancel := s.opCtx()
		defer cancel()
		return r.Deregister(ctx, in)
	})
	s.waitDiscover(t, cons, key)
	w.until(t, false)
}

// testLister checks registry.Lister, for registries that implement it: a key
// is listed while it has instances, and every version and group separately.
func (s *suite) testLister(t *testing.T) {
	prov, cons := s.pair(t)
	l, ok := cons.(registry.Lister)
	if !ok {
		t.Skipf("%T does not implement registry.Lister", cons)
	}
	key := UniqueKey(t)
	v2 := key
	v2.Version, v2.Group = "v2", "blue"
	a, b := inst(key, "a", 1), inst(v2, "b", 2)
	s.register(t, prov, a, b)
	listed := func(want ...registry.ServiceKey) func() error {
		return func() error {
			ctx, cancel := s.opCtx()
			defer cancel()
			keys, err := l.Services(ctx)
			if err != nil {
				return err
			}
			var mine []registry.ServiceKey
			for _, k := range keys {
				if k.Service == key.Service {
					mine = append(mine, k)
				}
			}
			sorted := slices.Clone(mine)
			registry.SortKeys(sorted)
			if !slices.Equal(mine, sorted) {
				return fmt.Errorf("Services() is not sorted: %v", mine)
			}
			if !slices.Equal(mine, want) {
				return fmt.Errorf("Services() lists %v for %s, want %v", mine, key.Service, want)
			}
			return nil
		}
	}
	want := []registry.ServiceKey{key, v2}
	registry.SortKeys(want)
	Eventually(t, s.h.Settle, listed(want...))
	s.deregister(t, prov, a)
	Eventually(t, s.h.Settle, listed(v2))
	s.deregister(t, prov, b)
	Eventually(t, s.h.Settle, listed())
}
