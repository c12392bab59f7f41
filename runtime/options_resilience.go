package runtime

import (
	"fmt"
	"strings"
	"time"
)

// FailMode is what a call does when an attempt fails. It is an option at
// three levels, each overriding the one before: NewClient (the default for
// every reference), Refer (the default for the reference's calls) and a
// single call (a CallOption passed to a generated method or Invoke). The
// default is Failfast.
//
// Whatever the mode, a call that provably did not run (the connection was
// refused, the request was never written, or the provider answered that the
// handler never ran, as a provider that is shutting down does) is sent to
// another instance, for any method, up to three instances. The modes add
// retries of calls that may have run (the connection broke after the request
// was sent, or the provider answered CodeUnavailable); those are made only
// for idempotent methods: methods whose proto declares idempotency_level
// IDEMPOTENT or NO_SIDE_EFFECTS (generated code registers them, see
// RegisterMethods), methods named with WithIdempotentMethods on the
// reference, and calls made WithIdempotent. A non-idempotent method under
// Failover, Failtry or Failbackup behaves as under Failfast.
//
// Every attempt runs under the call's context: its deadline bounds the call
// as a whole, not each attempt, and no attempt starts once it has passed.
// When every attempt failed with CodeUnavailable, the error is a
// CodeUnavailable *Error naming the method, the service key and the number
// of attempts, and wrapping the last attempt's error, so errors.Is on that
// error's cause (ErrConnClosed, ErrNoProvider, ...) still holds. A deadline
// or a cancellation ends the call with CodeDeadlineExceeded or
// CodeCanceled, and an error the handler returned (other than
// CodeUnavailable) is returned as it is, without retries.
//
// A FailMode is a ClientOption, a ReferOption and a CallOption.
type FailMode struct {
	kind  failKind
	n     int
	delay time.Duration
}

type failKind uint8

const (
	failUnset failKind = iota
	failFast
	failOver
	failTry
	failBackup
)

// Failfast makes one attempt (plus the retries of calls that provably did
// not run, which every mode makes). It is the default.
func Failfast() FailMode { return FailMode{kind: failFast} }

// Failover retries an idempotent method up to retries more times, each time
// on an instance that the call has not tried yet while there is one (and on
// any instance after that). Failover(2) makes at most three attempts that
// may have run. A negative count counts as 0.
func Failover(retries int) FailMode { return FailMode{kind: failOver, n: max(retries, 0)} }

// Failtry retries an idempotent method up to retries more times on the same
// instance, for a provider that is expected to recover from a transient
// failure quickly (a broken connection is dialled again). A negative count
// counts as 0. A call that provably did not run still goes to another
// instance.
func Failtry(retries int) FailMode { return FailMode{kind: failTry, n: max(retries, 0)} }

// Failbackup ("hedging") sends an idempotent call to one instance and, if no
// reply arrived after delay, a second copy of it to another instance; the
// first reply wins, and the other request is cancelled (a cancel frame
// tells its provider to stop the handler). If one of the two fails in a way
// that may be retried before the other replied, the call waits for the
// other; if the first request fails that way before the delay, the second
// is sent at once. A delay of 0 or less sends both at once.
//
// The second request decodes its reply into a new value of the reply's
// type, so the reply Invoke returns may not be the one passed in (generated
// clients use the returned one). Failbackup costs a goroutine per call and,
// after the delay, a second request; the other modes cost nothing until an
// attempt fails.
func Failbackup(delay time.Duration) FailMode {
	return FailMode{kind: failBackup, delay: max(delay, 0)}
}

// String describes the mode, for example "failover(2)".
func (m FailMode) String() string {
	switch m.kind {
	case failFast:
		return "failfast"
	case failOver:
		return fmt.Sprintf("failover(%d)", m.n)
	case failTry:
		return fmt.Sprintf("failtry(%d)", m.n)
	case failBackup:
		return fmt.Sprintf("failbackup(%v)", m.delay)
	}
	return "failfast"
}

// retries is how many attempts that may have run the mode adds.
func (m FailMode) retries() int {
	switch m.kind {
	case failOver, failTry:
		return m.n
	}
	return 0 // Failbackup's second request is made by Reference.hedge
}

