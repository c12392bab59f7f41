package runtime

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Client is the consumer side: it refers services, keeps one multiplexed
// connection per provider address shared by all its references, and closes
// them all on Close.
//
// All methods are safe for concurrent use.
type Client struct {
	cfg         clientConfig
	interceptor UnaryClientInterceptor
	ctx         context.Context
	cancel      context.CancelFunc

	mu     sync.Mutex
	pool   map[string]*endpoint
	refs   map[*Reference]struct{}
	closed bool
	bg     sync.WaitGroup

	// Every open connection, including draining ones no endpoint holds any
	// more, so that Close can end the calls still waiting on them.
	connsMu     sync.Mutex
	conns       map[*clientConn]struct{}
	connsClosed bool
}

// NewClient returns a client with the options applied.
func NewClient(opts ...ClientOption) *Client {
	cfg := clientConfig{
		maxMessageSize: DefaultMaxMessageSize,
		codec:          ProtoCodec{},
		dialTimeout:    5 * time.Second,
	}
	for _, o := range opts {
		o.applyClient(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.maxMessageSize <= 0 {
		cfg.maxMessageSize = DefaultMaxMessageSize
	}
	if cfg.dialTimeout <= 0 {
		cfg.dialTimeout = 5 * time.Second
	}
	cfg.resilience.ejection = cfg.resilience.ejection.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:         cfg,
		interceptor: chainClient(cfg.interceptors),
		ctx:         ctx,
		cancel:      cancel,
		pool:        make(map[string]*endpoint),
		refs:        make(map[*Reference]struct{}),
		conns:       make(map[*clientConn]struct{}),
	}
}

// Reference is a client bound to one service key. It follows the key's
// provider list in the registry and implements Invoker for generated
// clients.
type Reference struct {
	cl       *Client
	key      ServiceKey
	keyStr   string
	prefix   string // "/service/"
	selector Selector
	remote   bool
	invoker  UnaryInvoker

	// Fail mode, default deadline and idempotent methods
	// (options_resilience.go, failmode.go).
	fail              FailMode
	defaultTimeout    time.Duration
	idempotentMethods map[string]bool

	state   atomic.Pointer[refState]
	watcher registry.Watcher
	cancel  context.CancelFunc
	once    sync.Once
	closed  atomic.Bool
}

type refState struct {
	instances []registry.Instance
	eps       []*endpoint
	// live and liveEps are what selectors choose from: the instances
	// whose endpoint is not ejected (health.go). Without ejections they
	// are instances and eps.
	live    []registry.Instance
	liveEps []*endpoint
}

// Refer subscribes to the providers of service (a fully qualified proto
// service name, such as a generated <Svc>_ServiceName constant) with the
// version and group from opts. It waits, bounded by ctx, for the registry's
// current list, then follows changes until the reference or client is
// closed. An empty list is not an error: calls fail with ErrNoProvider until
// a provider appears.
func (c *Client) Refer(ctx context.Context, service string, opts ...ReferOption) (*Reference, error) {
	cfg := referConfig{registry: c.cfg.registry}
	for _, o := range opts {
		o.applyRefer(&cfg)
	}
	key := ServiceKey{Service: service, Version: cfg.version, Group: cfg.group}
	if err := key.Validate(); err != nil {
		return nil, wrapError(CodeInvalidArgument, err, "refer: %v", err)
	}
	if cfg.registry == nil {
		return nil, Errorf(CodeInvalidArgument, "refer %s: no registry; pass WithRegistry to NewClient or Refer", key)
	}
	if cfg.selector == nil {
		cfg.selector = RoundRobin()
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, wrapError(CodeCanceled, ErrClientClosed, "refer %s: client is closed", key)
	}
	c.mu.Unlock()

	wctx, cancel := context.WithCancel(c.ctx)
	w, err := cfg.registry.Watch(wctx, key)
	if err != nil {
		cancel()
		return nil, wrapError(CodeUnavailable, err, "refer %s: watch: %v", key, err)
	}
	list, err := nextList(ctx, wctx, w)
	if err != nil {
		w.Stop()
		cancel()
		return nil, wrapError(CodeOf(err), err, "refer %s: first discovery: %v", key, err)
	}
	r := &Reference{
		cl:       c,
		key:      key,
		keyStr:   key.String(),
		prefix:   "/" + service + "/",
		selector: cfg.selector,
		remote:   cfg.remote,
		watcher:  w,
		cancel:   cancel,
	}
	r.invoker = r.invoke
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
	r.update(list)
	go r.follow(wctx)
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
// closed. Registry failures leave the last known list in place.
func (r *Reference) follow(ctx context.Context) {
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
				log.Warn("storks: watching providers failed; keeping the last known list", "service", r.keyStr, "err", err)
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
		r.update(list)
	}
}

// update installs a new provider list.
func (r *Reference) update(list []registry.Instance) {
	st := &refState{instances: list, eps: make([]*endpoint, len(list))}
	c := r.cl
	c.mu.Lock()
	for i, in := range list {
		st.eps[i] = c.acquire(in.Addr)
	}
	c.filterLocked(st)
	old := r.state.Swap(st)
	if old != nil {
		for _, ep := range old.eps {
			c.release(ep)
		}
	}
	c.mu.Unlock()
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
		}
		c.mu.Unlock()
	})
	return nil
}

