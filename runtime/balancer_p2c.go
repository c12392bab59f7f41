package runtime

import (
	"context"
	"math/rand/v2"
	"time"
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
// compared on in-flight attempts alone (this client's, plus the calls in
// flight its provider published, WithLoadReport, if that load is at most
// two minutes old), and wins ties, so new providers are tried at once
// without being flooded, and a busy one less than an idle one. One pick in 1,024 takes the worse
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

// publishedFresh is how old a published load may be and still seed
// LeastLoaded's estimate.
const publishedFresh = 2 * time.Minute

func (p2cBalancer) Build(eps []*Endpoint) Picker {
	var seed []float64
	now := time.Now()
	for i, e := range eps {
		if l, ok := e.PublishedLoad(); ok && l.InFlight > 0 && now.Sub(l.At) < publishedFresh {
			if seed == nil {
				seed = make([]float64, len(eps))
			}
			seed[i] = float64(l.InFlight)
		}
	}
	return p2cPicker{eps: eps, seed: seed}
}

// p2cPicker holds the endpoints and, if any provider published a fresh
// load, the calls it had in flight, by index.
type p2cPicker struct {
	eps  []*Endpoint
	seed []float64
}

func (p p2cPicker) seedOf(i uint64) float64 {
	if p.seed == nil {
		return 0
	}
	return p.seed[i]
}

// exploreMask selects the picks (1 in 1,024) that take the worse endpoint.
const exploreMask = 1<<10 - 1

func (p p2cPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	n := uint64(len(p.eps))
	if n == 1 {
		return PickResult{Endpoint: p.eps[0]}, nil
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
	x, y := p.eps[a], p.eps[b]
	if better(y, x, p.seedOf(b), p.seedOf(a)) != (r&exploreMask == 0) {
		x = y
	}
	return PickResult{Endpoint: x}, nil
}

// better reports whether x is a strictly better choice than y; sx and sy
// are the calls their providers published in flight (0 if none).
func better(x, y *Endpoint, sx, sy float64) bool {
	lx, kx := latencyEstimate(x)
	ly, ky := latencyEstimate(y)
	if !kx || !ky {
		// Without two latencies, compare in-flight attempts alone (with
		// the published ones) and prefer the unknown endpoint on a tie,
		// so it gets tried.
		lx, ly = 1, 1
		cx, cy := cost(x, lx)+sx, cost(y, ly)+sy
		return cx < cy || (cx == cy && !kx && ky)
	}
	return cost(x, lx) < cost(y, ly)
}

// latencyEstimate returns the latency LeastLoaded expects of an attempt
// on e, in ns, and whether it knows one.
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
