package runtime

import (
	"context"
	"math/rand/v2"
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
// tried at once without being flooded. One pick in 1,024 takes the worse
// of its two, so that an endpoint that loses every comparison (a slow one)
// has its latency measured again now and then and gets traffic back when
// it recovers (the latency average weighs each new attempt 1/8, so that
// takes a few such picks). Picks write nothing shared: concurrent callers
// do not contend.
//
// The counters are the client's, per address, so references of one client
// share what they learn. LeastLoaded ignores weights. It suits services
// whose providers differ in speed or load (other consumers, noisy hosts, a
// slow zone); with identical providers it spreads calls about evenly, but
// not in RoundRobin's exact rotation.
func LeastLoaded() BalancerFactory {
	return func() Balancer { return p2cBalancer{} }
}

type p2cBalancer struct{}

func (p2cBalancer) Build(eps []*Endpoint) Picker { return p2cPicker(eps) }

type p2cPicker []*Endpoint

// exploreMask selects the picks (1 in 1,024) that take the worse endpoint.
const exploreMask = 1<<10 - 1

func (p p2cPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	n := uint64(len(p))
	if n == 1 {
		return PickResult{Endpoint: p[0]}, nil
	}
	// Two distinct indexes (multiply-shift on 21 bits each, for up to 2^21
	// endpoints) and the exploration draw (the low 10 bits) from one random
	// number.
	r := rand.Uint64()
	var a, b uint64
	if n <= 1<<21 {
		a = ((r >> 43) * n) >> 21
		b = (((r >> 22) & (1<<21 - 1)) * (n - 1)) >> 21
	} else {
		a, b = rand.N(n), rand.N(n-1)
	}
	if b >= a {
		b++
	}
	x, y := p[a], p[b]
	if better(y, x) != (r&exploreMask == 0) {
		x = y
	}
	return PickResult{Endpoint: x}, nil
}

// better reports whether x is a strictly better choice than y.
func better(x, y *Endpoint) bool {
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
