package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// registryTimeout bounds registry calls the server makes without a caller's
// context (Export after Serve, Close).
const registryTimeout = 10 * time.Second

// Server exports service implementations on one or more listeners and, when
// it has a registry, registers every export there.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg         serverConfig
	interceptor UnaryServerInterceptor
	ctx         context.Context
	cancel      context.CancelFunc

	mu        sync.RWMutex
	exports   map[string]*export // active exports by canonical key
	exporters map[*Exporter]struct{}
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	addr      string // advertised address, set by the first Serve
	closed    bool

	handlers handlerPool  // goroutines that run requests
	refusing atomic.Bool  // new calls get ErrServerClosed
	inflight atomic.Int64 // calls being handled
	bg       sync.WaitGroup

	cfgErr   error        // an invalid option; Serve returns it
	epoch    time.Time    // tick counts from here
	tick     atomic.Int64 // coarse clock in ns since epoch, +1; see limits.go
	watching bool         // the watchdog runs; guarded by mu
}

// NewServer returns a server with the options applied.
func NewServer(opts ...ServerOption) *Server {
	cfg := serverConfig{
		maxMessageSize: DefaultMaxMessageSize,
		shutdownWait:   DefaultShutdownWait,
		codec:          ProtoCodec{},
		sec:            defaultServerSecurity(),
	}
	for _, o := range opts {
		o.applyServer(&cfg)
	}
	cfgErr := cfg.check()
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	if cfg.maxMessageSize <= 0 {
		cfg.maxMessageSize = DefaultMaxMessageSize
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:         cfg,
		interceptor: chainServer(cfg.interceptors),
		ctx:         ctx,
		cancel:      cancel,
		exports:     make(map[string]*export),
		exporters:   make(map[*Exporter]struct{}),
		listeners:   make(map[net.Listener]struct{}),
		conns:       make(map[*serverConn]struct{}),
		cfgErr:      cfgErr,
		epoch:       time.Now(),
	}
	s.tick.Store(1)
	return s
}

// export is an active export: what a request is dispatched to.
type export struct {
	key     ServiceKey
	keyStr  string
	impl    any
	server  *Server
	methods map[string]*method
}

type method struct {
	desc    *MethodDesc
	info    UnaryServerInfo
	handler UnaryHandler
}

// Exporter is one export of a service implementation on a Server.
type Exporter struct {
	srv  *Server
	exp  *export
	inst registry.Instance
	stop chan struct{} // closed by Unexport and Close; ends a delayed export

	mu         sync.Mutex // serializes registration of this export
	active     bool       // in srv.exports and the local table
	registered bool
	removed    bool
}

// Key returns the service key the export answers to.
func (e *Exporter) Key() ServiceKey { return e.exp.key }

// Instance returns the registry entry of the export. Its address is empty
// until the server is serving.
func (e *Exporter) Instance() registry.Instance {
	e.srv.mu.RLock()
	defer e.srv.mu.RUnlock()
	in := e.inst.Clone()
	in.Addr = e.srv.addr
	return in
}

