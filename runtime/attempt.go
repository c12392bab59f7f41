package runtime

import (
	"context"
	"errors"
)

// One attempt of a call: a connection to the chosen endpoint (dialled if
// needed, client.go), the request on it (clientconn.go), and how it ended
// (outcome), which the fail mode acts on and the endpoint's health records
// (health.go).

// attempt makes one attempt of a call on ep and records its outcome.
func (r *Reference) attempt(ctx context.Context, ep *endpoint, method, short string, req, reply any, n int) (o outcome, err error) {
	c := r.cl
	obs := c.cfg.resilience.observer
	if obs != nil {
		obs(Event{Kind: EventAttempt, Addr: ep.addr, Method: method, Attempt: n})
	}
	cc, cerr := ep.conn(ctx, c)
	if cerr != nil {
		err = cerr
		switch {
		case errors.Is(cerr, ErrClientClosed):
			o = outLocal
		case ctx.Err() == nil:
			o = outNoConn
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			o = outTimeout
		default:
			o = outLocal
		}
	} else {
		o, err = cc.invoke(ctx, r.keyStr, method, short, req, reply)
	}
	c.noteOutcome(ep, o)
	if obs != nil {
		obs(Event{Kind: EventAttemptDone, Addr: ep.addr, Method: method, Attempt: n, Err: err})
	}
	return o, err
}

// outcome classifies how an attempt ended, for the fail mode and for the
// endpoint's health.
type outcome uint8

const (
	// outReply: the provider replied, with a response or with the
	// handler's error. Healthy.
	outReply outcome = iota
	// outNotRun: the call provably did not run, and not because of a fault
	// of the address: never written on a connection that had broken, or
	// refused unexecuted by a provider that is shutting down or does not
	// export the service.
	outNotRun
	// outNoConn: no connection could be made, so the call did not run. A
	// fault.
	outNoConn
	// outBroken: the connection broke after the request was written: the
	// call may have run. A fault.
	outBroken
	// outClosing: a provider that is shutting down closed the connection
	// after the request was written: the call may have run. Not a fault.
	outClosing
	// outTimeout: the deadline passed while waiting for the provider (or
	// for a connection to it), or the provider answered DeadlineExceeded.
	// The call may have run. A fault.
	outTimeout
	// outLocal: the call failed on this side before anything was sent
	// (context done, encoding, size, client closed). Final.
	outLocal
)
