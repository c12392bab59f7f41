package runtime

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// weightedEndpoints returns endpoints of the given weights, IDs "e0", "e1",
// ..., without a registration time.
func weightedEndpoints(weights ...int) []*Endpoint {
	eps := make([]*Endpoint, len(weights))
	for i, w := range weights {
		id := "e" + strconv.Itoa(i)
		eps[i] = &Endpoint{inst: registry.Instance{ID: id, Addr: "10.0.0." + strconv.Itoa(i+1) + ":1", Weight: w}, ep: &endpoint{}}
	}
	return eps
}

func registeredAt(e *Endpoint, v string) *Endpoint {
	in := e.inst
	in.Metadata = map[string]string{registry.MetadataRegisteredAt: v}
	return &Endpoint{inst: in, ep: e.ep}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) ms(d time.Duration) string {
	return strconv.FormatInt(c.now().Add(d).UnixMilli(), 10)
}
func withClock(c *fakeClock) WeightedOption {
	return func(cfg *weightedConfig) { cfg.now = c.now }
}

var weightedFactories = []struct {
	name string
	f    func(...WeightedOption) BalancerFactory
}{
	{"WeightedRoundRobin", WeightedRoundRobin},
	{"WeightedRandom", WeightedRandom},
}

// countPicks picks n times and counts the picks per endpoint index.
func countPicks(t testing.TB, p Picker, eps []*Endpoint, n int) []int {
	t.Helper()
	idx := make(map[*Endpoint]int, len(eps))
	for i, e := range eps {
		idx[e] = i
	}
	counts := make([]int, len(eps))
	for range n {
		r, err := p.Pick(context.Background(), PickInfo{Attempt: 1})
		if err != nil {
			t.Fatal(err)
		}
		i, ok := idx[r.Endpoint]
		if !ok {
			t.Fatalf("picked %v, not one of the endpoints", r.Endpoint)
		}
		counts[i]++
	}
	return counts
}

// TestWeightedShares: 1:2:7 over 30,000 calls. Round-robin is exact.
// Random must land within ±3 percentage points of each share: for the 10%
// share one standard deviation over 30,000 calls is √(0.1·0.9/30000) ≈
// 0.17 points, for 70% ≈ 0.26, so 3 points is more than 11σ and cannot
// flake; the test also asks for ±1 point (≥ 3.8σ) to catch a subtly wrong
// table.
func TestWeightedShares(t *testing.T) {
	eps := weightedEndpoints(1, 2, 7)
	want := []float64{0.1, 0.2, 0.7}
	const n = 30000
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			counts := countPicks(t, f.f()().Build(eps), eps, n)
			for i, c := range counts {
				got := float64(c) / n
				tol := 0.01
				if f.name == "WeightedRoundRobin" {
					tol = 0
				}
				if math.Abs(got-want[i]) > tol+1e-9 {
					t.Errorf("endpoint %d (weight %d): %d of %d calls = %.4f, want %.2f ± %.2f", i, eps[i].Weight(), c, n, got, want[i], tol)
				}
			}
		})
	}
}

// TestWeightedZero: an endpoint of weight 0 receives exactly nothing while
// another has a weight (Kitex sent ~10% to one, kitex#1393).
func TestWeightedZero(t *testing.T) {
	eps := weightedEndpoints(0, 5, 0, 1, 0)
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			for _, b := range []Balancer{f.f()(), f.f(WithWarmUp(time.Minute))()} {
				counts := countPicks(t, b.Build(eps), eps, 12000)
				if counts[0]+counts[2]+counts[4] != 0 {
					t.Errorf("weight-0 endpoints got %v calls", counts)
				}
				if counts[1] < counts[3]*3 {
					t.Errorf("5:1 split came out %d:%d", counts[1], counts[3])
				}
			}
		})
	}
}

