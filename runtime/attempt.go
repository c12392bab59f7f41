package runtime

import (
	"context"
	"errors"
	"time"
)

// One attempt of a call: a connection to the chosen endpoint (dialled if
// needed, client.go), the request on it (clientconn.go), and how it ended
// (outcome), which the fail mode acts on and the endpoint's health records
// (health.go).

// attempt makes one attempt of a call on ep and records its outcome.
// done, if not nil, is the picker's Done for the attempt.
func (r *Reference) attempt(ctx context.Context, ep *endpoint, done func(DoneInfo), method, short string, req, reply any, n int) (o outcome, err error) {
	c := r.cl
	obs := c.cfg.resilience.observer
	if obs != nil {
		obs(Event{Kind: EventAttempt, Addr: ep.addr, Method: method, Attempt: n})
	}
	var (
		as     *attemptStats // nil unless the client has a stats handler: stats.go
		asN    int
		asTime time.Time
	)
	if c.cfg.stats != nil {
		as, asN, asTime = attemptBegin(ctx, ep.addr)
	}
	start := ep.load.begin()
	o, err = r.try(ctx, ep, method, short, req, reply)
	if err != nil && errors.Is(err, errV1Server) {
		// The provider speaks version 1 and ran nothing sent on that
		// connection: dial it again, without settings this time
		// (Client.speaksV1), and send the call again, once.
		o, err = r.try(ctx, ep, method, short, req, reply)
	}
	lat := ep.load.end(start, faulty(o, err))
	if done != nil {
		done(DoneInfo{Err: err, Latency: lat})
	}
	c.noteOutcome(ep, o)
	if as != nil {
		as.attemptEnd(asTime, ep.addr, asN, err)
	}
	if obs != nil {
		obs(Event{Kind: EventAttemptDone, Addr: ep.addr, Method: method, Attempt: n, Err: err})
	}
	return o, err
}

// try gets a connection to ep and makes the call on it.
func (r *Reference) try(ctx context.Context, ep *endpoint, method, short string, req, reply any) (outcome, error) {
	cc, cerr := ep.conn(ctx, r.cl)
	if cerr == nil {
		return cc.invoke(ctx, r.keyStr, method, short, req, reply)
	}
	switch {
	case errors.Is(cerr, ErrClientClosed):
		return outLocal, cerr
	case ctx.Err() == nil:
		return outNoConn, cerr
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return outTimeout, cerr
	}
	return outLocal, cerr
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
