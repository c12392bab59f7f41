package runtime

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// The call policy: what a call does when an attempt fails (FailMode), which
// methods may be retried after they may have run (BindService,
// WithIdempotentMethods, WithIdempotent), and the default deadline.
// Reference.call, reached from Invoke (reference.go), runs a call locally
// (local.go) or through run or hedge, which make the attempts (attempt.go)
// on the instances pick.go chooses.

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
// IDEMPOTENT or NO_SIDE_EFFECTS, called through their generated client
// (which binds the reference to the service's descriptor, see
// BindService), methods named with WithIdempotentMethods on the reference,
// and calls made WithIdempotent. A non-idempotent method under Failover,
// Failtry or Failbackup behaves as under Failfast.
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
// A FailMode is a PolicyOption (NewClient and Refer accept it) and a
// CallOption. An invalid mode, such as Failover(-1) or Failbackup(0), fails
// the constructor or call it is given to with an error naming Failover or
// Failbackup. The zero FailMode sets nothing: the level above applies.
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
// may have run. A negative count is an error.
func Failover(retries int) FailMode { return FailMode{kind: failOver, n: retries} }

// Failtry retries an idempotent method up to retries more times on the same
// instance, for a provider that is expected to recover from a transient
// failure quickly (a broken connection is dialled again). A negative count
// is an error. A call that provably did not run still goes to another
// instance.
func Failtry(retries int) FailMode { return FailMode{kind: failTry, n: retries} }