// Export makes impl answer calls for desc's service. It returns an error if
// the server's options are invalid, if desc or impl is unusable, if the
// service key is already exported on this server, or if the server is
// serving and the registration fails. Without WithDelay the export takes
// calls when Export returns.
func (s *Server) Export(desc *ServiceDesc, impl any, opts ...ExportOption) (*Exporter, error) {
	if s.cfgErr != nil {
		return nil, s.cfgErr
	}
	if desc == nil {
		return nil, Errorf(CodeInvalidArgument, "export: service descriptor is nil")
	}
	if impl == nil {
		return nil, Errorf(CodeInvalidArgument, "export %s: implementation is nil", desc.ServiceName)
	}
	if v := reflect.ValueOf(impl); (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() {
		return nil, Errorf(CodeInvalidArgument, "export %s: implementation is a nil %T", desc.ServiceName, impl)
	}
	if desc.HandlerType != nil {
		ht := reflect.TypeOf(desc.HandlerType).Elem()
		if it := reflect.TypeOf(impl); !it.Implements(ht) {
			return nil, Errorf(CodeInvalidArgument, "export %s: %v does not implement %v", desc.ServiceName, it, ht)
		}
	}
	var cfg exportConfig
	for _, o := range opts {
		o.applyExport(&cfg)
	}
	key := ServiceKey{Service: desc.ServiceName, Version: cfg.version, Group: cfg.group}
	if err := key.Validate(); err != nil {
		return nil, wrapError(CodeInvalidArgument, err, "export: %v", err)
	}
	if cfg.weight < 0 {
		return nil, Errorf(CodeInvalidArgument, "export %s: weight %d must not be negative", key, cfg.weight)
	}
	if cfg.delay < 0 {
		return nil, Errorf(CodeInvalidArgument, "export %s: delay %v must not be negative", key, cfg.delay)
	}
	exp := &export{key: key, keyStr: key.String(), impl: impl, server: s, methods: make(map[string]*method, len(desc.Methods))}
	for i := range desc.Methods {
		md := &desc.Methods[i]
		if md.Name == "" || md.Handler == nil || md.NewRequest == nil {
			return nil, Errorf(CodeInvalidArgument, "export %s: method %d (%q) needs a name, a handler and NewRequest", key, i, md.Name)
		}
		if _, dup := exp.methods[md.Name]; dup {
			return nil, Errorf(CodeInvalidArgument, "export %s: method %s is listed twice", key, md.Name)
		}
		m := &method{desc: md, info: UnaryServerInfo{Server: impl, FullMethod: "/" + desc.ServiceName + "/" + md.Name, Key: key}}
		m.handler = func(ctx context.Context, req any) (any, error) { return md.Handler(impl, ctx, req) }
		exp.methods[md.Name] = m
	}
	id, err := newInstanceID()
	if err != nil {
		return nil, Errorf(CodeInternal, "export %s: instance ID: %v", key, err)
	}
	ex := &Exporter{
		srv:  s,
		exp:  exp,
		stop: make(chan struct{}),
		inst: registry.Instance{Key: key, ID: id, Weight: cfg.weight, Metadata: maps.Clone(cfg.metadata)},
	}
	s.mu.Lock()
	if s.closed || s.refusing.Load() {
		s.mu.Unlock()
		return nil, wrapError(CodeUnavailable, ErrServerClosed, "export %s: server is shut down", key)
	}
	for other := range s.exporters {
		if other.exp.keyStr == exp.keyStr {
			s.mu.Unlock()
			return nil, Errorf(CodeAlreadyExists, "export %s: service key is already exported on this server", key)
		}
	}
	s.exporters[ex] = struct{}{}
	if cfg.delay > 0 {
		s.bg.Add(1)
		s.mu.Unlock()
		go s.delayedExport(ex, cfg.delay)
		return ex, nil
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, registryTimeout)
	defer cancel()
	if err := s.activate(ctx, ex); err != nil {
		_ = ex.Unexport(ctx)
		return nil, err
	}
	return ex, nil
}

func (s *Server) delayedExport(ex *Exporter, d time.Duration) {
	defer s.bg.Done()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ex.stop:
		return
	case <-s.ctx.Done():
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, registryTimeout)
	defer cancel()
	if err := s.activate(ctx, ex); err != nil {
		s.cfg.logger.Error("storks: delayed export failed", "service", ex.exp.keyStr, "err", err)
	}
}

// activate makes the export take calls and registers it if the server is
// serving.
func (s *Server) activate(ctx context.Context, ex *Exporter) error {
	ex.mu.Lock()
	if ex.removed {
		ex.mu.Unlock()
		return nil
	}
	ex.active = true
	ex.mu.Unlock()
	s.mu.Lock()
	s.exports[ex.exp.keyStr] = ex.exp
	s.mu.Unlock()
	addLocal(ex.exp)
	return s.register(ctx, ex)
}