func (m FailMode) applyClient(c *clientConfig) { c.resilience.fail = m }
func (m FailMode) applyRefer(c *referConfig)   { c.resilience.fail = m }
func (m FailMode) applyCall(c *callConfig)     { c.resilience.fail = m }

// clientResilience is the part of clientConfig this file owns.
type clientResilience struct {
	fail           FailMode
	defaultTimeout time.Duration
	ejection       EjectionPolicy
	observer       func(Event)
}

// referResilience is the part of referConfig this file owns.
type referResilience struct {
	fail           FailMode
	defaultTimeout time.Duration
	timeoutSet     bool
	idempotent     []string
}

// callResilience is the part of callConfig this file owns.
type callResilience struct {
	fail       FailMode
	idempotent bool
}

func (c callResilience) set() bool { return c.fail.kind != failUnset || c.idempotent }

type defaultTimeoutOption time.Duration

func (o defaultTimeoutOption) applyClient(c *clientConfig) {
	c.resilience.defaultTimeout = time.Duration(o)
}

func (o defaultTimeoutOption) applyRefer(c *referConfig) {
	c.resilience.defaultTimeout, c.resilience.timeoutSet = time.Duration(o), true
}

// WithDefaultTimeout gives every call whose context has no deadline a
// deadline d after the call starts (before client interceptors run, so they
// see it). On a Client it applies to every reference; on a reference it
// overrides the client's. 0 (the default) leaves such calls without a
// deadline; a negative d counts as 0. The default costs a timer per call
// that has no deadline of its own, and nothing for calls that have one.
func WithDefaultTimeout(d time.Duration) interface {
	ClientOption
	ReferOption
} {
	return defaultTimeoutOption(max(d, 0))
}

// WithIdempotent marks one call as idempotent: the fail mode may retry it
// even if its method is not registered as idempotent. Use it for methods
// that are idempotent for some requests only.
func WithIdempotent() CallOption {
	return callFunc(func(c *callConfig) { c.resilience.idempotent = true })
}

// WithIdempotentMethods marks methods of the referred service as idempotent
// for the reference's fail mode, for services without generated code (or
// whose proto does not declare an idempotency_level). A method is its full
// name, "/package.Service/Method", or its name alone, "Method". Methods of
// generated services whose proto declares idempotency_level IDEMPOTENT or
// NO_SIDE_EFFECTS are idempotent without this option.
func WithIdempotentMethods(methods ...string) ReferOption {
	return referFunc(func(c *referConfig) {
		c.resilience.idempotent = append(c.resilience.idempotent, methods...)
	})
}

// normalizeMethods turns the names given to WithIdempotentMethods into full
// method names of service.
func normalizeMethods(service string, methods []string) map[string]bool {
	if len(methods) == 0 {
		return nil
	}
	m := make(map[string]bool, len(methods))
	for _, name := range methods {
		if !strings.HasPrefix(name, "/") {
			name = "/" + service + "/" + name
		}
		m[name] = true
	}
	return m
}

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
	// MaxBackoff caps the ejection period (default 5s).
	MaxBackoff time.Duration
	// ProbeTimeout bounds a probe (default 1s).
	ProbeTimeout time.Duration
	// MaxEjectedPercent is the largest share of a reference's instances
	// that may be out of rotation at once (default 50; 0 means the
	// default, and a value over 100 counts as 100). With 100, a reference
	// whose instances are all ejected calls all of them.
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

// WithEjection sets the client's passive health checking; zero fields take
// the values of DefaultEjectionPolicy. See EjectionPolicy.
func WithEjection(p EjectionPolicy) ClientOption {
	return clientFunc(func(c *clientConfig) { c.resilience.ejection = p })
}

// WithoutEjection turns passive health checking off: every listed instance
// is called, however it fails.
func WithoutEjection() ClientOption {
	return clientFunc(func(c *clientConfig) { c.resilience.ejection = EjectionPolicy{ConsecutiveFailures: -1} })
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
// spent on it.
func WithObserver(f func(Event)) ClientOption {
	return clientFunc(func(c *clientConfig) { c.resilience.observer = f })
}
