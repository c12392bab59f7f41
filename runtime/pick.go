package runtime

import (
	"context"
	"slices"
)

// How an endpoint is picked: the reference's picker (balancer.go) chooses
// among the live endpoints (those not ejected, see health.go) for the first
// attempt of a call, and, through pickOther, for a retry or a hedged second
// request, which prefer an endpoint the call has not tried.

// pick asks the picker of st, which lists at least one endpoint, for the
// endpoint of a call's first attempt.
func (r *Reference) pick(ctx context.Context, method, hashKey string, st *refState) (*endpoint, func(DoneInfo), error) {
	rt, err := r.routeOf(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	res, err := rt.picker.Pick(ctx, PickInfo{Method: method, HashKey: hashKey, Attempt: 1})
	if err != nil {
		return nil, nil, toError(err)
	}
	if res.Endpoint == nil || res.Endpoint.ep == nil {
		return nil, nil, Errorf(CodeInternal, "balancer picked no endpoint of the %d providers of %s", len(rt.live), r.keyStr)
	}
	return res.Endpoint.ep, res.Done, nil
}

// pickOther chooses the endpoint of attempt n > 1 of a call: the picker's
// choice if the call has not tried it (and it is not avoid); else the
// first live endpoint not tried, else the first endpoint not tried, else
// (unless strict) the picker's choice. It returns nil only if strict and
// there is no other endpoint.
func (r *Reference) pickOther(ctx context.Context, method, hashKey string, st *refState, n int, tried []*endpoint, avoid *endpoint, strict bool) (*endpoint, func(DoneInfo)) {
	rt, rerr := r.routeOf(ctx, st)
	if rerr != nil {
		// The list changed since the first pick and the call's tag has
		// no provider now: stay where the call was rather than cross
		// into another tag's group.
		if strict || len(tried) == 0 {
			return nil, nil
		}
		return tried[len(tried)-1], nil
	}
	excluded := func(ep *endpoint) bool { return ep == avoid || slices.Contains(tried, ep) }
	res, err := rt.picker.Pick(ctx, PickInfo{Method: method, HashKey: hashKey, Attempt: n})
	if err == nil && res.Endpoint != nil && res.Endpoint.ep != nil {
		if !excluded(res.Endpoint.ep) {
			return res.Endpoint.ep, res.Done
		}
		if res.Done != nil {
			res.Done(DoneInfo{Err: errNotTaken})
		}
	}
	for _, list := range [2][]*Endpoint{rt.live, rt.all} {
		for _, e := range list {
			if !excluded(e.ep) {
				return e.ep, nil
			}
		}
	}
	if strict || len(rt.live) == 0 {
		return nil, nil
	}
	if err == nil && res.Endpoint != nil && res.Endpoint.ep != nil {
		return res.Endpoint.ep, nil
	}
	return rt.live[0].ep, nil
}

// errNotTaken is the DoneInfo error of a pick the runtime did not use:
// a retry's pick of an endpoint the call had tried.
var errNotTaken = Errorf(CodeCanceled, "the pick was not used: the call had tried that endpoint")
