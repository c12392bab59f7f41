package runtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Passive health checking: see EjectionPolicy for the behaviour.
//
// Each endpoint (provider address, shared by every reference of a client
// that lists it) counts consecutive faults without locking. Reaching the
// threshold takes Client.mu, checks the ejection cap of every reference that
// lists the address, marks it ejected and rebuilds those references' live
// lists; balancers only ever see a live list, so a successful call pays one
// atomic load (to see that there is no fault count to reset) and nothing
// else. A timer probes an ejected endpoint with a ping frame when its
// back-off ends.

// EjectionPolicy configures passive health checking ("outlier ejection"):
// how a client stops sending calls to a provider address that fails.
//
// Every provider address a client calls has a count of consecutive faults:
// connections that could not be made or that broke under a call, and calls
// that timed out waiting for the provider (the caller's deadline passed, or
// the provider answered CodeDeadlineExceeded). A reply of any other kind,
// success or error, resets the count. When it reaches ConsecutiveFailures,
// the address is ejected: the references that list it stop choosing it for
// calls, for a back-off period that starts at BaseBackoff and doubles with
// each ejection that follows a failed probe, up to MaxBackoff, with jitter
// (each period is drawn from [d/2, d]). When the period ends the client
// probes the address with a ping frame on its connection (dialling one if
// needed), bounded by ProbeTimeout: if the pong arrives the address takes
// full traffic again, otherwise it stays ejected for the next period. An
// address that stays healthy for MaxBackoff after being readmitted starts
// again from BaseBackoff when it is next ejected.
//
// Ejection never leaves a reference without instances to call: an address
// is not ejected if that would take more than MaxEjectedPercent of the
// instances of any reference that lists it out of rotation (so a reference
// with one instance never ejects it, and one with three ejects at most one
// at a time with the default of 50). If the list changes so that more are
// ejected than allowed, the first ones in the list are called anyway.
//
// Probes and ejections cost nothing on the path of a successful call: each
// reference keeps the list of instances it chooses from, rebuilt when an
// address is ejected or readmitted.
type EjectionPolicy struct {
	// ConsecutiveFailures is the number of consecutive faults that eject an
	// address (default 5). A negative value turns ejection off.
	ConsecutiveFailures int
	// BaseBackoff is the first ejection period (default 500ms).
	BaseBackoff time.Duration
	// MaxBackoff caps the ejection period (default 5s, or BaseBackoff if
	// that is longer). It must not be shorter than BaseBackoff.
	MaxBackoff time.Duration
	// ProbeTimeout bounds a probe (default 1s).
	ProbeTimeout time.Duration
	// MaxEjectedPercent is the largest share of a reference's instances
	// that may be out of rotation at once, 0-100 (default 50; 0 means the
	// default). With 100, a reference whose instances are all ejected calls
	// all of them.
	MaxEjectedPercent int
}

// DefaultEjectionPolicy is the policy a client uses unless WithEjection
// says otherwise.
var DefaultEjectionPolicy = EjectionPolicy{
	ConsecutiveFailures: 5,
	BaseBackoff:         500 * time.Millisecond,
	MaxBackoff:          5 * time.Second,
	ProbeTimeout:        time.Second,
	MaxEjectedPercent:   50,
}

// withDefaults fills the zero fields of p from DefaultEjectionPolicy.
func (p EjectionPolicy) withDefaults() EjectionPolicy {
	d := DefaultEjectionPolicy
	if p.ConsecutiveFailures == 0 {
		p.ConsecutiveFailures = d.ConsecutiveFailures
	}
	if p.BaseBackoff <= 0 {
		p.BaseBackoff = d.BaseBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = max(d.MaxBackoff, p.BaseBackoff)
	}
	if p.MaxBackoff < p.BaseBackoff {
		p.MaxBackoff = p.BaseBackoff
	}
	if p.ProbeTimeout <= 0 {
		p.ProbeTimeout = d.ProbeTimeout
	}
	if p.MaxEjectedPercent <= 0 {
		p.MaxEjectedPercent = d.MaxEjectedPercent
	}
	p.MaxEjectedPercent = min(p.MaxEjectedPercent, 100)
	return p
}

