package runtime

import (
	"context"
	"errors"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// A call starts at a Reference. Its path, one file per step:
//
//	reference.go   Invoke: call options, the default deadline, client interceptors
//	failmode.go    call: the in-process shortcut (local.go), then the fail mode:
//	               run (or hedge) makes attempts and decides on retries
//	pick.go        which instance each attempt goes to
//	attempt.go     one attempt on one endpoint; its outcome goes to health.go
//	clientconn.go  the request and its reply on the endpoint's connection
//
// This file also keeps the reference's provider list: Refer subscribes to
// the registry, follow and update install every new list.

// Reference is a client bound to one service key. It follows the key's
// provider list in the registry and implements Invoker for generated
// clients.
type Reference struct {
	cl       *Client
	key      ServiceKey
	keyStr   string
	prefix   string // "/service/"
	balancer Balancer
	remote   bool
	invoker  UnaryInvoker

	// In-process calls (local.go): whether the handler gets the caller's
	// request itself, and whether the shortcut was logged.
	zeroCopy   bool
	localNoted atomic.Bool

	// Fail mode, default deadline and idempotent methods
	// (failmode.go).
	fail              FailMode
	defaultTimeout    time.Duration
	idempotentMethods map[string]bool

	state   atomic.Pointer[refState]
	watcher registry.Watcher
	cancel  context.CancelFunc
	once    sync.Once
	closed  atomic.Bool

	disc discovery  // waiting for providers, and why there are none (discovery.go)
	gov  governance // consumer record and rules (governance.go)
}

type refState struct {
	instances []registry.Instance
	eps       []*endpoint
	// ends are the balancer's view of eps; live are those not ejected
	// (health.go), what picker was built with. Without ejections live is
	// ends.
	ends   []*Endpoint
	live   []*Endpoint
	picker Picker
	// changed is closed when update or Close replaces the state, for the
	// calls that wait for a provider (discovery.go). The states health.go
	// rebuilds, which are never empty, have none.
	changed chan struct{}
	// disabled counts the providers the rules left out; tags routes
	// tagged calls, nil when no provider has a tag and no rule needs it
	// (governance.go).
	disabled int
	tags     *tagRoutes
}

// Refer subscribes to the providers of service (a fully qualified proto
// service name, such as a generated <Svc>_ServiceName constant) with the
// version and group from opts. It waits, bounded by ctx, for the registry's
// current list (unless WithWaitForProvider applies: then it returns at
// once), then follows changes until the reference or client is closed. An
// empty list is not an error: calls fail with ErrNoProvider until a
// provider appears, or wait for one (WithWaitForProvider). An invalid
// option is: Refer returns a CodeInvalidArgument *Error whose message
// starts with the option's name.
func (c *Client) Refer(ctx context.Context, service string, opts ...ReferOption) (*Reference, error) {
	cfg := referConfig{registry: c.cfg.registry}
	if err := applyOptions(&cfg.optionErrors, "Refer", opts, func(o ReferOption) { o.applyRefer(&cfg) }); err != nil {
		return nil, err
	}
	key := ServiceKey{Service: service, Version: cfg.version, Group: cfg.group}
	if err := key.Validate(); err != nil {
		return nil, wrapError(CodeInvalidArgument, err, "refer: %v", err)
	}
	if err := checkIdempotentMethods(&cfg, service); err != nil {
		return nil, err
	}
	if cfg.registry == nil {
		return nil, Errorf(CodeInvalidArgument, "refer %s: no registry; pass WithRegistry to NewClient or Refer", key)
	}
	if cfg.balancer == nil {
		cfg.balancer = RoundRobin()
	}
	bal := cfg.balancer()
	if isNilValue(bal) {
		return nil, Errorf(CodeInvalidArgument, "WithBalancer: the factory returned a nil balancer")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, wrapError(CodeCanceled, ErrClientClosed, "refer %s: client is closed", key)
	}
	c.mu.Unlock()

	wait := cfg.resilience.waitForProvider || c.cfg.resilience.waitForProvider
	wctx, cancel := context.WithCancel(c.ctx)
	w, list, err := c.watch(ctx, wctx, cfg.registry, key, wait)
	if err != nil {
		cancel()
		return nil, err
	}
	r := &Reference{
		cl:       c,
		key:      key,
		keyStr:   key.String(),
		prefix:   "/" + service + "/",
		balancer: bal,
		remote:   cfg.remote,
		zeroCopy: cfg.localZeroCopy,
		watcher:  w,
		cancel:   cancel,
	}
	r.invoker = r.invoke
	r.gov.factory = cfg.balancer
	r.disc.reg, r.disc.wait = cfg.registry, wait
	r.fail = cfg.resilience.fail
	if r.fail.kind == failUnset {
		r.fail = c.cfg.resilience.fail
	}
	if r.fail.kind == failUnset {
		r.fail = Failfast()
	}
	r.defaultTimeout = c.cfg.resilience.defaultTimeout
	if cfg.resilience.timeoutSet {
		r.defaultTimeout = cfg.resilience.defaultTimeout
	}
	r.idempotentMethods = normalizeMethods(service, cfg.resilience.idempotent)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		w.Stop()
		cancel()
		return nil, wrapError(CodeCanceled, ErrClientClosed, "refer %s: client is closed", key)
	}
	c.refs[r] = struct{}{}
	c.bg.Add(1)
	c.mu.Unlock()
	r.startGovernance(ctx, wctx, &cfg, wait)
	r.install(list)
	if r.InProcess() {
		r.noteLocal(true)
	}
	go r.follow(wctx, !wait) // without wait, list is the registry's first answer
	return r, nil
}