// Invoke calls method on a provider chosen by the reference's selector, or on
// an in-process export of the same service key unless the reference was made
// WithRemote, with the reference's fail mode (or the one in opts). See
// Invoker and FailMode.
func (r *Reference) Invoke(ctx context.Context, method string, req, reply any, opts ...CallOption) (any, error) {
	var cfg *callConfig // call options the invoker needs, nil if none
	if len(opts) > 0 {
		var cc callConfig
		for _, o := range opts {
			o.applyCall(&cc)
		}
		if cc.metadata != nil {
			ctx = NewOutgoingContext(ctx, cc.metadata)
		}
		if cc.resilience.set() {
			cfg = &cc
		}
	}
	if r.defaultTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.defaultTimeout)
			defer cancel()
		}
	}
	if ic := r.cl.interceptor; ic != nil {
		inv := r.invoker
		if cfg != nil {
			inv = func(ctx context.Context, method string, req, reply any) (any, error) {
				return r.call(ctx, method, req, reply, cfg)
			}
		}
		out, err := ic(ctx, method, req, reply, inv)
		if err == nil && out == nil {
			// Generated clients assert the reply's type; a nil reply with
			// no error would make them panic.
			return nil, Errorf(CodeInternal, "call %s: a client interceptor returned no reply and no error", method)
		}
		return out, err
	}
	return r.call(ctx, method, req, reply, cfg)
}

// Close closes every reference and connection of the client and stops every
// goroutine it started. Calls in flight fail with CodeUnavailable.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	refs := make([]*Reference, 0, len(c.refs))
	for r := range c.refs {
		refs = append(refs, r)
	}
	c.mu.Unlock()
	for _, r := range refs {
		r.Close()
	}
	c.cancel()
	c.mu.Lock()
	for addr, ep := range c.pool {
		ep.stopHealthLocked()
		ep.closeConn()
		delete(c.pool, addr)
	}
	c.mu.Unlock()
	c.connsMu.Lock()
	c.connsClosed = true
	conns := make([]*clientConn, 0, len(c.conns))
	for cc := range c.conns {
		conns = append(conns, cc)
	}
	c.connsMu.Unlock()
	for _, cc := range conns {
		cc.close(wrapError(CodeCanceled, ErrClientClosed, "client closed"))
	}
	c.bg.Wait()
	return nil
}

// endpoint is one provider address, shared by every reference that uses it.
type endpoint struct {
	addr string
	refs int // guarded by Client.mu

	cc      atomic.Pointer[clientConn]
	mu      sync.Mutex
	dialing chan struct{}

	health epHealth // health.go
}

// acquire returns the endpoint for addr with its reference count raised.
// c.mu must be held.
func (c *Client) acquire(addr string) *endpoint {
	ep := c.pool[addr]
	if ep == nil {
		ep = &endpoint{addr: addr}
		c.pool[addr] = ep
	}
	ep.refs++
	return ep
}

// release drops a reference to ep, closing its connection (once idle) when
// no reference uses it. c.mu must be held.
func (c *Client) release(ep *endpoint) {
	ep.refs--
	if ep.refs > 0 {
		return
	}
	if c.pool[ep.addr] == ep {
		delete(c.pool, ep.addr)
	}
	ep.stopHealthLocked()
	if cc := ep.cc.Swap(nil); cc != nil {
		cc.drain()
	}
}

func (ep *endpoint) closeConn() {
	if cc := ep.cc.Swap(nil); cc != nil {
		cc.close(wrapError(CodeCanceled, ErrClientClosed, "client closed"))
	}
}