// check returns the error of a policy WithEjection cannot take.
func (p EjectionPolicy) check() *Error {
	const opt = "WithEjection"
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"BaseBackoff", p.BaseBackoff}, {"MaxBackoff", p.MaxBackoff}, {"ProbeTimeout", p.ProbeTimeout}} {
		if f.d < 0 {
			return optionError(opt, "%s %v must not be negative (0 means the default)", f.name, f.d)
		}
	}
	if p.MaxEjectedPercent < 0 || p.MaxEjectedPercent > 100 {
		return optionError(opt, "MaxEjectedPercent %d must be 0-100 (0 means the default, %d)", p.MaxEjectedPercent, DefaultEjectionPolicy.MaxEjectedPercent)
	}
	if p.MaxBackoff > 0 {
		base, what := p.BaseBackoff, ""
		if base == 0 {
			base, what = DefaultEjectionPolicy.BaseBackoff, " (the default)"
		}
		if p.MaxBackoff < base {
			return optionError(opt, "MaxBackoff %v is shorter than BaseBackoff %v%s", p.MaxBackoff, base, what)
		}
	}
	return nil
}

// WithEjection sets the client's passive health checking; zero fields take
// the values of DefaultEjectionPolicy. See EjectionPolicy. A negative
// duration, a MaxEjectedPercent outside 0-100, and a MaxBackoff shorter than
// the BaseBackoff (given or default) are errors naming the field.
func WithEjection(p EjectionPolicy) ClientOption {
	if err := p.check(); err != nil {
		return rejectedOption{err}
	}
	return clientFunc(func(c *clientConfig) { c.resilience.ejection = p })
}

// WithoutEjection turns passive health checking off: every listed instance
// is called, however it fails.
func WithoutEjection() ClientOption {
	return clientFunc(func(c *clientConfig) { c.resilience.ejection = EjectionPolicy{ConsecutiveFailures: -1} })
}

// epHealth is the health state of one endpoint.
type epHealth struct {
	fails atomic.Int32 // consecutive faults

	// Guarded by Client.mu.
	ejected    bool
	ejections  int       // ejections since the last healthy period, for the back-off
	readmitted time.Time // when it last took full traffic again
	timer      *time.Timer
}

// noteOutcome updates the endpoint's health after an attempt.
func (c *Client) noteOutcome(ep *endpoint, o outcome) {
	switch o {
	case outReply:
		if ep.health.fails.Load() != 0 {
			ep.health.fails.Store(0)
		}
	case outNoConn, outBroken, outTimeout:
		c.fault(ep)
	}
}

// fault counts a fault of ep and ejects it when the count reaches the
// threshold (and at every further multiple of it while the ejection cap
// keeps it in rotation).
func (c *Client) fault(ep *endpoint) {
	p := &c.cfg.resilience.ejection
	if p.ConsecutiveFailures < 0 {
		return
	}
	n := int(ep.health.fails.Add(1))
	if n < p.ConsecutiveFailures || n%p.ConsecutiveFailures != 0 {
		return
	}
	c.mu.Lock()
	ev, ok := c.ejectLocked(ep, time.Now())
	c.mu.Unlock()
	if ok {
		c.observe(ev)
	}
}

// ejectLocked ejects ep unless it is ejected already, no longer in use, or
// its ejection would exceed the cap of a reference. c.mu must be held.
func (c *Client) ejectLocked(ep *endpoint, now time.Time) (Event, bool) {
	h := &ep.health
	if c.closed || h.ejected || ep.refs <= 0 || c.pool[ep.addr] != ep {
		return Event{}, false
	}
	pct := c.cfg.resilience.ejection.MaxEjectedPercent
	for r := range c.refs {
		st := r.state.Load()
		if st == nil || !st.lists(ep) {
			continue
		}
		if st.ejectedCount()+1 > maxEjected(len(st.eps), pct) {
			return Event{}, false
		}
	}
	h.ejected = true
	return c.scheduleProbeLocked(ep, now), true
}

