package runtime

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
)

// LeastLoaded returns a factory of balancers that use the power of two
// choices: each pick draws two distinct endpoints at random and takes the
// one with the lower expected cost, its EWMA latency × (in-flight attempts
// + 1), raised for an endpoint whose recent attempts failed (divided by the
// square of its success rate). Comparing two random endpoints rather than
// taking the least loaded of all keeps a burst of concurrent picks from
// landing on the same one, and costs the same with 10 or 10,000 endpoints.
//
// An endpoint with no latency yet (new, or not called by this client) is
// compared on in-flight attempts alone, and wins ties, so new providers are
// tried at once without being flooded. An endpoint that loses every
// comparison (a slow one) is still chosen once when it has not been chosen
// for a while (about 1,000 + 16 × n picks), so that its latency is measured
// again and a provider that recovers gets traffic back; the latency average
// weighs each new attempt 1/8, so that takes a few such picks.
//
// The counters are the client's, per address, so references of one client
// share what they learn. LeastLoaded ignores weights. It suits services
// whose providers differ in speed or load (other consumers, noisy hosts, a
// slow zone); with identical providers and uniform calls it does as well as
// RoundRobin.
func LeastLoaded() BalancerFactory {
	return func() Balancer { return p2cBalancer{} }
}

type p2cBalancer struct{}

func (p2cBalancer) Build(eps []*Endpoint) Picker {
	n := len(eps)
	return &p2cPicker{
		eps:   eps,
		last:  make([]atomic.Uint64, n),
		stale: forcePickAfter + 16*uint64(n),
	}
}

// forcePickAfter (plus 16 per endpoint) is how many picks an endpoint may
// go without being chosen before it is chosen anyway.
const forcePickAfter = 1000

// lastSlack is how stale an endpoint's last-chosen mark may get before a
// pick rewrites it: marking every pick would make every pick write to
// memory shared by all the callers.
const lastSlack = 16

type p2cPicker struct {
	eps []*Endpoint
	// seq counts the picks; last[i] is seq when eps[i] was last chosen
	// (give or take lastSlack).
	seq   atomic.Uint64
	last  []atomic.Uint64
	stale uint64
}

func (p *p2cPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	n := uint64(len(p.eps))
	if n == 1 {
		return PickResult{Endpoint: p.eps[0]}, nil
	}
	// Two distinct indexes from one random number (multiply-shift on each
	// half: n < 2^32).
	r := rand.Uint64()
	a := ((r >> 32) * n) >> 32
	b := ((r & 0xffffffff) * (n - 1)) >> 32
	if b >= a {
		b++
	}
	pc, upc := a, b
	if p.better(p.eps[b], p.eps[a]) {
		pc, upc = b, a
	}
	s := p.seq.Add(1)
	if l := p.last[upc].Load(); s-l > p.stale && p.last[upc].CompareAndSwap(l, s) {
		return PickResult{Endpoint: p.eps[upc]}, nil
	}
	if l := p.last[pc].Load(); s-l > lastSlack {
		p.last[pc].Store(s)
	}
	return PickResult{Endpoint: p.eps[pc]}, nil
}

// better reports whether x is a strictly better choice than y.
func (p *p2cPicker) better(x, y *Endpoint) bool {
	lx, kx := latencyEstimate(x)
	ly, ky := latencyEstimate(y)
	if !kx || !ky {
		// Without two latencies, compare in-flight attempts alone and
		// prefer the unknown endpoint on a tie, so it gets tried.
		lx, ly = 1, 1
		cx, cy := cost(x, lx), cost(y, ly)
		return cx < cy || (cx == cy && !kx && ky)
	}
	return cost(x, lx) < cost(y, ly)
}

// latencyEstimate returns the latency LeastLoaded expects of an attempt
// on e, in ns, and whether it knows one. This is where a seed for an
// endpoint the client has not called yet goes (such as the load its
// provider publishes in the registry): return it with true.
func latencyEstimate(e *Endpoint) (float64, bool) {
	if l := e.Latency(); l > 0 {
		return float64(l), true
	}
	return 0, false
}

// cost is the expected cost of one more attempt on e: its latency ×
// (in-flight + 1), divided by the square of its recent success rate, so
// that an endpoint that fails fast (refused connections) does not attract
// the traffic its short latencies would.
func cost(e *Endpoint, lat float64) float64 {
	c := lat * float64(e.InFlight()+1)
	if er := e.ErrorRate(); er > 0 {
		ok := max(1-er, 1.0/1024)
		c /= ok * ok
	}
	return c
}