// TestWeightedAllZero: when every weight is 0 the endpoints share the
// calls equally, and nothing panics (rpcx's ring does).
func TestWeightedAllZero(t *testing.T) {
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			for _, eps := range [][]*Endpoint{weightedEndpoints(0), weightedEndpoints(0, 0, 0, 0)} {
				const n = 20000
				counts := countPicks(t, f.f()().Build(eps), eps, n)
				for i, c := range counts {
					// Random: 1/4 share, σ ≈ 0.3 points; 2 points ≈ 6.5σ.
					if d := math.Abs(float64(c)/n - 1/float64(len(eps))); d > 0.02 || (f.name == "WeightedRoundRobin" && c != n/len(eps)) {
						t.Errorf("all-zero %d endpoints: endpoint %d got %d of %d", len(eps), i, c, n)
					}
				}
			}
		})
	}
}

// TestWeightedRoundRobinNoBurst: in any k consecutive picks (k ≤ 60) an
// endpoint of weight w out of W gets at most ceil(w/W·k)+1, for fixed and
// random weight sets, with repeated weights (which share a group).
func TestWeightedRoundRobinNoBurst(t *testing.T) {
	seq20 := make([]int, 20) // more distinct weights than kineticGroups
	for i := range seq20 {
		seq20[i] = i + 1
	}
	sets := [][]int{{1, 2, 7}, {5, 1, 1}, {100, 1, 1, 1, 1, 1}, {3, 3, 3, 1}, {1, 1, 1, 1, 50}, {10, 10, 10, 10, 10, 10, 1, 1}, seq20}
	r := rand.New(rand.NewPCG(1, 2))
	for range 60 {
		s := make([]int, 2+r.IntN(10))
		for i := range s {
			s[i] = r.IntN(8) // repeats and zeros
		}
		sets = append(sets, s)
	}
	for _, ws := range sets {
		eps := weightedEndpoints(ws...)
		total := 0
		for _, w := range ws {
			total += w
		}
		if total == 0 {
			continue
		}
		seq := make([]int, 0, 400)
		p := WeightedRoundRobin()().Build(eps)
		idx := map[*Endpoint]int{}
		for i, e := range eps {
			idx[e] = i
		}
		for range cap(seq) {
			res, _ := p.Pick(context.Background(), PickInfo{})
			seq = append(seq, idx[res.Endpoint])
		}
		counts := make([]int, len(ws))
		for k := 1; k <= 60; k++ {
			for s := 0; s+k <= len(seq); s++ {
				clear(counts)
				for _, e := range seq[s : s+k] {
					counts[e]++
				}
				for i, c := range counts {
					if limit := (ws[i]*k+total-1)/total + 1; c > limit {
						t.Fatalf("weights %v: endpoint %d got %d of the %d picks from %d, more than %d: %v", ws, i, c, k, s, limit, seq[:min(len(seq), 60)])
					}
				}
			}
		}
	}
}

// TestWeightedConcurrent picks from many goroutines while warm-up
// recomputes the weights (for -race), and still keeps weight 0 out.
func TestWeightedConcurrent(t *testing.T) {
	clk := newFakeClock()
	base := weightedEndpoints(0, 1, 2, 3)
	eps := []*Endpoint{base[0], registeredAt(base[1], clk.ms(0)), base[2], registeredAt(base[3], clk.ms(-time.Second))}
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			p := f.f(WithWarmUp(time.Second), withClock(clk))().Build(eps)
			var wg sync.WaitGroup
			var zero atomic.Int64
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 2000 {
						clk.advance(100 * time.Microsecond)
						r, err := p.Pick(context.Background(), PickInfo{})
						if err != nil || r.Endpoint == nil {
							t.Error(r, err)
							return
						}
						if r.Endpoint == eps[0] {
							zero.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if zero.Load() != 0 {
				t.Errorf("weight 0 got %d calls", zero.Load())
			}
		})
	}
}

