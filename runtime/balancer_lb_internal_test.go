package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// testEndpoints makes n endpoints "i-000".. with addresses of their own
// and no live load.
func testEndpoints(n int) []*Endpoint {
	eps := make([]*Endpoint, n)
	for i := range eps {
		in := registry.Instance{ID: fmt.Sprintf("i-%03d", i), Addr: fmt.Sprintf("10.0.%d.%d:8000", i/256, i%256)}
		eps[i] = &Endpoint{inst: in, ep: &endpoint{addr: in.Addr}}
	}
	return eps
}

// setLoad sets e's live counters.
func setLoad(e *Endpoint, inflight int64, lat time.Duration, errRate float64) {
	e.ep.load.inflight.Store(inflight)
	e.ep.load.latency.Store(int64(lat))
	e.ep.load.errRate.Store(uint32(errRate * errRateOne))
}

func pickCounts(t testing.TB, p Picker, eps []*Endpoint, n int) map[*Endpoint]int {
	counts := make(map[*Endpoint]int)
	for range n {
		res, err := p.Pick(context.Background(), PickInfo{Method: "/s.S/M", Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		counts[res.Endpoint]++
	}
	return counts
}

func TestLeastLoadedPrefersLowerLoad(t *testing.T) {
	cases := []struct {
		name       string
		fast, slow func(*Endpoint)
		minShare   float64 // of the fast one, over the two
	}{
		{"latency", func(e *Endpoint) { setLoad(e, 0, time.Millisecond, 0) }, func(e *Endpoint) { setLoad(e, 0, 6*time.Millisecond, 0) }, 0.99},
		{"in-flight", func(e *Endpoint) { setLoad(e, 1, time.Millisecond, 0) }, func(e *Endpoint) { setLoad(e, 20, time.Millisecond, 0) }, 0.99},
		{"errors", func(e *Endpoint) { setLoad(e, 0, time.Millisecond, 0) }, func(e *Endpoint) { setLoad(e, 0, 100*time.Microsecond, 0.8) }, 0.99},
		{"unknown latency is tried", func(e *Endpoint) { setLoad(e, 0, 0, 0) }, func(e *Endpoint) { setLoad(e, 0, time.Millisecond, 0) }, 0.99},
		{"unknown latency but busy", func(e *Endpoint) { setLoad(e, 0, time.Millisecond, 0) }, func(e *Endpoint) { setLoad(e, 5, 0, 0) }, 0.99},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eps := testEndpoints(2)
			c.fast(eps[0])
			c.slow(eps[1])
			p := LeastLoaded()().Build(eps)
			const n = 50000 // one pick in 1,024 explores: about 49 here
			counts := pickCounts(t, p, eps, n)
			if share := float64(counts[eps[0]]) / n; share < c.minShare {
				t.Errorf("the better endpoint got %.3f of the picks, want ≥ %.2f", share, c.minShare)
			}
			if counts[eps[1]] == 0 {
				t.Errorf("the worse endpoint was never picked in %d picks; it must be re-measured now and then", n)
			}
		})
	}
}

func TestLeastLoadedSpreadsAmongEquals(t *testing.T) {
	eps := testEndpoints(10)
	for _, e := range eps {
		setLoad(e, 3, time.Millisecond, 0)
	}
	const n = 50000
	counts := pickCounts(t, LeastLoaded()().Build(eps), eps, n)
	for _, e := range eps {
		if c := counts[e]; c < n/10*8/10 || c > n/10*12/10 {
			t.Errorf("%s: %d picks of %d, want about %d", e.inst.ID, c, n, n/10)
		}
	}
}

func TestLeastLoadedOneEndpoint(t *testing.T) {
	eps := testEndpoints(1)
	counts := pickCounts(t, LeastLoaded()().Build(eps), eps, 10)
	if counts[eps[0]] != 10 {
		t.Fatalf("counts %v", counts)
	}
}

func hashPick(t testing.TB, p Picker, key string, attempt int) *Endpoint {
	res, err := p.Pick(context.Background(), PickInfo{HashKey: key, Attempt: attempt})
	if err != nil {
		t.Fatal(err)
	}
	return res.Endpoint
}