// nextList calls w.Next bounded by both the caller's ctx and the watch's.
func nextList(ctx, wctx context.Context, w registry.Watcher) ([]registry.Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(wctx, cancel)
	defer stop()
	return w.Next(ctx)
}

// follow applies every change of the provider list until the reference is
// closed. Registry failures leave the last known list in place. listed says
// whether the registry has answered once already (Refer waited for it), so
// that the log says whether there is a last known list to keep.
func (r *Reference) follow(ctx context.Context, listed bool) {
	defer r.cl.bg.Done()
	log := r.cl.cfg.logger
	var failing bool
	backoff := 100 * time.Millisecond
	for {
		list, err := r.watcher.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return
			}
			if !failing {
				if listed {
					log.Warn("storks: watching providers failed; keeping the last known list", "service", r.keyStr, "err", err)
				} else {
					log.Warn("storks: the registry has not answered yet; calls find no provider until it does", "service", r.keyStr, "err", err)
				}
				failing = true
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if failing {
			log.Info("storks: watching providers recovered", "service", r.keyStr, "providers", len(list))
			failing = false
			backoff = 100 * time.Millisecond
		}
		listed = true
		r.install(list)
	}
}

// update installs a new provider list, the registry's under the rules
// (install, governance.go); disabled counts the providers the rules left
// out.
//
// An instance listed unchanged keeps its *Endpoint, and its address its
// acquisition, so that a change of one instance among many costs little
// more than the two slices: update walks the old and new lists together
// by ID (registries list instances sorted by ID; an unsorted list is only
// slower, never wrong). New addresses are acquired before old ones are
// released, so that an address that stays keeps its connection.
func (r *Reference) update(list []registry.Instance, disabled int) {
	st := &refState{instances: list, eps: make([]*endpoint, len(list)), ends: make([]*Endpoint, len(list)), changed: make(chan struct{}), disabled: disabled}
	c := r.cl
	c.mu.Lock()
	if r.closed.Load() {
		c.mu.Unlock() // Close has released the state: install nothing after it
		return
	}
	old := r.state.Load()
	var oldEnds []*Endpoint
	var oldEps []*endpoint
	if old != nil {
		oldEnds, oldEps = old.ends, old.eps
	}
	var drop []*endpoint // old acquisitions not carried over
	j := 0
	for i, in := range list {
		for j < len(oldEnds) && oldEnds[j].inst.ID < in.ID {
			drop = append(drop, oldEps[j])
			j++
		}
		if j < len(oldEnds) && oldEnds[j].inst.ID == in.ID {
			oe, oep := oldEnds[j], oldEps[j]
			j++
			switch {
			case sameInstance(oe.inst, in):
				st.ends[i], st.eps[i] = oe, oep
				continue
			case oe.inst.Addr == in.Addr:
				st.ends[i], st.eps[i] = &Endpoint{inst: in, ep: oep}, oep
				continue
			}
			drop = append(drop, oep)
		}
		st.eps[i] = c.acquire(in.Addr)
		st.ends[i] = &Endpoint{inst: in, ep: st.eps[i]}
	}
	drop = append(drop, oldEps[j:]...)
	c.filterLocked(r, st)
	r.state.Store(st)
	for _, ep := range drop {
		c.release(ep)
	}
	if old != nil {
		old.notifyChanged()
	}
	c.mu.Unlock()
}