// scheduleProbeLocked starts the next back-off period of an ejected
// endpoint and rebuilds the references that list it. c.mu must be held.
func (c *Client) scheduleProbeLocked(ep *endpoint, now time.Time) Event {
	h := &ep.health
	p := &c.cfg.resilience.ejection
	if !h.readmitted.IsZero() && now.Sub(h.readmitted) > p.MaxBackoff {
		h.ejections = 0 // healthy for a while: start the back-off over
	}
	d := p.BaseBackoff << min(h.ejections, 30)
	if d <= 0 || d > p.MaxBackoff {
		d = p.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1) // jitter: [d/2, d]
	h.ejections++
	h.readmitted = time.Time{}
	if h.timer != nil {
		h.timer.Stop()
	}
	h.timer = time.AfterFunc(d, func() { c.probe(ep) })
	c.rebuildLocked(ep)
	return Event{Kind: EventEjected, Addr: ep.addr, Backoff: d}
}

// maxEjected is how many of n instances may be out of rotation.
func maxEjected(n, pct int) int { return n * pct / 100 }

// probe pings an ejected endpoint at the end of its back-off period and
// readmits it or starts the next period.
func (c *Client) probe(ep *endpoint) {
	c.mu.Lock()
	if c.closed || !ep.health.ejected || c.pool[ep.addr] != ep {
		c.mu.Unlock()
		return
	}
	c.bg.Add(1)
	c.mu.Unlock()
	defer c.bg.Done()

	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.resilience.ejection.ProbeTimeout)
	err := ep.ping(ctx, c)
	cancel()
	c.observe(Event{Kind: EventProbe, Addr: ep.addr, Err: err})

	now := time.Now()
	c.mu.Lock()
	if c.closed || !ep.health.ejected || c.pool[ep.addr] != ep {
		c.mu.Unlock()
		return
	}
	var ev Event
	if err == nil {
		h := &ep.health
		h.ejected = false
		h.fails.Store(0)
		h.readmitted = now
		h.timer = nil
		c.rebuildLocked(ep)
		ev = Event{Kind: EventReadmitted, Addr: ep.addr}
	} else {
		ev = c.scheduleProbeLocked(ep, now)
	}
	c.mu.Unlock()
	c.observe(ev)
}

// stopHealthLocked stops probing an endpoint that is no longer used. c.mu
// must be held.
func (ep *endpoint) stopHealthLocked() {
	if t := ep.health.timer; t != nil {
		t.Stop()
		ep.health.timer = nil
	}
}

// rebuildLocked installs new live lists in every reference that lists ep.
// c.mu must be held; it serializes every change of a reference's state.
func (c *Client) rebuildLocked(ep *endpoint) {
	for r := range c.refs {
		st := r.state.Load()
		if st == nil || !st.lists(ep) {
			continue
		}
		next := &refState{instances: st.instances, eps: st.eps, ends: st.ends, disabled: st.disabled}
		c.filterLocked(r, next)
		r.state.Store(next)
	}
}

// filterLocked sets st's live list, the endpoints not ejected, plus, if
// more are ejected than the cap allows, the first ejected ones (with
// nothing ejected, or everything, the full list), and builds r's picker
// for it, if st lists any endpoint. c.mu must be held: it serializes the
// calls of Build.
func (c *Client) filterLocked(r *Reference, st *refState) {
	st.live = c.liveLocked(st)
	r.buildRoutesLocked(st)
}