// TestConsistentHashAgrees: two clients that know the same instances, in
// different orders and on different addresses, map every key to the same
// instance.
func TestConsistentHashAgrees(t *testing.T) {
	a := testEndpoints(10)
	b := testEndpoints(10)
	rand.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	for i, e := range b {
		e.inst.Addr = fmt.Sprintf("192.168.1.%d:9000", i) // another view of the same instances
	}
	pa := ConsistentHash()().Build(a)
	// The second balancer reaches the same list through other changes.
	bb := ConsistentHash()()
	bb.Build(b[:3])
	bb.Build(b[2:])
	pb := bb.Build(b)
	const keys = 10000
	for k := range keys {
		key := fmt.Sprintf("user-%d", k)
		for attempt := 1; attempt <= 3; attempt++ {
			x, y := hashPick(t, pa, key, attempt), hashPick(t, pb, key, attempt)
			if x.inst.ID != y.inst.ID {
				t.Fatalf("key %q attempt %d: %s and %s", key, attempt, x.inst.ID, y.inst.ID)
			}
		}
	}
}

// TestConsistentHashGolden pins the ring's hash: clients of different
// versions must agree.
func TestConsistentHashGolden(t *testing.T) {
	p := ConsistentHash()().Build(testEndpoints(10))
	got := ""
	for _, k := range []string{"a", "user-1", "user-2", "order/42"} {
		got += hashPick(t, p, k, 1).inst.ID + " "
	}
	if want := goldenHash; got != want {
		t.Errorf("keys map to %q, want %q", got, want)
	}
}

const goldenHash = "i-008 i-008 i-007 i-004 "

func TestConsistentHashRemoveOne(t *testing.T) {
	eps := testEndpoints(10)
	bal := ConsistentHash()()
	before := bal.Build(eps)
	gone := eps[4]
	rest := append(append([]*Endpoint(nil), eps[:4]...), eps[5:]...)
	after := bal.Build(rest)
	const keys = 10000
	moved, owned := 0, 0
	share := make(map[string]int)
	for k := range keys {
		key := fmt.Sprintf("key-%d", k)
		x, y := hashPick(t, before, key, 1), hashPick(t, after, key, 1)
		share[x.inst.ID]++
		if x == gone {
			owned++
			// Its keys go where its retries went.
			if z := hashPick(t, before, key, 2); z != y {
				t.Fatalf("key %q of the removed instance went to %s, its retry to %s", key, y.inst.ID, z.inst.ID)
			}
		}
		if x != y {
			moved++
			if x != gone {
				t.Fatalf("key %q moved from %s, which stays", key, x.inst.ID)
			}
		}
	}
	t.Logf("removing 1 of 10 moved %d of %d keys (%.1f%%); shares %v", moved, keys, 100*float64(moved)/keys, share)
	if moved > keys*15/100 {
		t.Errorf("%d of %d keys moved, want ≤ 15%%", moved, keys)
	}
	for id, n := range share {
		if n < keys/10/2 || n > keys/10*2 {
			t.Errorf("%s owns %d of %d keys", id, n, keys)
		}
	}
	// Adding it back restores the first mapping.
	again := bal.Build(eps)
	for k := range keys {
		key := fmt.Sprintf("key-%d", k)
		if x, y := hashPick(t, before, key, 1), hashPick(t, again, key, 1); x != y {
			t.Fatalf("key %q: %s before, %s once the instance is back", key, x.inst.ID, y.inst.ID)
		}
	}
}

// TestConsistentHashIncremental: a ring changed list after list (through
// bucket copies and re-cuts) maps keys as a ring built at once from the
// same instances.
func TestConsistentHashIncremental(t *testing.T) {
	all := testEndpoints(300)
	rng := rand.New(rand.NewPCG(3, 4))
	inc := ConsistentHash(HashVirtualNodes(40))()
	for step := range 60 {
		// Lists from 1 to 300 instances, by big and small changes.
		var list []*Endpoint
		keep := []float64{0.02, 0.5, 0.97, 1}[step%4]
		for _, e := range all {
			if rng.Float64() < keep {
				list = append(list, e)
			}
		}
		if len(list) == 0 {
			list = all[:1]
		}
		got := inc.Build(list)
		want := ConsistentHash(HashVirtualNodes(40))().Build(list)
		for k := range 500 {
			key := fmt.Sprintf("k%d", k)
			for attempt := 1; attempt <= 3; attempt++ {
				if x, y := hashPick(t, got, key, attempt), hashPick(t, want, key, attempt); x != y {
					t.Fatalf("step %d (%d instances): key %q attempt %d: %s incrementally, %s at once", step, len(list), key, attempt, x.inst.ID, y.inst.ID)
				}
			}
		}
	}
}

