package runtime

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The Client owns what its references share: the pool of endpoints (one per
// provider address, each with at most one connection in use), dialling, and
// Close. Calls start at a Reference (reference.go).

// Client is the consumer side: it refers services, keeps one multiplexed
// connection per provider address shared by all its references, and closes
// them all on Close.
//
// All methods are safe for concurrent use.
type Client struct {
	cfg               clientConfig
	interceptor       UnaryClientInterceptor
	streamInterceptor StreamClientInterceptor
	ctx               context.Context
	cancel            context.CancelFunc
	started           time.Time // for consumer records

	mu     sync.Mutex
	pool   map[string]*endpoint
	refs   map[*Reference]struct{}
	closed bool
	bg     sync.WaitGroup
	// Addresses whose server answered our settings with goaway (it speaks
	// version 1): the next dial there sends no settings, and forgets the
	// entry, so the dial after it probes again (docs/protocol.md,
	// "Compatibility"). Guarded by mu.
	v1Next map[string]bool

	// Every open connection, including draining ones no endpoint holds any
	// more, so that Close can end the calls still waiting on them.
	connsMu     sync.Mutex
	conns       map[*clientConn]struct{}
	connsClosed bool

	probes sync.Map // registry checks: state.go
}

// NewClient returns a client with the options applied. It connects to
// nothing: references discover providers (Refer), and a provider is dialled
// on the first call that goes to it.
//
// Every option is checked. If one is invalid, NewClient returns a nil
// client and, as grpc.NewClient does, the error: a CodeInvalidArgument
// *Error whose message starts with the name of the first invalid option
// (its text is, for example, "storks: InvalidArgument: WithCodec: codec is
// nil").
func NewClient(opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{
		maxMessageSize: DefaultMaxMessageSize,
		codec:          ProtoCodec{},
		logger:         slog.Default(),
		dialTimeout:    5 * time.Second,
	}
	if err := applyOptions(&cfg.optionErrors, "NewClient", opts, func(o ClientOption) { o.applyClient(&cfg) }); err != nil {
		return nil, err
	}
	if cfg.maxMessageSize == 0 {
		cfg.maxMessageSize = DefaultMaxMessageSize
	}
	cfg.resilience.ejection = cfg.resilience.ejection.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:               cfg,
		interceptor:       chainClient(cfg.interceptors),
		streamInterceptor: chainStreamClient(cfg.streamClientInterceptors),
		ctx:               ctx,
		cancel:            cancel,
		started:           time.Now(),
		pool:              make(map[string]*endpoint),
		refs:              make(map[*Reference]struct{}),
		conns:             make(map[*clientConn]struct{}),
	}, nil
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
	load   epLoad   // balancer.go
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
	cc := &clientConn{cl: c, addr: addr, c: nc, w: connWriter{conn: nc}, pending: make(map[uint64]*call),
		streams: make(map[uint64]*clientStream), settled: make(chan struct{}), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		nc.Close()
		return nil, wrapError(CodeCanceled, ErrClientClosed, "connect to %s: client is closed", addr)
	}
	cc.probing = !c.v1Next[addr]
	delete(c.v1Next, addr)
	c.bg.Add(1)
	c.mu.Unlock()
	if cc.probing {
		// Our settings go first; requests may follow at once, before the
		// server's settings arrive (docs/protocol.md, "Settings exchange").
		if err := cc.w.write(c.settingsFrame()); err != nil {
			c.bg.Done()
			nc.Close()
			return nil, wrapError(CodeUnavailable, err, "connect to %s: %v", addr, err)
		}
	} else {
		cc.version.Store(1)
		cc.settle()
	}
	go cc.read()
	return cc, nil
}

// ourSettings are the settings a client announces.
func (c *Client) ourSettings() settings {
	st := defaultSettings()
	st.maxStreams = 0 // only clients open streams
	st.maxMessage = c.cfg.maxMessageSize
	return st
}

// settingsFrame is the settings frame a client sends first on a connection.
func (c *Client) settingsFrame() []byte {
	st := c.ourSettings()
	b := appendSettings(appendHeader(make([]byte, 0, headerSize+32), frameSettings, 0, 0), st)
	setBodyLen(b)
	return b
}

// speaksV1 records that the server at addr answered our settings with
// goaway: the next dial to addr sends none.
func (c *Client) speaksV1(addr string) {
	c.mu.Lock()
	if c.v1Next == nil {
		c.v1Next = make(map[string]bool)
	}
	c.v1Next[addr] = true
	c.mu.Unlock()
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

// WithDialTimeout bounds how long connecting to a provider may take, and
// then its TLS handshake, if any (default 5s). It must be positive.
func WithDialTimeout(d time.Duration) ClientOption {
	if d <= 0 {
		return reject("WithDialTimeout", "must be positive (got %v)", d)
	}
	return clientFunc(func(c *clientConfig) { c.dialTimeout = d })
}