// TestWarmUpFirstTenth: a provider registered now, among two registered an
// hour ago, gets at most 20% of its steady share (1/3) during the first
// tenth of the window, and its full share once the window has passed.
func TestWarmUpFirstTenth(t *testing.T) {
	const window = 100 * time.Second
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			clk := newFakeClock()
			base := weightedEndpoints(100, 100, 100)
			eps := []*Endpoint{registeredAt(base[0], clk.ms(-time.Hour)), registeredAt(base[1], clk.ms(-time.Hour)), registeredAt(base[2], clk.ms(0))}
			p := f.f(WithWarmUp(window), withClock(clk))().Build(eps)
			var fresh, all int
			for range 1000 { // 10 s in steps of 10 ms
				c := countPicks(t, p, eps, 10)
				fresh += c[2]
				all += 10
				clk.advance(10 * time.Millisecond)
			}
			share := float64(fresh) / float64(all)
			t.Logf("first tenth: the new provider got %.4f of the calls (steady share 0.3333)", share)
			if share > 0.2/3 {
				t.Errorf("the new provider got %.4f of the calls in the first tenth of its warm-up, more than 20%% of 1/3", share)
			}
			if share == 0 {
				t.Errorf("the new provider got no call at all while warming")
			}
			clk.advance(window)
			c := countPicks(t, p, eps, 30000)
			if got := float64(c[2]) / 30000; math.Abs(got-1.0/3) > 0.02 {
				t.Errorf("after the window the new provider gets %.4f, want 1/3", got)
			}
		})
	}
}

// TestWarmUpFutureTimestamp: a registration time an hour in the future
// (the provider's clock is ahead) ramps from when the consumer first saw
// the endpoint and is warm after one window, not after an hour.
func TestWarmUpFutureTimestamp(t *testing.T) {
	const window = 10 * time.Second
	for _, f := range weightedFactories {
		t.Run(f.name, func(t *testing.T) {
			clk := newFakeClock()
			base := weightedEndpoints(1, 1)
			eps := []*Endpoint{base[0], registeredAt(base[1], clk.ms(time.Hour))}
			b := f.f(WithWarmUp(window), withClock(clk))()
			c := countPicks(t, b.Build(eps), eps, 10000)
			if c[1] > 500 { // 1% floor: ~1% of 10000 (≈ 1σ = 10)
				t.Errorf("at first sight the future-stamped provider got %d of 10000", c[1])
			}
			clk.advance(window / 2)
			// A rebuild (a list change) must not restart the ramp.
			c = countPicks(t, b.Build(eps), eps, 30000)
			if got := float64(c[1]) / 30000; math.Abs(got-1.0/3) > 0.03 { // weight ½ vs 1
				t.Errorf("half-way through its window the future-stamped provider gets %.4f, want 1/3", got)
			}
			clk.advance(window / 2)
			c = countPicks(t, b.Build(eps), eps, 30000)
			if got := float64(c[1]) / 30000; math.Abs(got-0.5) > 0.02 {
				t.Errorf("a window after first sight the future-stamped provider gets %.4f, want 1/2", got)
			}
		})
	}
}

// TestWarmUpNoTimestamp: an endpoint without a readable registration time
// is warm at once.
func TestWarmUpNoTimestamp(t *testing.T) {
	clk := newFakeClock()
	for _, f := range weightedFactories {
		for _, v := range []string{"", "garbage", "-5", "0", "1.5e12"} {
			t.Run(fmt.Sprintf("%s/%q", f.name, v), func(t *testing.T) {
				base := weightedEndpoints(1, 1)
				eps := []*Endpoint{base[0], base[1]}
				if v != "" {
					eps[1] = registeredAt(base[1], v)
				}
				c := countPicks(t, f.f(WithWarmUp(time.Hour), withClock(clk))().Build(eps), eps, 20000)
				if got := float64(c[1]) / 20000; math.Abs(got-0.5) > 0.02 {
					t.Errorf("registered_at %q: share %.4f, want 1/2 (warm)", v, got)
				}
			})
		}
	}
}

func TestEndpointRegisteredAt(t *testing.T) {
	e := weightedEndpoints(1)[0]
	if _, ok := e.RegisteredAt(); ok {
		t.Error("RegisteredAt without metadata reports a time")
	}
	at, ok := registeredAt(e, "1733480000123").RegisteredAt()
	if !ok || !at.Equal(time.UnixMilli(1733480000123)) {
		t.Errorf("RegisteredAt = %v, %v", at, ok)
	}
}