// Failbackup ("hedging") sends an idempotent call to one instance and, if no
// reply arrived after delay, a second copy of it to another instance; the
// first reply wins, and the other request is cancelled (a cancel frame
// tells its provider to stop the handler). If one of the two fails in a way
// that may be retried before the other replied, the call waits for the
// other; if the first request fails that way before the delay, the second
// is sent at once. The delay must be positive: a zero delay, which would
// send every idempotent call twice, is an error, so that a duration left
// unset in a configuration cannot double the load.
//
// The second request decodes its reply into a new value of the reply's
// type, which is copied into the caller's reply if it wins. Failbackup costs
// a goroutine per call and, after the delay, a second request (and, if that
// one wins, a copy of its reply); the other modes cost nothing until an
// attempt fails.
func Failbackup(delay time.Duration) FailMode {
	return FailMode{kind: failBackup, delay: delay}
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

// check returns the error of an invalid mode, naming its constructor.
func (m FailMode) check() *Error {
	switch {
	case m.kind == failOver && m.n < 0:
		return optionError("Failover", "retries %d must not be negative", m.n)
	case m.kind == failTry && m.n < 0:
		return optionError("Failtry", "retries %d must not be negative", m.n)
	case m.kind == failBackup && m.delay <= 0:
		return optionError("Failbackup", "delay must be positive (got %v)", m.delay)
	}
	return nil
}

func (m FailMode) applyClient(c *clientConfig) {
	if err := m.check(); err != nil {
		c.record(err)
		return
	}
	c.resilience.fail = m
}

func (m FailMode) applyRefer(c *referConfig) {
	if err := m.check(); err != nil {
		c.record(err)
		return
	}
	c.resilience.fail = m
}

func (m FailMode) applyCall(c *callConfig) {
	if err := m.check(); err != nil {
		c.record(err)
		return
	}
	c.resilience.fail = m
}

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
// deadline; a negative d is an error. The default costs a timer per call
// that has no deadline of its own, and nothing for calls that have one.
func WithDefaultTimeout(d time.Duration) PolicyOption {
	if d < 0 {
		return reject("WithDefaultTimeout", "timeout %v must not be negative (0 means none)", d)
	}
	return defaultTimeoutOption(d)
}

// WithIdempotent marks one call as idempotent: the fail mode may retry it
// even if its method is not known to be idempotent (see FailMode). Use it
// for methods that are idempotent for some requests only.
func WithIdempotent() CallOption {
	return callFunc(func(c *callConfig) { c.resilience.idempotent = true })
}

// WithIdempotentMethods marks methods of the referred service as idempotent
// for the reference's fail mode, for services without generated code (or
// whose proto does not declare an idempotency_level), and for calls made
// with the reference's own Invoke. A method is its full name,
// "/package.Service/Method", or its name alone, "Method". Methods whose
// proto declares idempotency_level IDEMPOTENT or NO_SIDE_EFFECTS are
// idempotent without this option when called through their generated
// client (see BindService). An empty name, a name alone that contains '/',
// and a full name of another service (checked by Refer) are errors.
func WithIdempotentMethods(methods ...string) ReferOption {
	for i, name := range methods {
		if name == "" {
			return reject("WithIdempotentMethods", "method %d is empty", i)
		}
		if full, ok := strings.CutPrefix(name, "/"); ok {
			svc, m, _ := strings.Cut(full, "/")
			if svc == "" || m == "" || strings.Contains(m, "/") {
				return reject("WithIdempotentMethods", "method %q is not \"/package.Service/Method\"", name)
			}
		} else if strings.Contains(name, "/") {
			return reject("WithIdempotentMethods", "method %q is neither \"Method\" nor \"/package.Service/Method\"", name)
		}
	}
	methods = slices.Clone(methods)
	return referFunc(func(c *referConfig) {
		c.resilience.idempotent = append(c.resilience.idempotent, methods...)
	})
}

// checkIdempotentMethods records, for Refer, a full name given to
// WithIdempotentMethods that names a method of another service than
// service, and returns the first error recorded in cfg.
func checkIdempotentMethods(cfg *referConfig, service string) error {
	prefix := "/" + service + "/"
	for _, name := range cfg.resilience.idempotent {
		if strings.HasPrefix(name, "/") && !strings.HasPrefix(name, prefix) {
			cfg.invalid("WithIdempotentMethods", "method %q is not a method of %s", name, service)
		}
	}
	return cfg.err()
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

// maxAttempts bounds how many instances one call tries when a provider
// provably did not run it.
const maxAttempts = 3

// call makes a call: locally if the service is exported in this process,
// otherwise with the fail mode of cc (the call's options, nil if none) or
// of the reference. b is the binding the call was made through, nil if
// none (BindService).
func (r *Reference) call(ctx context.Context, method string, req, reply any, cc *callConfig, b *boundReference) error {
	if !strings.HasPrefix(method, r.prefix) || len(method) == len(r.prefix) {
		return Errorf(CodeInvalidArgument, "method %q does not belong to service %s", method, r.key.Service)
	}
	short := method[len(r.prefix):]
	if !r.remote && localCount.Load() > 0 {
		if exp := lookupLocal(r.keyStr); exp != nil {
			if !r.localNoted.Load() {
				r.noteLocal(false)
			}
			return exp.invokeLocal(ctx, r, method, short, req, reply)
		}
	}
	mode := r.failMode(method)
	if cc != nil && cc.resilience.fail.kind != failUnset {
		mode = cc.resilience.fail
	}
	if cc != nil && cc.resilience.waitForProvider && mode.kind == failBackup {
		if err := r.awaitProvider(ctx, cc); err != nil { // hedge does not see cc
			return err
		}
	}
	if mode.kind == failBackup && r.idempotent(method, cc, b) {
		if reply2 := newReply(reply); reply2 != nil {
			return r.hedge(ctx, method, short, req, reply, reply2, mode.delay, cc.hashKeyOf())
		}
	}
	if n, o, err := r.run(ctx, method, short, req, reply, mode, cc, b, nil, nil); err != nil {
		return r.failed(method, n, o, err)
	}
	return nil
}

// hashKeyOf returns the call's hash key; cc may be nil.
func (cc *callConfig) hashKeyOf() string {
	if cc == nil {
		return ""
	}
	return cc.hashKey
}

// idempotent reports whether a call of method, made through b (nil if
// not made through a binding), may be retried after it may have run: the
// call was made WithIdempotent, or the method is idempotent for b (its
// service's descriptor says so, see BindService) or for the reference
// (WithIdempotentMethods names it; b includes those).
func (r *Reference) idempotent(method string, cc *callConfig, b *boundReference) bool {
	if cc != nil && cc.resilience.idempotent {
		return true
	}
	if b != nil {
		return b.idempotent[method]
	}
	return r.idempotentMethods[method]
}

// run makes attempts of a call until one succeeds, the failure is final or
// the retries are spent. first, if not nil, is the endpoint of the first
// attempt instead of the balancer's choice; cc and b are as for call. It
// returns the number of attempts made and the outcome of the last; the
// caller turns the error into the call's with failed.
func (r *Reference) run(ctx context.Context, method, short string, req, reply any, mode FailMode, cc *callConfig, b *boundReference, first *endpoint, firstDone func(DoneInfo)) (attempts int, o outcome, err error) {
	var (
		tried    []*endpoint // endpoints that failed, once one has
		next     = first     // the endpoint of the next attempt, if fixed
		nextDone = firstDone // and its picker's Done
		notRun   int         // retries of calls that provably did not run
		retried  int         // retries made by the fail mode
		hashKey  = cc.hashKeyOf()
		refused  error // the last error from a provider that did not run the call
	)
	for {
		st := r.state.Load()
		if st == nil || len(st.instances) == 0 {
			if r.closed.Load() {
				return attempts, outLocal, wrapError(CodeCanceled, ErrClientClosed, "call %s: reference is closed", method)
			}
			if err == nil {
				if err = r.noProvider(ctx, cc); err == nil {
					continue // the list changed: look again
				}
				o = outNotRun
			}
			return attempts, o, err
		}
		ep, done := next, nextDone
		next, nextDone = nil, nil
		if ep == nil {
			if tried == nil {
				var perr error
				if ep, done, perr = r.pick(ctx, method, hashKey, st); perr != nil {
					return attempts, outLocal, perr
				}
			} else {
				ep, done = r.pickOther(ctx, method, hashKey, st, attempts+1, tried, nil, false)
			}
		}
		attempts++
		o, err = r.attempt(ctx, ep, done, method, short, req, reply, attempts)
		if err == nil {
			return attempts, o, nil
		}
		if ctx.Err() != nil {
			return attempts, o, err
		}
		switch o {
		case outNotRun, outNoConn:
			if o == outNotRun && !errors.Is(err, ErrConnClosed) {
				refused = err // the provider's own reason, as a refused connection's
			}
			// Safe for any method: send it elsewhere.
			if notRun < max(1, min(len(st.instances), maxAttempts)-1) {
				notRun++
				tried = append(tried, ep)
				continue
			}
		case outBroken, outClosing, outReply:
			if (o != outReply || CodeOf(err) == CodeUnavailable) && retried < mode.retries() && r.idempotent(method, cc, b) {
				retried++
				if mode.kind == failTry {
					next = ep
				} else {
					tried = append(tried, ep)
				}
				continue
			}
		}
		if refused != nil && errors.Is(err, ErrConnClosed) {
			// The retry found the refusing connection closing: the
			// provider's reason says more.
			err = refused
		}
		return attempts, o, err
	}
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
	if m, ok := reply.(proto.Message); ok {
		// The message's own New knows its descriptor, which reflect.New
		// would leave out of a dynamicpb.Message.
		if rm := m.ProtoReflect(); rm.IsValid() {
			return rm.New().Interface()
		}
	}
	v := reflect.ValueOf(reply)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	return reflect.New(v.Type().Elem()).Interface()
}

// hedge runs a call under Failbackup: see there. The first request decodes
// into reply, the second into reply2, which is copied into reply if the
// second wins.
func (r *Reference) hedge(ctx context.Context, method, short string, req, reply, reply2 any, delay time.Duration, hashKey string) error {
	st := r.state.Load()
	if st == nil || len(st.instances) == 0 {
		if n, o, err := r.run(ctx, method, short, req, reply, Failfast(), &callConfig{hashKey: hashKey}, nil, nil, nil); err != nil {
			return r.failed(method, n, o, err)
		}
		return nil
	}
	first, firstDone, err := r.pick(ctx, method, hashKey, st)
	if err != nil {
		return err
	}

	type result struct {
		err      error
		attempts int
		o        outcome
		leg      int
	}
	results := make(chan result, 2)
	var cancels [2]context.CancelFunc
	start := func(leg int, ep *endpoint, done func(DoneInfo), reply any) {
		lctx, cancel := context.WithCancel(ctx)
		cancels[leg] = cancel
		go func() {
			n, o, err := r.run(lctx, method, short, req, reply, Failfast(), nil, nil, ep, done)
			results <- result{err, n, o, leg}
		}()
	}
	defer func() {
		for _, cancel := range cancels {
			if cancel != nil {
				cancel()
			}
		}
	}()
	start(0, first, firstDone, reply)
	pending, backupTried := 1, false
	backup := func() {
		if backupTried {
			return
		}
		backupTried = true
		if ep, done := r.pickOther(ctx, method, hashKey, r.state.Load(), 2, nil, first, true); ep != nil {
			start(1, ep, done, reply2)
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
					return r.failed(method, attempts, res.o, res.err)
				}
				if res.leg == 1 {
					if err := copyMessage(r.cl.cfg.codec, reply, reply2); err != nil {
						return Errorf(CodeInternal, "call %s: copy the reply of the second request: %v", method, err)
					}
				}
				return nil
			}
			last = res
			if ctx.Err() == nil {
				backup()
			}
		case <-timer.C:
			backup()
		}
	}
	return r.failed(method, attempts, last.o, last.err)
}