// register registers an active export once the server has an address.
func (s *Server) register(ctx context.Context, ex *Exporter) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	s.mu.RLock()
	addr := s.addr
	s.mu.RUnlock()
	if s.cfg.registry == nil || !ex.active || ex.registered || ex.removed || addr == "" {
		return nil
	}
	in := ex.inst.Clone()
	in.Addr = addr
	if err := s.cfg.registry.Register(ctx, in); err != nil {
		return wrapError(CodeUnavailable, err, "register %s at %s: %v", ex.exp.keyStr, addr, err)
	}
	ex.registered = true
	return nil
}

// deregister removes the export from the registry; the export keeps taking
// calls until it is unexported or the server closes.
func (ex *Exporter) deregister(ctx context.Context) error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if !ex.registered {
		return nil
	}
	in := ex.inst.Clone()
	ex.srv.mu.RLock()
	in.Addr = ex.srv.addr
	ex.srv.mu.RUnlock()
	if err := ex.srv.cfg.registry.Deregister(ctx, in); err != nil {
		return wrapError(CodeUnavailable, err, "deregister %s at %s: %v", ex.exp.keyStr, in.Addr, err)
	}
	ex.registered = false
	return nil
}

// Unexport deregisters the export (synchronously, bounded by ctx) and stops
// it taking calls. Calls already running finish.
func (ex *Exporter) Unexport(ctx context.Context) error {
	s := ex.srv
	ex.mu.Lock()
	if ex.removed {
		ex.mu.Unlock()
		return nil
	}
	ex.removed = true
	close(ex.stop)
	ex.mu.Unlock()
	err := ex.deregister(ctx)
	removeLocal(ex.exp)
	s.mu.Lock()
	if s.exports[ex.exp.keyStr] == ex.exp {
		delete(s.exports, ex.exp.keyStr)
	}
	delete(s.exporters, ex)
	s.mu.Unlock()
	return err
}

// Addr returns the address registered for exports: the advertise address or
// the first listener's. It is empty before Serve.
func (s *Server) Addr() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.addr
}

// Serve accepts connections on lis until the server is closed. The first
// call to Serve fixes the server's advertised address and registers every
// active export; if a registration fails, Serve closes lis and returns the
// error. Serve returns ErrServerClosed (wrapped) after Shutdown or Close, and
// a CodeInvalidArgument error naming the option if the server's options are
// invalid.
func (s *Server) Serve(lis net.Listener) error {
	if lis == nil {
		return Errorf(CodeInvalidArgument, "serve: listener is nil")
	}
	if s.cfgErr != nil {
		lis.Close()
		return s.cfgErr
	}
	s.mu.Lock()
	if s.closed || s.refusing.Load() {
		s.mu.Unlock()
		lis.Close()
		return wrapError(CodeUnavailable, ErrServerClosed, "serve: server is shut down")
	}
	if s.addr == "" {
		addr, err := advertiseAddr(s.cfg.advertise, lis.Addr())
		if err != nil {
			s.mu.Unlock()
			lis.Close()
			return err
		}
		s.addr = addr
	}
	s.listeners[lis] = struct{}{}
	if sec := &s.cfg.sec; !s.watching && (sec.frameTimeout > 0 || sec.idleTimeout > 0) {
		s.watching = true
		s.bg.Add(1)
		go s.watch()
	}
	pending := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		pending = append(pending, ex)
	}
	s.bg.Add(1)
	s.mu.Unlock()
	defer s.bg.Done()

	ctx, cancel := context.WithTimeout(s.ctx, registryTimeout)
	for _, ex := range pending {
		if err := s.register(ctx, ex); err != nil {
			cancel()
			s.removeListener(lis)
			return err
		}
	}
	cancel()

	var backoff time.Duration
	for {
		c, err := lis.Accept()
		if err != nil {
			if s.isStopping() {
				return wrapError(CodeUnavailable, ErrServerClosed, "serve: server is shut down")
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			s.removeListener(lis)
			return fmt.Errorf("storks: accept on %s: %w", lis.Addr(), err)
		}
		backoff = 0
		sc := s.newConn(c)
		if sc == nil {
			c.Close()
			continue
		}
		go sc.serve()
	}
}