// conn returns a usable connection to the endpoint, dialing if there is none.
func (ep *endpoint) conn(ctx context.Context, c *Client) (*clientConn, error) {
	for {
		if cc := ep.cc.Load(); cc != nil && cc.usable() {
			return cc, nil
		}
		ep.mu.Lock()
		if cc := ep.cc.Load(); cc != nil && cc.usable() {
			ep.mu.Unlock()
			return cc, nil
		}
		if ch := ep.dialing; ch != nil {
			ep.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctxError(ctx, "connect to "+ep.addr)
			}
		}
		ch := make(chan struct{})
		ep.dialing = ch
		ep.mu.Unlock()

		cc, err := c.dial(ctx, ep.addr)
		if err == nil {
			c.trackConn(cc)
		}
		ep.mu.Lock()
		ep.dialing = nil
		if err == nil {
			if old := ep.cc.Swap(cc); old != nil {
				old.drain()
			}
		}
		ep.mu.Unlock()
		close(ch)
		return cc, err
	}
}

func (c *Client) dial(ctx context.Context, addr string) (*clientConn, error) {
	d := net.Dialer{Timeout: c.cfg.dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "connect to "+addr)
		}
		return nil, wrapError(CodeUnavailable, err, "connect to %s: %v", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if nc, err = c.secure(ctx, nc, addr); err != nil { // TLS, if configured: tls.go
		return nil, err
	}
	cc := &clientConn{cl: c, addr: addr, c: nc, w: connWriter{conn: nc}, pending: make(map[uint64]*call)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, wrapError(CodeCanceled, ErrClientClosed, "connect to %s: client is closed", addr)
	}
	c.bg.Add(1)
	c.mu.Unlock()
	go cc.read()
	return cc, nil
}

// trackConn adds a new connection to the set Close closes, or closes it if
// Close has run.
func (c *Client) trackConn(cc *clientConn) {
	c.connsMu.Lock()
	if c.connsClosed {
		c.connsMu.Unlock()
		cc.close(wrapError(CodeCanceled, ErrClientClosed, "client closed"))
		return
	}
	c.conns[cc] = struct{}{}
	c.connsMu.Unlock()
}

func (c *Client) untrackConn(cc *clientConn) {
	c.connsMu.Lock()
	delete(c.conns, cc)
	c.connsMu.Unlock()
}

func ctxError(ctx context.Context, what string) *Error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return wrapError(CodeDeadlineExceeded, err, "%s: deadline exceeded", what)
	}
	return wrapError(CodeCanceled, err, "%s: %v", what, err)
}

// clientConn is one multiplexed connection to a provider.
type clientConn struct {
	cl     *Client
	addr   string
	c      net.Conn
	w      connWriter
	nextID atomic.Uint64

	draining atomic.Bool // no new calls; closed when the last reply arrives
	broken   atomic.Bool

	mu      sync.Mutex
	pending map[uint64]*call
	err     *Error // why the connection broke
}

func (cc *clientConn) usable() bool { return !cc.draining.Load() && !cc.broken.Load() }

