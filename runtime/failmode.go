package runtime

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// maxAttempts bounds how many instances one call tries when a provider
// provably did not run it.
const maxAttempts = 3

// invoke is the reference's UnaryInvoker: a call with the reference's fail
// mode.
func (r *Reference) invoke(ctx context.Context, method string, req, reply any) (any, error) {
	return r.call(ctx, method, req, reply, nil)
}

// call makes a call: locally if the service is exported in this process,
// otherwise with the fail mode of cc (the call's options, nil if none) or
// of the reference.
func (r *Reference) call(ctx context.Context, method string, req, reply any, cc *callConfig) (any, error) {
	if !strings.HasPrefix(method, r.prefix) || len(method) == len(r.prefix) {
		return nil, Errorf(CodeInvalidArgument, "method %q does not belong to service %s", method, r.key.Service)
	}
	short := method[len(r.prefix):]
	if !r.remote && localCount.Load() > 0 {
		if exp := lookupLocal(r.keyStr); exp != nil {
			return exp.invokeLocal(ctx, method, short, req)
		}
	}
	mode := r.fail
	if cc != nil && cc.resilience.fail.kind != failUnset {
		mode = cc.resilience.fail
	}
	if mode.kind == failBackup && r.idempotent(method, cc) {
		if reply2 := newReply(reply); reply2 != nil {
			return r.hedge(ctx, method, short, req, reply, reply2, mode.delay)
		}
	}
	out, err, n, o := r.run(ctx, method, short, req, reply, mode, cc, nil)
	if err != nil {
		return out, r.failed(method, n, o, err)
	}
	return out, nil
}

// idempotent reports whether a call of method may be retried after it may
// have run: the call was made WithIdempotent, the reference names the
// method in WithIdempotentMethods, or the method is registered as
// idempotent (RegisterMethods, called by generated code).
func (r *Reference) idempotent(method string, cc *callConfig) bool {
	if cc != nil && cc.resilience.idempotent {
		return true
	}
	if r.idempotentMethods[method] {
		return true
	}
	return registeredIdempotent(method)
}

// run makes attempts of a call until one succeeds, the failure is final or
// the retries are spent. first, if not nil, is the endpoint of the first
// attempt instead of the selector's choice. It returns the number of
// attempts made and the outcome of the last; the caller turns the error into
// the call's with failed.
func (r *Reference) run(ctx context.Context, method, short string, req, reply any, mode FailMode, cc *callConfig, first *endpoint) (out any, err error, attempts int, o outcome) {
	var (
		tried   []*endpoint // endpoints that failed, once one has
		next    = first     // the endpoint of the next attempt, if fixed
		notRun  int         // retries of calls that provably did not run
		retried int         // retries made by the fail mode
	)
	for {
		st := r.state.Load()
		if st == nil || len(st.instances) == 0 {
			if r.closed.Load() {
				return nil, wrapError(CodeCanceled, ErrClientClosed, "call %s: reference is closed", method), attempts, outLocal
			}
			if err == nil {
				err, o = wrapError(CodeUnavailable, ErrNoProvider, "no provider for %s", r.keyStr), outNotRun
			}
			return nil, err, attempts, o
		}
		ep := next
		next = nil
		if ep == nil {
			if tried == nil {
				i := r.selector.Select(ctx, method, st.live)
				if i < 0 || i >= len(st.live) {
					return nil, Errorf(CodeInternal, "selector returned index %d for %d providers of %s", i, len(st.live), r.keyStr), attempts, outLocal
				}
				ep = st.liveEps[i]
			} else {
				ep = r.pickOther(ctx, method, st, tried, nil, false)
			}
		}
		attempts++
		out, err, o = r.attempt(ctx, ep, method, short, req, reply, attempts)
		if err == nil {
			return out, nil, attempts, o
		}
		if ctx.Err() != nil {
			return out, err, attempts, o
		}
		switch o {
		case outNotRun, outNoConn:
			// Safe for any method: send it elsewhere.
			if notRun < max(1, min(len(st.instances), maxAttempts)-1) {
				notRun++
				tried = append(tried, ep)
				continue
			}
		case outBroken, outClosing, outReply:
			if (o != outReply || CodeOf(err) == CodeUnavailable) && retried < mode.retries() && r.idempotent(method, cc) {
				retried++
				if mode.kind == failTry {
					next = ep
				} else {
					tried = append(tried, ep)
				}
				continue
			}
		}
		return out, err, attempts, o
	}
}