func (s *Server) isStopping() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed || s.refusing.Load()
}

func (s *Server) removeListener(lis net.Listener) {
	s.mu.Lock()
	delete(s.listeners, lis)
	s.mu.Unlock()
	lis.Close()
}

// advertiseAddr picks the address to register.
func advertiseAddr(configured string, bound net.Addr) (string, error) {
	if configured != "" {
		if err := registry.ValidateAddr(configured); err != nil {
			return "", wrapError(CodeInvalidArgument, err, "advertise address: %v", err)
		}
		return configured, nil
	}
	host, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", Errorf(CodeInvalidArgument, "listener address %q is not host:port; set WithAdvertiseAddr", bound)
	}
	if port == "0" {
		return "", Errorf(CodeInvalidArgument, "listener address %q has port 0; set WithAdvertiseAddr", bound)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = outboundHost()
	}
	return net.JoinHostPort(host, port), nil
}

// outboundHost returns the first non-loopback unicast address of the
// machine, or 127.0.0.1.
func outboundHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func newInstanceID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Shutdown stops the server gracefully: it deregisters every export, waits
// the propagation window (WithShutdownWait) so consumers stop choosing this
// provider, then refuses new calls with CodeUnavailable, tells every
// connected client to go away, waits for the calls in flight, and closes.
// If ctx ends first, the remaining work is abandoned as by Close and the
// context's error is returned. Deregistration errors are returned too.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	exporters := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exporters = append(exporters, ex)
	}
	s.mu.Unlock()

	var errs []error
	anyRegistered := false
	for _, ex := range exporters {
		ex.mu.Lock()
		anyRegistered = anyRegistered || ex.registered
		ex.mu.Unlock()
		if err := ex.deregister(ctx); err != nil {
			errs = append(errs, err)
		}
		removeLocal(ex.exp)
	}
	if anyRegistered && s.cfg.shutdownWait > 0 {
		t := time.NewTimer(s.cfg.shutdownWait)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}

	s.mu.Lock()
	s.refusing.Store(true)
	for lis := range s.listeners {
		lis.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	for _, sc := range conns {
		sc.goAway()
	}

	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("storks: shutdown: %d calls still running: %w", s.inflight.Load(), ctx.Err()))
			s.closeNow()
			return errors.Join(errs...)
		}
	}
	s.closeNow()
	return errors.Join(errs...)
}

// Close stops the server at once: it deregisters every export (bounded by a
// short timeout), closes the listeners and every connection, and cancels the
// contexts of running handlers. Calls in flight fail on the client with
// CodeUnavailable.
func (s *Server) Close() error {
	s.mu.RLock()
	closed := s.closed
	exporters := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exporters = append(exporters, ex)
	}
	s.mu.RUnlock()
	if closed {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, ex := range exporters {
		if err := ex.deregister(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	s.closeNow()
	return errors.Join(errs...)
}

func (s *Server) closeNow() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.refusing.Store(true)
	s.cancel()
	for lis := range s.listeners {
		lis.Close()
	}
	for sc := range s.conns {
		sc.c.Close()
	}
	exporters := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exporters = append(exporters, ex)
	}
	s.mu.Unlock()
	for _, ex := range exporters {
		ex.mu.Lock()
		if !ex.removed {
			ex.removed = true
			close(ex.stop)
		}
		ex.mu.Unlock()
		removeLocal(ex.exp)
	}
	s.bg.Wait()
}