type call struct {
	done chan struct{} // buffered; one signal per use
	typ  frameType
	body *[]byte
	err  *Error
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// invoke makes one call on the connection. The outcome says whether the
// call provably did not run (it was never sent, or the server answered that
// the handler never ran), so that it may be sent to another instance, and
// whether the failure is a fault of the provider (see outcome).
func (cc *clientConn) invoke(ctx context.Context, key, method, short string, req, reply any) (out any, err error, o outcome) {
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, ctxError(ctx, "call "+method), outLocal
		}
	} else if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx, "call "+method), outLocal
	}
	codec := cc.cl.cfg.codec
	id := cc.nextID.Add(1)
	buf := getBuf(headerSize + 1024)
	b := appendHeader(*buf, frameRequest, id, 0)
	b = appendRequestHeader(b, key, short, timeout, OutgoingMetadata(ctx))
	b, err = codec.MarshalAppend(b, req)
	if err != nil {
		*buf = b
		putBuf(buf)
		return nil, Errorf(CodeInternal, "encode request of %s: %v", method, err), outLocal
	}
	if n, limit := len(b)-headerSize, cc.cl.cfg.maxMessageSize; n > limit {
		*buf = b
		putBuf(buf)
		return nil, &Error{Code: CodeResourceExhausted, Message: "call " + method + ": " + (&TooLargeError{Size: n, Limit: limit}).Error(), cause: ErrMessageTooLarge}, outLocal
	}
	setBodyLen(b)

	typ, body, cerr, ex := cc.exchange(ctx, id, b, buf, true)
	switch ex {
	case exNotSent:
		return nil, cerr, outNotRun
	case exCtxDone:
		return nil, ctxError(ctx, "call "+method), ctxOutcome(ctx)
	}
	if cerr != nil {
		switch {
		case errors.Is(cerr, ErrConnClosed):
			o = outBroken
		case errors.Is(cerr, ErrServerClosed):
			o = outClosing
		case errors.Is(cerr, ErrClientClosed):
			o = outLocal
		}
		return nil, cerr, o
	}
	defer putBuf(body)
	switch typ {
	case frameResponse:
		if err := codec.Unmarshal(*body, reply); err != nil {
			return nil, Errorf(CodeInternal, "decode response of %s from %s: %v", method, cc.addr, err), outReply
		}
		return reply, nil, outReply
	default:
		e, flags, err := parseErrorBody(*body)
		if err != nil {
			return nil, Errorf(CodeInternal, "bad error frame for %s from %s: %v", method, cc.addr, err), outReply
		}
		switch {
		case flags&errNotExecuted != 0 && (e.Code == CodeUnavailable || e.Code == CodeUnimplemented):
			o = outNotRun
		case e.Code == CodeDeadlineExceeded:
			o = outTimeout
		}
		return nil, e, o
	}
}

// ctxOutcome is the outcome of a call abandoned because ctx is done: a
// timeout (a fault of the provider it waited for) or a cancellation.
func ctxOutcome(ctx context.Context) outcome {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return outTimeout
	}
	return outLocal
}

// exchangeResult says how an exchange ended.
type exchangeResult uint8

const (
	exAnswered exchangeResult = iota // an answer, or the connection broke after the frame was written
	exNotSent                        // the connection takes no new frame; nothing was written
	exCtxDone                        // ctx ended first; the answer, if any, is dropped
)

