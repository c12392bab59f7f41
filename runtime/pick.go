package runtime

import (
	"context"
	"math/rand/v2"
	"sync/atomic"

	"github.com/storks-rpc/storks/registry"
)

// How an instance is picked: the reference's Selector chooses among the
// live instances (those not ejected, see health.go) for the first attempt of
// a call, and pickOther for a retry or a hedged second request.

// pick chooses the endpoint of a call's first attempt: the selector's
// choice among the live instances of st, which lists at least one.
func (r *Reference) pick(ctx context.Context, method string, st *refState) (*endpoint, error) {
	i := r.selector.Select(ctx, method, st.live)
	if i < 0 || i >= len(st.live) {
		return nil, Errorf(CodeInternal, "selector returned index %d for %d providers of %s", i, len(st.live), r.keyStr)
	}
	return st.liveEps[i], nil
}

// pickOther chooses the endpoint of a retry: with the selector, among the
// live instances the call has not tried (and that are not avoid), else
// among all such instances, else (unless strict) among the live ones. It
// returns nil only if strict and there is no other instance.
func (r *Reference) pickOther(ctx context.Context, method string, st *refState, tried []*endpoint, avoid *endpoint, strict bool) *endpoint {
	excluded := func(ep *endpoint) bool {
		if ep == avoid {
			return true
		}
		for _, t := range tried {
			if t == ep {
				return true
			}
		}
		return false
	}
	var cands []registry.Instance
	var eps []*endpoint
	for _, pass := range [2]struct {
		in  []registry.Instance
		eps []*endpoint
	}{{st.live, st.liveEps}, {st.instances, st.eps}} {
		for i, ep := range pass.eps {
			if !excluded(ep) {
				cands = append(cands, pass.in[i])
				eps = append(eps, ep)
			}
		}
		if len(eps) > 0 {
			break
		}
	}
	if len(eps) == 0 {
		if strict {
			return nil
		}
		cands, eps = st.live, st.liveEps
	}
	i := r.selector.Select(ctx, method, cands)
	if i < 0 || i >= len(eps) {
		i = 0
	}
	return eps[i]
}

// Selector picks the instance for one call.
//
// Select is called concurrently from every goroutine that calls through a
// reference, with a non-empty list it must not modify, and returns an index
// into it. A selector value belongs to one reference.
type Selector interface {
	Select(ctx context.Context, method string, instances []registry.Instance) int
}

// Random returns a selector that picks uniformly at random.
func Random() Selector { return randomSelector{} }

type randomSelector struct{}

func (randomSelector) Select(_ context.Context, _ string, in []registry.Instance) int {
	return rand.IntN(len(in))
}

// RoundRobin returns a selector that cycles through the instances in order,
// so that n calls over n instances reach each exactly once.
func RoundRobin() Selector { return &roundRobin{} }

type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Select(_ context.Context, _ string, in []registry.Instance) int {
	return int((r.next.Add(1) - 1) % uint64(len(in)))
}

// WithSelector sets how a reference picks an instance per call (default
// RoundRobin). A nil selector is an error.
func WithSelector(s Selector) ReferOption {
	if isNilValue(s) {
		return reject("WithSelector", "selector is nil")
	}
	return referFunc(func(c *referConfig) { c.selector = s })
}