func (s *Server) lookup(key []byte) *export {
	s.mu.RLock()
	e := s.exports[string(key)]
	s.mu.RUnlock()
	return e
}

// call runs a method through the server's interceptors, turning a handler
// panic into CodeInternal.
func (s *Server) call(ctx context.Context, m *method, req any) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.cfg.logger.Error("storks: handler panic", "method", m.info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, Errorf(CodeInternal, "panic in handler %s: %v", m.info.FullMethod, r)
		}
	}()
	if s.interceptor == nil {
		resp, err = m.desc.Handler(m.info.Server, ctx, req)
	} else {
		resp, err = s.interceptor(ctx, req, &m.info, m.handler)
	}
	if err == nil && isNil(resp) {
		err = Errorf(CodeInternal, "handler %s returned a nil response and no error", m.info.FullMethod)
	}
	return resp, err
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// serverConn is one accepted connection.
type serverConn struct {
	s      *Server
	c      net.Conn // as accepted; closing it ends the connection
	rw     net.Conn // frames are read from and written to it: TLS over in, or c
	in     connReader
	w      connWriter
	ctx    context.Context
	cancel context.CancelFunc

	ready     atomic.Bool  // TLS handshake done (if any): frames may be written
	closing   atomic.Bool  // closed by the watchdog, which logged why
	started   atomic.Int64 // requests handed to a handler; written by the reader goroutine
	finished  atomic.Int64 // of those, answered
	readSince atomic.Int64 // see connReader
	wd        struct {     // the watchdog's own state
		seen     int64 // started at the last sweep
		busy     int64 // tick when a request last ran or started
		goAwayAt int64 // tick when goaway was sent for idleness
	}

	mu      sync.Mutex
	running map[uint64]*callCtx // nil once the connection is closing
}

func (s *Server) newConn(c net.Conn) *serverConn {
	ctx, cancel := context.WithCancel(s.ctx)
	sc := &serverConn{s: s, c: c, ctx: ctx, cancel: cancel, running: make(map[uint64]*callCtx)}
	sc.in = connReader{Conn: c, sc: sc}
	sc.rw = c
	if s.cfg.sec.tls != nil {
		sc.rw = tls.Server(&sc.in, s.cfg.sec.tls)
	}
	sc.w = connWriter{conn: sc.rw, limit: maxQueuedReplies, clock: &s.tick}
	sc.wd.busy = s.tick.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		cancel()
		return nil
	}
	s.conns[sc] = struct{}{}
	s.bg.Add(1)
	s.handlers.startJanitor(s)
	return sc
}