func (c *Client) liveLocked(st *refState) []*Endpoint {
	ejected := st.ejectedCount()
	if ejected == 0 {
		return st.ends
	}
	keep := ejected - maxEjected(len(st.eps), c.cfg.resilience.ejection.MaxEjectedPercent)
	live := make([]*Endpoint, 0, len(st.eps)-max(ejected-keep, 0))
	for i, ep := range st.eps {
		if ep.health.ejected {
			if keep <= 0 {
				continue
			}
			keep--
		}
		live = append(live, st.ends[i])
	}
	if len(live) == 0 {
		return st.ends // MaxEjectedPercent 100: every instance rather than none
	}
	return live
}

// lists reports whether ep is one of st's endpoints.
func (st *refState) lists(ep *endpoint) bool {
	for _, e := range st.eps {
		if e == ep {
			return true
		}
	}
	return false
}

// ejectedCount counts st's ejected endpoints. Client.mu must be held.
func (st *refState) ejectedCount() int {
	n := 0
	for _, ep := range st.eps {
		if ep.health.ejected {
			n++
		}
	}
	return n
}

func (c *Client) observe(ev Event) {
	if f := c.cfg.resilience.observer; f != nil {
		f(ev)
	}
}

// ping sends a ping frame to the endpoint, connecting if needed, and waits
// for the pong.
func (ep *endpoint) ping(ctx context.Context, c *Client) error {
	cc, err := ep.conn(ctx, c)
	if err != nil {
		return err
	}
	return cc.ping(ctx)
}

// ping sends a ping frame and waits for the pong.
func (cc *clientConn) ping(ctx context.Context) error {
	id := cc.nextID.Add(1)
	var fb [headerSize]byte
	typ, body, cerr, ex := cc.exchange(ctx, id, appendHeader(fb[:0], framePing, id, 0), nil, false)
	putBuf(body)
	switch {
	case ex == exCtxDone:
		return ctxError(ctx, "ping "+cc.addr)
	case cerr != nil:
		return cerr
	case typ != framePong:
		return Errorf(CodeInternal, "ping %s: answered with a %s frame", cc.addr, typ)
	}
	return nil
}

// EventKind says what an Event reports.
type EventKind uint8

// The events a client reports to its observer.
const (
	// EventAttempt: an attempt of a call is about to be made on Addr
	// (before connecting, if there is no connection yet).
	EventAttempt EventKind = iota + 1
	// EventAttemptDone: the attempt on Addr ended, with Err (nil on
	// success).
	EventAttemptDone
	// EventEjected: Addr was taken out of rotation for Backoff.
	EventEjected
	// EventProbe: Addr was probed, with the result Err.
	EventProbe
	// EventReadmitted: Addr takes full traffic again.
	EventReadmitted
)

func (k EventKind) String() string {
	switch k {
	case EventAttempt:
		return "attempt"
	case EventAttemptDone:
		return "attempt-done"
	case EventEjected:
		return "ejected"
	case EventProbe:
		return "probe"
	case EventReadmitted:
		return "readmitted"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is something a client did on a provider address, reported to the
// function given to WithObserver.
type Event struct {
	Kind EventKind
	// Addr is the provider address, host:port.
	Addr string
	// Method is the full method name (attempt events only).
	Method string
	// Attempt is the number of the attempt within its call, from 1
	// (attempt events only).
	Attempt int
	// Err is the attempt's or the probe's error.
	Err error
	// Backoff is how long the address stays out of rotation (EventEjected
	// only).
	Backoff time.Duration
}

// WithObserver makes the client report every attempt, ejection, probe and
// readmission to f, for metrics, logs and tests. f is called synchronously
// from the goroutine that makes the call (attempt events) or from the
// client's own goroutines, concurrently, and must be fast and must not call
// into the client. Without an observer nothing is reported and nothing is
// spent on it. A nil f is an error.
func WithObserver(f func(Event)) ClientOption {
	if f == nil {
		return reject("WithObserver", "observer is nil")
	}
	return clientFunc(func(c *clientConfig) { c.resilience.observer = f })
}