// exchange writes frame, whose request ID is id, and waits for the frame
// that answers it. buf, if not nil, is the pooled buffer frame lies in: it
// goes back to the pool once written, so a waiting call holds none. When
// ctx is cancelled (not when its deadline passes: the server's own timer
// handles that) and cancel is set, a cancel frame tells the server.
//
// It returns the answer's type and body, which the caller returns with
// putBuf; or the error that broke the connection; or, with exNotSent, why
// the connection took no new frame: a draining connection may have found
// itself idle and be closing (maybeClose), and a frame registered now
// would fail although it may have been sent.
func (cc *clientConn) exchange(ctx context.Context, id uint64, frame []byte, buf *[]byte, cancel bool) (typ frameType, body *[]byte, cerr *Error, ex exchangeResult) {
	release := func() {
		if buf != nil {
			*buf = frame
			putBuf(buf)
		}
	}
	cl := callPool.Get().(*call)
	cc.mu.Lock()
	if cc.err != nil || cc.draining.Load() {
		e := cc.err
		if e == nil {
			e = wrapError(CodeUnavailable, ErrConnClosed, "connection to %s is closing", cc.addr)
		}
		cc.mu.Unlock()
		callPool.Put(cl)
		release()
		return 0, nil, e, exNotSent
	}
	cc.pending[id] = cl
	cc.mu.Unlock()

	werr := cc.w.write(frame)
	release()
	if werr != nil {
		cc.fail(wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %v", cc.addr, werr))
	}

	select {
	case <-cl.done:
	case <-ctx.Done():
		cc.mu.Lock()
		if cc.pending[id] == cl {
			delete(cc.pending, id)
			cc.mu.Unlock()
			callPool.Put(cl)
			if cancel && errors.Is(ctx.Err(), context.Canceled) {
				var fb [headerSize]byte
				cc.w.write(appendHeader(fb[:0], frameCancel, id, 0))
			}
			cc.maybeClose()
			return 0, nil, nil, exCtxDone
		}
		cc.mu.Unlock()
		<-cl.done // the answer is being delivered; take it and drop it
		putBuf(cl.body)
		cl.body, cl.err = nil, nil
		callPool.Put(cl)
		return 0, nil, nil, exCtxDone
	}
	typ, body, cerr = cl.typ, cl.body, cl.err
	cl.body, cl.err = nil, nil
	callPool.Put(cl)
	return typ, body, cerr, exAnswered
}

// read delivers replies until the connection breaks.
func (cc *clientConn) read() {
	defer cc.cl.bg.Done()
	r := bufio.NewReaderSize(cc.c, 32<<10)
	limit := cc.cl.cfg.maxMessageSize
	for {
		fh, body, err := readFrame(r, limit)
		if err != nil {
			var tl *TooLargeError
			if errors.As(err, &tl) && (fh.typ == frameResponse || fh.typ == frameError) {
				// The reply is too large for us: skip it and fail that call.
				if _, derr := io.CopyN(io.Discard, r, int64(tl.Size)); derr == nil {
					cc.deliverErr(fh.id, Errorf(CodeResourceExhausted, "received message larger than max (%d vs. %d)", tl.Size, tl.Limit))
					continue
				}
			}
			cc.fail(cc.readError(err))
			return
		}
		switch fh.typ {
		case frameResponse, frameError, framePong:
			cc.mu.Lock()
			cl := cc.pending[fh.id]
			delete(cc.pending, fh.id)
			cc.mu.Unlock()
			if cl == nil {
				putBuf(body) // the caller gave up
			} else {
				cl.typ, cl.body = fh.typ, body
				cl.done <- struct{}{}
			}
			cc.maybeClose()
		case frameGoAway:
			putBuf(body)
			cc.draining.Store(true)
			cc.maybeClose()
		default:
			putBuf(body)
			cc.fail(Errorf(CodeInternal, "connection to %s: unexpected %s frame from server", cc.addr, fh.typ))
			return
		}
	}
}

func (cc *clientConn) readError(err error) *Error {
	var fe *FrameError
	if errors.As(err, &fe) {
		cc.cl.cfg.logger.Warn("storks: closing connection: "+fe.Reason, "remote", cc.addr)
	}
	if cc.draining.Load() {
		return wrapError(CodeUnavailable, ErrServerClosed, "provider %s is shutting down", cc.addr)
	}
	return wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %v", cc.addr, err)
}

func (cc *clientConn) deliverErr(id uint64, e *Error) {
	cc.mu.Lock()
	cl := cc.pending[id]
	delete(cc.pending, id)
	cc.mu.Unlock()
	if cl != nil {
		cl.err = e
		cl.done <- struct{}{}
	}
}

// fail breaks the connection: every pending call gets e.
func (cc *clientConn) fail(e *Error) {
	cc.broken.Store(true)
	cc.cl.untrackConn(cc)
	cc.w.fail(e)
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = e
	}
	pending := cc.pending
	cc.pending = make(map[uint64]*call)
	cc.mu.Unlock()
	cc.c.Close()
	for _, cl := range pending {
		cl.err = e
		cl.done <- struct{}{}
	}
}

func (cc *clientConn) close(e *Error) { cc.fail(e) }

// drain stops new calls on the connection and closes it once idle.
func (cc *clientConn) drain() {
	cc.draining.Store(true)
	cc.maybeClose()
}

func (cc *clientConn) maybeClose() {
	if !cc.draining.Load() {
		return
	}
	cc.mu.Lock()
	idle := len(cc.pending) == 0 && cc.err == nil
	cc.mu.Unlock()
	if idle {
		cc.fail(wrapError(CodeUnavailable, ErrConnClosed, "connection to %s closed after draining", cc.addr))
	}
}

// localCount is the number of in-process exports; while it is zero a call
// skips the local lookup entirely.
var localCount atomic.Int32

// invokeLocal runs a call against an export in this process: no network, no
// serialization. The server's interceptors run as for a remote call.
func (e *export) invokeLocal(ctx context.Context, method, short string, req any) (any, error) {
	m := e.methods[short]
	if m == nil {
		return nil, Errorf(CodeUnimplemented, "unknown method %s for service %s", short, e.keyStr)
	}
	if ctx.Err() != nil {
		return nil, ctxError(ctx, "call "+method)
	}
	s := e.server
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	hctx := ctx
	if md := OutgoingMetadata(ctx); md != nil {
		hctx = newIncomingContext(ctx, md)
	}
	resp, err := s.call(hctx, m, req)
	if err != nil {
		return nil, toError(err)
	}
	if ctx.Err() != nil {
		return nil, ctxError(ctx, "call "+method)
	}
	return resp, nil
}