func TestConsistentHashRetriesWalk(t *testing.T) {
	eps := testEndpoints(5)
	p := ConsistentHash()().Build(eps)
	for k := range 200 {
		key := fmt.Sprintf("k%d", k)
		seen := map[*Endpoint]bool{}
		for attempt := 1; attempt <= 5; attempt++ {
			e := hashPick(t, p, key, attempt)
			if seen[e] {
				t.Fatalf("key %q attempt %d: %s again", key, attempt, e.inst.ID)
			}
			seen[e] = true
		}
		hashPick(t, p, key, 9) // more attempts than endpoints: any, no panic
	}
}

func TestConsistentHashKeys(t *testing.T) {
	eps := testEndpoints(8)
	p := ConsistentHash(HashMetadataKey("tenant"))().Build(eps)
	ctx := NewOutgoingContext(context.Background(), Metadata{"tenant": "acme"})
	byMD, err := p.Pick(ctx, PickInfo{Attempt: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := hashPick(t, p, "acme", 1); byMD.Endpoint != want {
		t.Errorf("metadata key picked %s, the hash key %s", byMD.Endpoint.inst.ID, want.inst.ID)
	}
	// WithHashKey wins over the metadata.
	res, _ := p.Pick(ctx, PickInfo{HashKey: "other", Attempt: 1})
	if want := hashPick(t, p, "other", 1); res.Endpoint != want {
		t.Errorf("hash key: picked %s, want %s", res.Endpoint.inst.ID, want.inst.ID)
	}
	// No key: spread at random.
	counts := pickCounts(t, p, eps, 8000)
	if len(counts) != len(eps) {
		t.Errorf("keyless calls reached %d of %d endpoints", len(counts), len(eps))
	}
}

// balancerCases are every balancer's factory, for the benchmarks.
var balancerCases = []struct {
	name string
	f    BalancerFactory
	key  string
}{
	{"RoundRobin", RoundRobin(), ""},
	{"Random", Random(), ""},
	{"LeastLoaded", LeastLoaded(), ""},
	{"ConsistentHash", ConsistentHash(), "user-12345"},
}

// BenchmarkPick measures a pick and its Done (if any), as a call makes
// them, with live counters that differ per endpoint.
func BenchmarkPick(b *testing.B) {
	for _, c := range balancerCases {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("%s/%d", c.name, n), func(b *testing.B) {
				eps := testEndpoints(n)
				for i, e := range eps {
					setLoad(e, int64(i%7), time.Duration(1+i%5)*time.Millisecond, float64(i%3)/100)
				}
				p := c.f().Build(eps)
				ctx := context.Background()
				info := PickInfo{Method: "/s.S/M", HashKey: c.key, Attempt: 1}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						res, err := p.Pick(ctx, info)
						if err != nil {
							b.Fatal(err)
						}
						if res.Done != nil {
							res.Done(DoneInfo{Latency: time.Millisecond})
						}
					}
				})
			})
		}
	}
}

// BenchmarkHashBuild measures ConsistentHash's Build per list change of
// one instance added or removed.
func BenchmarkHashBuild(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			eps := testEndpoints(n)
			bal := ConsistentHash()()
			bal.Build(eps)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					bal.Build(eps[1:])
				} else {
					bal.Build(eps)
				}
			}
		})
	}
}

// LeastLoaded seeds its estimate of endpoints it has no latency for with
// the calls their providers published in flight (WithLoadReport), while
// that load is fresh.
func TestLeastLoadedSeedsFromPublishedLoad(t *testing.T) {
	eps := testEndpoints(2)
	busy, idle := eps[0], eps[1]
	now := time.Now()
	busy.inst.Metadata = map[string]string{registry.MetadataLoad: Load{CallsPerSecond: 900, InFlight: 40, CPU: -1, At: now}.String()}
	idle.inst.Metadata = map[string]string{registry.MetadataLoad: Load{CallsPerSecond: 5, InFlight: 0, CPU: -1, At: now}.String()}
	got := pickCounts(t, LeastLoaded()().Build(eps), eps, 2000)
	if got[busy] > 10 {
		t.Fatalf("the provider that published 40 calls in flight got %d of 2000 picks, want about 2 (exploration)", got[busy])
	}
	// A stale load does not count: the two are alike again.
	busy.inst.Metadata[registry.MetadataLoad] = Load{CallsPerSecond: 900, InFlight: 40, CPU: -1, At: now.Add(-time.Hour)}.String()
	got = pickCounts(t, LeastLoaded()().Build(eps), eps, 2000)
	if got[busy] < 600 {
		t.Fatalf("with a stale published load the busy provider got %d of 2000 picks, want about half", got[busy])
	}
}