// sameInstance reports whether a and b are equal field by field.
func sameInstance(a, b registry.Instance) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Weight == b.Weight && a.Key == b.Key && maps.Equal(a.Metadata, b.Metadata)
}

// Providers returns the provider list the reference currently calls.
func (r *Reference) Providers() []registry.Instance {
	st := r.state.Load()
	if st == nil {
		return nil
	}
	out := make([]registry.Instance, len(st.instances))
	for i, in := range st.instances {
		out[i] = in.Clone()
	}
	return out
}

// Key returns the service key of the reference.
func (r *Reference) Key() ServiceKey { return r.key }

// Close stops following the registry and releases the reference's
// connections. Calls after Close fail with ErrClientClosed.
func (r *Reference) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		r.cancel()
		r.watcher.Stop()
		c := r.cl
		c.mu.Lock()
		delete(c.refs, r)
		if old := r.state.Swap(&refState{}); old != nil {
			for _, ep := range old.eps {
				c.release(ep)
			}
			old.notifyChanged()
		}
		c.mu.Unlock()
		if r.gov.regDone != nil {
			r.deregisterConsumer(r.disc.reg)
		}
	})
	return nil
}

// Invoke calls method on a provider chosen by the reference's balancer, or on
// an in-process export of the same service key unless the reference was made
// WithRemote, with the reference's fail mode (or the one in opts), and fills
// reply with the response. See Invoker and FailMode. An invalid call option
// fails the call, before anything is sent, with a CodeInvalidArgument
// *Error whose message starts with the option's name.
func (r *Reference) Invoke(ctx context.Context, method string, req, reply any, opts ...CallOption) error {
	return r.invokeWith(ctx, method, req, reply, opts, nil)
}

// invokeWith is Invoke through b, the binding of the reference to its
// service's descriptor (BindService), or through the reference itself if b
// is nil.
func (r *Reference) invokeWith(ctx context.Context, method string, req, reply any, opts []CallOption, b *boundReference) error {
	if r.cl.cfg.stats != nil { // stats.go
		as := r.beginClient(ctx, method, false)
		err := r.invokeCall(as, method, req, reply, opts, b)
		as.end(err)
		return err
	}
	return r.invokeCall(ctx, method, req, reply, opts, b)
}

// invokeCall is invokeWith without the stats handler.
func (r *Reference) invokeCall(ctx context.Context, method string, req, reply any, opts []CallOption, b *boundReference) error {
	var cfg *callConfig // call options the invoker needs, nil if none
	if len(opts) > 0 {
		var cc callConfig
		if err := cc.apply("Invoke", opts); err != nil {
			return err
		}
		if cc.metadata != nil {
			ctx = NewOutgoingContext(ctx, cc.metadata)
		}
		if cc.resilience.set() {
			cfg = &cc
		}
	}
	if d := r.callTimeout(method); d > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
	}
	if ic := r.cl.interceptor; ic != nil {
		inv := r.invoker
		if b != nil {
			inv = b.invoker
		}
		if cfg != nil {
			inv = func(ctx context.Context, method string, req, reply any) error {
				return r.call(ctx, method, req, reply, cfg, b)
			}
		}
		return ic(ctx, method, req, reply, inv)
	}
	return r.call(ctx, method, req, reply, cfg, b)
}

// apply applies the call options of a call made through what ("Invoke",
// "NewStream"). It is applyOptions' loop, written out so that a nil option
// is named a "call option", as the callers of Invoke and NewStream know
// them.
func (cc *callConfig) apply(what string, opts []CallOption) error {
	for i, o := range opts {
		if o == nil {
			cc.invalid(what, "call option %d is nil", i)
			continue
		}
		o.applyCall(cc)
	}
	return cc.err()
}

// invoke is the reference's UnaryInvoker: a call with the reference's fail
// mode.
func (r *Reference) invoke(ctx context.Context, method string, req, reply any) error {
	return r.call(ctx, method, req, reply, nil, nil)
}
