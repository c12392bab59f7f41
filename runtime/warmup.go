package runtime

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Warm-up (slow start). A provider that registered less than the window
// ago gets a weight that ramps linearly from 1% of its weight to all of it,
// so that a fresh process (cold caches, empty connection pools to its own
// backends, lazy initialisation) is not handed its full share at once. The age comes from registry.MetadataRegisteredAt, which the
// runtime sets when it registers an export, on the provider's clock.

// WithWarmUp makes WeightedRoundRobin and WeightedRandom ramp up the
// weight of a provider registered less than window ago: its weight is
// max(1% of w, w × age/window), rounded down to a twentieth of w and
// recomputed lazily at most every window/20 (while nobody warms the only
// cost is one atomic load per pick; while someone does, a clock read). For
// example
//
//	storks.WithBalancer(storks.WeightedRoundRobin(storks.WithWarmUp(30 * time.Second)))
//
// Default off; window ≤ 0 turns it off. The registration time is the
// provider's clock, so hosts' clocks may disagree: a time in the future
// counts as age 0 from when this consumer first saw the endpoint, and no
// endpoint warms longer than window after this consumer first saw it. An
// endpoint without a readable registration time (a provider of an older
// Storks, a static:// or direct:// address, another tool's entry) is
// treated as warm: full weight at once.
func WithWarmUp(window time.Duration) WeightedOption {
	return func(c *weightedConfig) { c.warmUp = max(window, 0) }
}

// RegisteredAt returns when the endpoint's provider registered it, from
// its registry.MetadataRegisteredAt (Unix milliseconds, on the provider's
// clock), and false if it has none or it is not a positive integer.
func (e *Endpoint) RegisteredAt() (time.Time, bool) {
	ms, err := strconv.ParseInt(e.inst.Metadata[registry.MetadataRegisteredAt], 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// warmFloor is the share of its weight a warming endpoint starts at.
const warmFloor = 100 // 1/100

// warmSteps is how many times a warming endpoint's weight is recomputed
// over the window.
const warmSteps = 20

// seenTimes remembers when a balancer first saw each endpoint that was
// registered recently (or in the future), for the clock-skew bound; an
// endpoint registered more than a window ago is warm whenever it was first
// seen, so the common case costs no map operation. Build is never
// concurrent, so no lock.
type seenTimes struct {
	first map[seenKey]*seenAt
	gen   uint64
}

type seenKey struct{ id, addr string }

type seenAt struct {
	t   time.Time
	gen uint64
}

// starts sets the warm-up start of each endpoint of ws that is still
// warming, and forgets the endpoints that left the list.
func (s *seenTimes) starts(ws []weightedEP, cfg weightedConfig) {
	now := cfg.now()
	s.gen++
	for i := range ws {
		reg, ok := ws[i].ep.RegisteredAt()
		if !ok || now.Sub(reg) >= cfg.warmUp {
			continue // no time, or registered long ago: warm
		}
		in := ws[i].ep.inst
		k := seenKey{in.ID, in.Addr}
		seen := s.first[k]
		if seen == nil {
			if s.first == nil {
				s.first = make(map[seenKey]*seenAt)
			}
			seen = &seenAt{t: now}
			s.first[k] = seen
		}
		seen.gen = s.gen
		start := reg
		if seen.t.Before(start) {
			// A registration time in the future (skew): ramp from when
			// this consumer first saw the endpoint instead.
			start = seen.t
		}
		if now.Sub(start) < cfg.warmUp {
			ws[i].start = start.UnixNano()
		}
	}
	for k, v := range s.first {
		if v.gen != s.gen {
			delete(s.first, k)
		}
	}
}

// warmState is a picker's endpoints with their full weights and warm-up
// starts, and when their effective weights are next due.
type warmState struct {
	eps    []weightedEP
	window time.Duration
	clock  func() time.Time

	active   atomic.Bool  // some endpoint is still warming
	deadline atomic.Int64 // when to recompute, clock Unix ns
}

func (w *warmState) init(eps []weightedEP, cfg weightedConfig) {
	w.eps, w.window, w.clock = eps, cfg.warmUp, cfg.now
}

func (w *warmState) now() time.Time { return w.clock() }

// due reports whether the effective weights should be recomputed: some
// endpoint warms and the deadline has passed.
func (w *warmState) due() bool {
	return w.active.Load() && w.clock().UnixNano() >= w.deadline.Load()
}

// weights returns the effective weights at now, and sets when they are
// next due.
func (w *warmState) weights(now time.Time) []int64 {
	out := make([]int64, len(w.eps))
	warming := false
	for i, e := range w.eps {
		out[i] = e.w
		if e.start == 0 || e.w == 0 {
			continue
		}
		age := time.Duration(now.UnixNano() - e.start)
		if age >= w.window {
			w.eps[i].start = 0 // warm for good
			continue
		}
		warming = true
		// The ramp goes in warmSteps steps, so that endpoints warming
		// together share a weight (WeightedRoundRobin's cost grows with the
		// number of distinct weights).
		step := int64(max(age, 0) * warmSteps / w.window)
		out[i] = max(e.w*step/warmSteps, e.w/warmFloor, 1)
	}
	if warming {
		w.deadline.Store(now.Add(max(w.window/warmSteps, time.Millisecond)).UnixNano())
	}
	w.active.Store(warming)
	return out
}