func (sc *serverConn) serve() {
	s := sc.s
	defer s.bg.Done()
	defer func() {
		sc.cancel()
		sc.cancelAll()
		sc.c.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
	if !sc.handshake() {
		return
	}
	sc.ready.Store(true)
	var src io.Reader = &sc.in
	if sc.rw != sc.c {
		src = sc.rw
	}
	r := bufio.NewReaderSize(src, 32<<10)
	limit := s.cfg.maxMessageSize
	for {
		if _, err := r.Peek(1); err != nil {
			sc.readFailed(frameHeader{}, err)
			return
		}
		sc.in.frameStarted()
		fh, body, err := readFrame(r, limit)
		sc.in.frameDone()
		if err != nil {
			sc.readFailed(fh, err)
			return
		}
		switch fh.typ {
		case frameRequest:
			if !sc.request(fh.id, body) {
				return
			}
			if sc.w.congested.Load() {
				// The client does not read its replies as fast as it sends
				// requests: take no more until they flow.
				sc.w.awaitRoom()
			}
		case framePing:
			putBuf(body)
			sc.writeEmpty(framePong, fh.id)
		case frameCancel:
			putBuf(body)
			sc.mu.Lock()
			c := sc.running[fh.id]
			sc.mu.Unlock()
			if c != nil {
				c.cancel(context.Canceled)
			}
		default:
			putBuf(body)
			s.cfg.logger.Warn("storks: closing connection: unexpected frame from client", "remote", sc.c.RemoteAddr().String(), "frame", fh.typ.String())
			return
		}
	}
}

func (sc *serverConn) readFailed(fh frameHeader, err error) {
	log := sc.s.cfg.logger
	remote := sc.c.RemoteAddr().String()
	var tl *TooLargeError
	var fe *FrameError
	switch {
	case errors.As(err, &tl):
		log.Warn("storks: closing connection: request frame too large", "remote", remote, "size", tl.Size, "limit", tl.Limit)
		// Goaway first, so the client sends nothing more on a connection
		// that is about to close.
		sc.goAway()
		sc.writeError(tl.ID, Errorf(CodeResourceExhausted, "received message larger than max (%d vs. %d)", tl.Size, tl.Limit), errNotExecuted)
	case errors.As(err, &fe):
		log.Warn("storks: closing connection: "+fe.Reason, "remote", remote)
		sc.goAway()
	case sc.closing.Load(), errors.Is(err, io.EOF), sc.ctx.Err() != nil, errors.Is(err, net.ErrClosed):
	case errors.Is(err, io.ErrUnexpectedEOF):
		log.Warn("storks: closing connection: truncated frame", "remote", remote)
	default:
		log.Debug("storks: connection read failed", "remote", remote, "err", err)
	}
}

// request dispatches one request frame. It returns false if the connection
// must be closed.
func (sc *serverConn) request(id uint64, body *[]byte) bool {
	s := sc.s
	rh, err := parseRequest(*body)
	if err != nil {
		putBuf(body)
		s.cfg.logger.Warn("storks: closing connection: "+err.Error(), "remote", sc.c.RemoteAddr().String())
		return false
	}
	s.inflight.Add(1)
	if s.refusing.Load() {
		s.inflight.Add(-1)
		putBuf(body)
		sc.writeError(id, wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr()), errNotExecuted)
		return true
	}
	exp := s.lookup(rh.key)
	if exp == nil {
		s.inflight.Add(-1)
		e := Errorf(CodeUnimplemented, "service %s is not exported by %s", rh.key, s.Addr())
		putBuf(body)
		sc.writeError(id, e, errNotExecuted)
		return true
	}
	m := exp.methods[string(rh.method)]
	if m == nil {
		s.inflight.Add(-1)
		e := Errorf(CodeUnimplemented, "unknown method %s for service %s", rh.method, exp.keyStr)
		putBuf(body)
		sc.writeError(id, e, errNotExecuted)
		return true
	}
	started := sc.started.Load()
	if limit := s.cfg.sec.maxConcurrent; limit > 0 && started-sc.finished.Load() >= int64(limit) {
		s.inflight.Add(-1)
		putBuf(body)
		sc.writeError(id, Errorf(CodeResourceExhausted, "%d requests are already running on this connection to %s, the limit (WithMaxConcurrentRequests)", limit, s.Addr()), errNotExecuted)
		return true
	}
	sc.started.Store(started + 1)
	c := newCallCtx(sc.ctx, rh.timeout)
	c.sc, c.id, c.m, c.rh, c.body = sc, id, m, rh, body
	s.dispatch(c)
	return true
}

// dispatch runs a request on a handler goroutine; see handlerPool.
func (s *Server) dispatch(c *callCtx) { s.handlers.run(s, c) }