// attempt makes one attempt of a call on ep and records its outcome.
func (r *Reference) attempt(ctx context.Context, ep *endpoint, method, short string, req, reply any, n int) (out any, err error, o outcome) {
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
		out, err, o = cc.invoke(ctx, r.keyStr, method, short, req, reply)
	}
	c.noteOutcome(ep, o)
	if obs != nil {
		obs(Event{Kind: EventAttemptDone, Addr: ep.addr, Method: method, Attempt: n, Err: err})
	}
	return out, err, o
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

// failed returns the error of a call whose last attempt failed with err: a
// CodeUnavailable error naming the method, the service key and the number
// of attempts when the call could not reach a provider that answered it,
// and err as it is otherwise (a handler's error, a deadline, a
// cancellation).
func (r *Reference) failed(method string, attempts int, o outcome, err error) error {
	if attempts == 0 || CodeOf(err) != CodeUnavailable || (o == outReply && attempts == 1) {
		return err
	}
	msg := err.Error()
	var e *Error
	if errors.As(err, &e) {
		msg = e.Message
	}
	n := "1 attempt"
	if attempts != 1 {
		n = strconv.Itoa(attempts) + " attempts"
	}
	return wrapError(CodeUnavailable, err, "call %s to %s failed after %s; last: %s", method, r.keyStr, n, msg)
}

// retryable reports whether a failed attempt with outcome o and error err
// may be retried, for an idempotent method, by a fail mode.
func retryable(o outcome, err error) bool {
	switch o {
	case outNotRun, outNoConn, outBroken, outClosing:
		return true
	case outReply:
		return CodeOf(err) == CodeUnavailable
	}
	return false
}

// newReply returns a new, empty value of reply's type, for a second request
// to decode into, or nil if reply is not a non-nil pointer.
func newReply(reply any) any {
	v := reflect.ValueOf(reply)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	return reflect.New(v.Type().Elem()).Interface()
}

// hedge runs a call under Failbackup: see there.
func (r *Reference) hedge(ctx context.Context, method, short string, req, reply, reply2 any, delay time.Duration) (any, error) {
	st := r.state.Load()
	if st == nil || len(st.instances) == 0 {
		out, err, n, o := r.run(ctx, method, short, req, reply, Failfast(), nil, nil)
		if err != nil {
			return out, r.failed(method, n, o, err)
		}
		return out, nil
	}
	i := r.selector.Select(ctx, method, st.live)
	if i < 0 || i >= len(st.live) {
		return nil, Errorf(CodeInternal, "selector returned index %d for %d providers of %s", i, len(st.live), r.keyStr)
	}
	first := st.liveEps[i]

	type result struct {
		out      any
		err      error
		attempts int
		o        outcome
		leg      int
	}
	results := make(chan result, 2)
	var cancels [2]context.CancelFunc
	start := func(leg int, ep *endpoint, reply any) {
		lctx, cancel := context.WithCancel(ctx)
		cancels[leg] = cancel
		go func() {
			out, err, n, o := r.run(lctx, method, short, req, reply, Failfast(), nil, ep)
			results <- result{out, err, n, o, leg}
		}()
	}
	defer func() {
		for _, cancel := range cancels {
			if cancel != nil {
				cancel()
			}
		}
	}()
	start(0, first, reply)
	pending, backupTried := 1, false
	backup := func() {
		if backupTried {
			return
		}
		backupTried = true
		if ep := r.pickOther(ctx, method, r.state.Load(), nil, first, true); ep != nil {
			start(1, ep, reply2)
			pending++
		}
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	attempts := 0
	var last result
	for pending > 0 {
		select {
		case res := <-results:
			pending--
			attempts += res.attempts
			if res.err == nil || ctx.Err() != nil || !retryable(res.o, res.err) {
				// The first reply wins: cancel the other request (a
				// cancel frame stops its handler) and wait for it, so
				// that nothing still writes into a reply.
				if c := cancels[1-res.leg]; c != nil {
					c()
				}
				for ; pending > 0; pending-- {
					<-results
				}
				if res.err != nil {
					return res.out, r.failed(method, attempts, res.o, res.err)
				}
				return res.out, nil
			}
			last = res
			if ctx.Err() == nil {
				backup()
			}
		case <-timer.C:
			backup()
		}
	}
	return last.out, r.failed(method, attempts, last.o, last.err)
}
