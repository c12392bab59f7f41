package runtime

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Weighted balancing. Both balancers read Endpoint.Weight, the weight the
// provider registered (runtime.WithWeight, registry.DefaultWeight without
// it). An endpoint of weight 0 takes no calls while another endpoint has a
// weight; if every weight is 0 they all take an equal share (a fleet
// drained by mistake still answers). Internally weights are scaled by
// weightScale so that warm-up (WithWarmUp) can ramp even a weight of 1.

// weightScale scales registered weights, so that a warming endpoint's
// fraction of its weight is not rounded away.
const weightScale = 1000

// maxWeight caps the weights the balancers use, so that scaled sums cannot
// overflow: a weight above it counts as maxWeight.
const maxWeight = 1_000_000

// WeightedOption configures WeightedRoundRobin and WeightedRandom.
type WeightedOption func(*weightedConfig)

type weightedConfig struct {
	warmUp time.Duration
	now    func() time.Time // the clock of warm-up; tests replace it
}

func newWeightedConfig(opts []WeightedOption) weightedConfig {
	c := weightedConfig{now: time.Now}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// WeightedRoundRobin returns a factory of balancers that spread calls in
// proportion to the endpoints' weights, in the smooth order of nginx's
// weighted round-robin: with weights 5:1:1 the order is a a b a c a a, not
// a a a a a b c, so no endpoint gets a burst of consecutive calls (the
// tests check that in any k consecutive picks an endpoint of weight w out
// of a total W gets at most ceil(w/W·k)+1). It is deterministic: n·W calls
// give each endpoint exactly n·w. Use it when providers differ in capacity (bigger machines, a canary
// at 1%, a provider being drained with weight 0) and the calls are alike.
//
// A pick takes a short mutex. Endpoints of equal weight share one slot of
// the schedule and take its turns in round-robin order, so a thousand
// providers of the default weight cost as much as one; with up to 15
// distinct weights a pick scans them, beyond that a kinetic tournament
// tree finds the same pick in O(log² d) for d distinct weights. A list
// change continues the schedule rather than restarting it. Weights above
// 1,000,000 count as 1,000,000.
func WeightedRoundRobin(opts ...WeightedOption) BalancerFactory {
	cfg := newWeightedConfig(opts)
	return func() Balancer { return &weightedBalancer{cfg: cfg, rr: true} }
}

// WeightedRandom returns a factory of balancers that pick each endpoint at
// random with a probability proportional to its weight, by binary search
// over cumulative weights (O(log n), lock-free). Compared with
// WeightedRoundRobin it keeps no shared state between calls, so many
// consumers starting at once do not fall into step, at the price of
// random deviations over short runs (of the order of √n calls over n).
func WeightedRandom(opts ...WeightedOption) BalancerFactory {
	cfg := newWeightedConfig(opts)
	return func() Balancer { return &weightedBalancer{cfg: cfg} }
}

// weightedBalancer builds both pickers; it remembers when it first saw each
// endpoint, for warm-up.
type weightedBalancer struct {
	cfg  weightedConfig
	rr   bool
	seen seenTimes  // warmup.go
	last *wrrPicker // the last round-robin picker built
}

func (b *weightedBalancer) Build(eps []*Endpoint) Picker {
	ws := b.weights(eps)
	if b.rr {
		p := &wrrPicker{}
		p.warm.init(ws, b.cfg)
		if last := b.last; last != nil {
			// Continue the previous picker's schedule, so that frequent
			// list changes do not send every first pick to the heaviest
			// endpoints, nor restart a group at its first endpoint.
			last.mu.Lock()
			p.groups = slices.Clone(last.snapshot())
			last.mu.Unlock()
		}
		p.rebuild(p.warm.now())
		b.last = p
		return p
	}
	p := &wrandPicker{}
	p.warm.init(ws, b.cfg)
	p.table.Store(p.makeTable(p.warm.now()))
	return p
}

// weightedEP is an endpoint with its full scaled weight and, if it warms
// up, when its warm-up started.
type weightedEP struct {
	ep    *Endpoint
	w     int64 // scaled
	start int64 // when its warm-up started, clock Unix ns; 0: warm
}

// weights returns eps with their scaled weights: 0 for weight 0 unless
// every weight is 0, then all equal.
func (b *weightedBalancer) weights(eps []*Endpoint) []weightedEP {
	ws := make([]weightedEP, len(eps))
	hasWeight := false
	for i, e := range eps {
		ws[i] = weightedEP{ep: e, w: int64(min(e.Weight(), maxWeight)) * weightScale}
		hasWeight = hasWeight || ws[i].w > 0
	}
	if !hasWeight {
		for i := range ws {
			ws[i].w = weightScale
		}
	}
	if b.cfg.warmUp > 0 {
		b.seen.starts(ws, b.cfg)
	}
	return ws
}

// wrrPicker is nginx's smooth weighted round-robin over groups of
// endpoints of equal (effective) weight: per pick every group's current
// value grows by its weight (the endpoint weight times its size), the
// largest wins and loses the total, and the winning group hands out its
// endpoints in turn.
type wrrPicker struct {
	warm warmState // warmup.go

	mu     sync.Mutex
	groups []wrrGroup
	total  int64
	kt     *wrrKinetic // with many groups: the groups' current values
}

// kineticGroups is the number of groups from which the picker schedules
// with a wrrKinetic (O(log² g)) rather than a scan (O(g)).
const kineticGroups = 16

// snapshot returns the groups with their current values. p.mu must be
// held.
func (p *wrrPicker) snapshot() []wrrGroup {
	if p.kt != nil {
		p.kt.sync(p.groups)
	}
	return p.groups
}

type wrrGroup struct {
	w    int64 // the group's weight: ew × the number of its endpoints
	ew   int64 // the weight of each of its endpoints
	cur  int64
	next int
	eps  []*Endpoint
}

// rebuild recomputes the groups from the effective weights at now.
// p.mu must be held, or p not yet shared.
func (p *wrrPicker) rebuild(now time.Time) {
	ws := p.warm.weights(now)
	order := make([]int, 0, len(ws))
	equal := true
	for i, w := range ws {
		if w > 0 {
			equal = equal && (len(order) == 0 || w == ws[order[0]])
			order = append(order, i)
		}
	}
	// Largest weight first, then list order: ties go to the first group,
	// and a group keeps its endpoints in the registry's order.
	if !equal {
		slices.SortFunc(order, func(a, b int) int {
			if c := cmp.Compare(ws[b], ws[a]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
	}
	all := make([]*Endpoint, len(order)) // the groups' endpoints, in one array
	old := p.snapshot()
	p.groups = make([]wrrGroup, 0, len(old)+1)
	p.total = 0
	start, o := 0, 0
	var sum int64
	for j, i := range order {
		all[j] = p.warm.eps[i].ep
		p.total += ws[i]
		if j+1 == len(order) || ws[order[j+1]] != ws[i] {
			n := j + 1 - start
			g := wrrGroup{w: ws[i] * int64(n), ew: ws[i], eps: all[start : j+1 : j+1]}
			// A group of the same endpoint weight before the rebuild (both
			// lists are by decreasing weight) passes on its state.
			for o < len(old) && old[o].ew > g.ew {
				o++
			}
			if o < len(old) && old[o].ew == g.ew {
				g.cur, g.next = old[o].cur, old[o].next%n
			}
			sum += g.cur
			p.groups = append(p.groups, g)
			start = j + 1
		}
	}
	// nginx's schedule keeps the current values summing to 0; groups that
	// came or went break that, so spread the difference.
	if sum != 0 && len(p.groups) > 0 {
		d := sum / int64(len(p.groups))
		for i := range p.groups {
			p.groups[i].cur -= d
		}
		p.groups[0].cur -= sum - d*int64(len(p.groups))
	}
	p.kt = nil
	if len(p.groups) >= kineticGroups && p.total < 1<<42 {
		p.kt = newWRRKinetic(p.groups, p.total)
	}
}

func (p *wrrPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	p.mu.Lock()
	if p.warm.due() {
		p.rebuild(p.warm.now())
	}
	var g *wrrGroup
	if p.kt != nil {
		g = &p.groups[p.kt.pick()]
	} else {
		best := 0
		for i := range p.groups {
			g := &p.groups[i]
			g.cur += g.w
			if g.cur > p.groups[best].cur {
				best = i
			}
		}
		g = &p.groups[best]
		g.cur -= p.total
	}
	e := g.eps[g.next]
	if g.next++; g.next == len(g.eps) {
		g.next = 0
	}
	p.mu.Unlock()
	return PickResult{Endpoint: e}, nil
}

// wrandPicker picks at random over cumulative weights; warm-up swaps in a
// new table.
type wrandPicker struct {
	warm  warmState
	mu    sync.Mutex // serializes rebuilds
	table atomic.Pointer[wrandTable]
}

type wrandTable struct {
	cum   []int64 // cum[i] = sum of the weights of eps[:i+1]
	eps   []*Endpoint
	total int64
}

func (p *wrandPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	if p.warm.due() && p.mu.TryLock() {
		if p.warm.due() {
			p.table.Store(p.makeTable(p.warm.now()))
		}
		p.mu.Unlock()
	}
	t := p.table.Load()
	r := rand.Int64N(t.total)
	// The first i with cum[i] > r.
	lo, hi := 0, len(t.cum)-1
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.cum[m] > r {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return PickResult{Endpoint: t.eps[lo]}, nil
}

func (p *wrandPicker) makeTable(now time.Time) *wrandTable {
	ws := p.warm.weights(now)
	t := &wrandTable{cum: make([]int64, 0, len(ws)), eps: make([]*Endpoint, 0, len(ws))}
	for i, w := range ws {
		if w <= 0 {
			continue
		}
		t.total += w
		t.cum = append(t.cum, t.total)
		t.eps = append(t.eps, p.warm.eps[i].ep)
	}
	return t
}