func (sc *serverConn) handle(cctx *callCtx) {
	s := sc.s
	id, m, rh, body := cctx.id, cctx.m, cctx.rh, cctx.body
	cctx.m, cctx.rh.payload, cctx.rh.key, cctx.rh.method, cctx.body = nil, nil, nil, nil, nil
	defer sc.finished.Add(1) // after the reply is queued: bounds the handlers waiting to write
	defer s.inflight.Add(-1)
	sc.mu.Lock()
	if sc.running == nil { // the connection is closing
		sc.mu.Unlock()
		cctx.cancel(context.Canceled)
	} else {
		sc.running[id] = cctx
		sc.mu.Unlock()
	}
	defer sc.endCall(id, cctx)
	var ctx context.Context = cctx
	if rh.metadata != nil {
		ctx = newIncomingContext(ctx, rh.metadata)
	}
	req := m.desc.NewRequest()
	err := s.cfg.codec.Unmarshal(rh.payload, req)
	putBuf(body)
	if err != nil {
		sc.writeError(id, Errorf(CodeInvalidArgument, "decode request for %s: %v", m.info.FullMethod, err), errNotExecuted)
		return
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		sc.writeError(id, toError(err), 0)
		return
	}
	buf := getBuf(headerSize + 1024)
	b := appendHeader(*buf, frameResponse, id, 0)
	b, err = s.cfg.codec.MarshalAppend(b, resp)
	if err == nil && len(b)-headerSize > s.cfg.maxMessageSize {
		err = Errorf(CodeResourceExhausted, "response message larger than max (%d vs. %d)", len(b)-headerSize, s.cfg.maxMessageSize)
	}
	if err != nil {
		*buf = b
		putBuf(buf)
		sc.writeError(id, toError(fmt.Errorf("encode response of %s: %w", m.info.FullMethod, err)), 0)
		return
	}
	setBodyLen(b)
	sc.w.write(b)
	*buf = b
	putBuf(buf)
}

// endCall forgets a finished request and releases its context.
func (sc *serverConn) endCall(id uint64, c *callCtx) {
	sc.mu.Lock()
	if sc.running != nil {
		delete(sc.running, id)
	}
	sc.mu.Unlock()
	c.cancel(context.Canceled)
}

// cancelAll ends the context of every running request: the connection is
// closing.
func (sc *serverConn) cancelAll() {
	sc.mu.Lock()
	running := sc.running
	sc.running = nil
	sc.mu.Unlock()
	for _, c := range running {
		c.cancel(context.Canceled)
	}
}

func (sc *serverConn) writeError(id uint64, e *Error, flags byte) {
	buf := getBuf(headerSize + 16 + len(e.Message))
	b := appendHeader(*buf, frameError, id, 0)
	b = appendErrorBody(b, e, flags)
	setBodyLen(b)
	sc.w.write(b)
	*buf = b
	putBuf(buf)
}

func (sc *serverConn) writeEmpty(t frameType, id uint64) {
	var b [headerSize]byte
	sc.w.write(appendHeader(b[:0], t, id, 0))
}

// goAway tells the client to take its calls elsewhere. It does not wait for
// room in the write queue, and does nothing before the TLS handshake is done.
func (sc *serverConn) goAway() {
	if !sc.ready.Load() {
		return
	}
	var b [headerSize]byte
	sc.w.writeNoWait(appendHeader(b[:0], frameGoAway, 0, 0))
}

// The in-process export table, for local calls.
var local struct {
	mu sync.RWMutex
	m  map[string][]*export
}

func addLocal(e *export) {
	local.mu.Lock()
	defer local.mu.Unlock()
	if local.m == nil {
		local.m = make(map[string][]*export)
	}
	local.m[e.keyStr] = append(local.m[e.keyStr], e)
	localCount.Add(1)
}

func removeLocal(e *export) {
	local.mu.Lock()
	defer local.mu.Unlock()
	list := local.m[e.keyStr]
	for i, x := range list {
		if x == e {
			list = append(list[:i:i], list[i+1:]...)
			localCount.Add(-1)
			break
		}
	}
	if len(list) == 0 {
		delete(local.m, e.keyStr)
	} else {
		local.m[e.keyStr] = list
	}
}

func lookupLocal(key string) *export {
	local.mu.RLock()
	defer local.mu.RUnlock()
	if list := local.m[key]; len(list) > 0 {
		return list[0]
	}
	return nil
}