// BenchmarkWeighted measures a pick (plus the absent Done) with 10 and
// 1,000 endpoints: equal weights, 10 distinct weights, and all distinct
// (round-robin's cost grows with the number of distinct weights, not of
// endpoints: the last is its worst case).
func BenchmarkWeighted(b *testing.B) {
	for _, f := range weightedFactories {
		for _, n := range []int{10, 1000} {
			for _, distinct := range []int{1, 10, 1000} {
				if distinct > n {
					continue
				}
				ws := make([]int, n)
				for i := range ws {
					ws[i] = 100 + i%distinct
				}
				eps := weightedEndpoints(ws...)
				p := f.f()().Build(eps)
				b.Run(fmt.Sprintf("%s/n=%d/distinct=%d", f.name, n, distinct), func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						ctx := context.Background()
						for pb.Next() {
							r, _ := p.Pick(ctx, PickInfo{Attempt: 1})
							if r.Done != nil {
								r.Done(DoneInfo{})
							}
						}
					})
				})
			}
		}
	}
}

// BenchmarkWeightedBuild measures a list change at 1,000 endpoints (with
// warm-up on, the costlier case): one Build and its first pick.
func BenchmarkWeightedBuild(b *testing.B) {
	clk := newFakeClock()
	base := weightedEndpoints(make([]int, 1000)...)
	eps := make([]*Endpoint, len(base))
	for i, e := range base {
		e.inst.Weight = 100 + i%10
		eps[i] = registeredAt(e, clk.ms(-time.Duration(i)*time.Second))
	}
	for _, f := range weightedFactories {
		b.Run(f.name, func(b *testing.B) {
			bal := f.f(WithWarmUp(time.Minute), withClock(clk))()
			b.ReportAllocs()
			for range b.N {
				p := bal.Build(eps)
				_, _ = p.Pick(context.Background(), PickInfo{})
			}
		})
	}
}

// TestWeightedRoundRobinChurn: a list change (a Build) every few picks
// continues the schedule rather than restarting it, so neither the
// heaviest endpoint nor a group's first endpoints take every first pick.
func TestWeightedRoundRobinChurn(t *testing.T) {
	for _, every := range []int{1, 2, 3, 7} {
		many := make([]int, 30) // more distinct weights than kineticGroups
		for i := range many {
			many[i] = 10 + i
		}
		for _, ws := range [][]int{{1, 2, 7}, slices.Repeat([]int{100}, 100), {5, 5, 5, 1, 1, 0}, many} {
			eps := weightedEndpoints(ws...)
			b := WeightedRoundRobin()()
			total := 0
			for _, w := range ws {
				total += w
			}
			const n = 30000
			counts := make([]int, len(eps))
			for k := 0; k < n; k += every {
				c := countPicks(t, b.Build(slices.Clone(eps)), eps, every)
				for i := range c {
					counts[i] += c[i]
				}
			}
			for i, c := range counts {
				want := float64(ws[i]) / float64(total)
				if got := float64(c) / n; math.Abs(got-want) > 0.01 {
					t.Errorf("Build every %d picks, weights %v: endpoint %d got %.4f of the calls, want %.4f", every, ws[:min(len(ws), 6)], i, got, want)
					break
				}
			}
		}
	}
}

// TestWRRKineticMatchesScan: the kinetic tree picks exactly what nginx's
// scan picks, ties included, from random starting values summing to 0,
// past a rebase of its lazy clock.
func TestWRRKineticMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 30 {
		n := kineticGroups + r.IntN(60)
		groups := make([]wrrGroup, n)
		var total, sum int64
		for i := range groups {
			groups[i].w = int64(1+r.IntN(12)) * weightScale // many equal weights: ties
			total += groups[i].w
		}
		for i := range groups[1:] {
			groups[i+1].cur = r.Int64N(2*total) - total
			sum += groups[i+1].cur
		}
		groups[0].cur = -sum
		scan := slices.Clone(groups)
		k := newWRRKinetic(groups, total)
		picks := 5000
		if round == 0 {
			picks = wrrRebase + 5000
		}
		for p := range picks {
			best := 0
			for i := range scan {
				scan[i].cur += scan[i].w
				if scan[i].cur > scan[best].cur {
					best = i
				}
			}
			scan[best].cur -= total
			if got := k.pick(); got != best {
				t.Fatalf("round %d, pick %d: kinetic picked group %d, the scan %d", round, p, got, best)
			}
		}
		k.sync(groups)
		for i := range groups {
			if groups[i].cur != scan[i].cur {
				t.Fatalf("round %d: group %d current value %d after sync, the scan's %d", round, i, groups[i].cur, scan[i].cur)
			}
		}
	}
}
