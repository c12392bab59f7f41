package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// The Server's life: NewServer, Serve (which fixes the advertised address
// and registers the exports), Shutdown and Close. What it exports is in
// export.go, its connections in serverconn.go.

// registryTimeout bounds registry calls the server makes without a caller's
// context (Export after Serve, Close).
const registryTimeout = 10 * time.Second

// Server exports service implementations on one or more listeners and, when
// it has a registry, registers every export there.
//
// All methods are safe for concurrent use.
type Server struct {
	cfg               serverConfig
	interceptor       UnaryServerInterceptor
	streamInterceptor StreamServerInterceptor
	ctx               context.Context
	cancel            context.CancelFunc

	mu        sync.RWMutex
	exports   map[string]*export // active exports by canonical key
	exporters map[*Exporter]struct{}
	probes    sync.Map // registry checks: state.go
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	addr      string // advertised address, set by the first Serve
	closed    bool

	handlers handlerPool  // goroutines that run requests
	refusing atomic.Bool  // new calls get ErrServerClosed
	inflight atomic.Int64 // calls being handled
	// served counts the calls and streams handled, for WithLoadReport.
	served atomic.Uint64
	// openStreams counts the streams whose handler runs, remote or
	// in-process; localStreams holds the in-process ones
	// (*localClientStream), for Shutdown.
	openStreams  atomic.Int64
	localStreams sync.Map
	bg           sync.WaitGroup

	warns    warnLimiter    // connection warnings; loglimit.go
	perIP    map[string]int // open connections by client IP, with WithMaxConnectionsPerIP; guarded by mu
	refusals atomic.Int32   // refused connections being answered; connlimit.go
	cfgErr   error          // an invalid option; Serve returns it
	epoch    time.Time      // tick counts from here
	tick     atomic.Int64   // coarse clock in ns since epoch, +1; see limits.go
	watching bool           // the watchdog runs; guarded by mu
	loadRep  bool           // the load reporter runs; guarded by mu
	grpc     *grpcBridge    // the gRPC side, made by the first Serve; guarded by mu
}

// NewServer returns a server with the options applied. Every option is
// checked; NewServer itself returns no error (as grpc.NewServer), but if an
// option is invalid, Export and Serve return a CodeInvalidArgument *Error
// whose message starts with the name of the first invalid option, for
// example "WithCodec: codec is nil". Close and Shutdown work either way.
func NewServer(opts ...ServerOption) *Server {
	cfg := serverConfig{
		maxMessageSize: DefaultMaxMessageSize,
		shutdownWait:   DefaultShutdownWait,
		maxStreams:     DefaultMaxConcurrentStreams,
		codec:          ProtoCodec{},
		logger:         slog.Default(),
		sec:            defaultServerSecurity(),
	}
	cfgErr := applyOptions(&cfg.optionErrors, "NewServer", opts, func(o ServerOption) { o.applyServer(&cfg) })
	if cfg.maxMessageSize <= 0 {
		cfg.maxMessageSize = DefaultMaxMessageSize
	}
	if t := cfg.sec.tls; t != nil && !cfg.grpc.off && !slices.Contains(t.NextProtos, "h2") {
		// gRPC clients require ALPN h2 (grpc-go since 1.67); Storks
		// clients offer none, or their own.
		t.NextProtos = append(t.NextProtos, "h2")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:               cfg,
		interceptor:       chainServer(cfg.interceptors),
		streamInterceptor: chainStreamServer(cfg.streamServerInterceptors),
		ctx:               ctx,
		cancel:            cancel,
		exports:           make(map[string]*export),
		exporters:         make(map[*Exporter]struct{}),
		listeners:         make(map[net.Listener]struct{}),
		conns:             make(map[*serverConn]struct{}),
		cfgErr:            cfgErr,
		epoch:             time.Now(),
	}
	s.tick.Store(1)
	return s
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
// active export. A registration that fails is logged and retried in the
// background while the server takes calls (see Exporter.State); with
// WithRegistrationRequired, Serve closes lis and returns the error instead.
// Serve returns ErrServerClosed (wrapped) after Shutdown or Close, and a
// CodeInvalidArgument error naming the option if the server's options are
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
	s.startGRPCLocked(lis.Addr())
	if sec := &s.cfg.sec; !s.watching && (sec.frameTimeout > 0 || sec.idleTimeout > 0) {
		s.watching = true
		s.bg.Add(1)
		go s.watch()
	}
	if s.cfg.loadReport != nil && s.cfg.registry != nil && !s.loadRep {
		s.loadRep = true
		s.bg.Add(1)
		go newLoadReporter(s, time.Now).run()
	}
	pending := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		pending = append(pending, ex)
	}
	s.bg.Add(1)
	s.mu.Unlock()
	defer s.bg.Done()

	ctx, cancel := context.WithTimeout(s.ctx, registryTimeout)
	if err := s.registerAll(ctx, pending); err != nil {
		cancel()
		s.removeListener(lis)
		return err
	}
	cancel()
	s.refreshHealth()

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
		if sc := s.newConn(c); sc != nil {
			go sc.serve()
		}
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
		return configured, nil // checked by WithAdvertiseAddr
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

// Shutdown stops the server gracefully: it deregisters every export (and
// stops the registrations still retried), waits the propagation window
// (WithShutdownWait) so consumers stop choosing this provider, unless no
// export was registered, then refuses new calls with CodeUnavailable, tells
// every connected client to go away, waits for the calls in flight, and
// closes.
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
	b := s.grpc
	s.mu.Unlock()
	if b != nil {
		b.health.Shutdown() // NOT_SERVING for every service, from now on
	}

	var errs []error
	anyRegistered := false
	for _, ex := range exporters {
		was, err := ex.withdraw(ctx)
		anyRegistered = anyRegistered || was
		if err != nil {
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
	if b != nil {
		b.drain()
	}

	// Calls run to their end (bounded by ctx); open streams get
	// shutdownWait more to end by themselves, then end with Unavailable.
	// gRPC connections drain alike (grpc-go's GracefulStop returns once
	// every gRPC call has ended and its reply was written); a gRPC stream
	// still open shutdownWait after its context ended (its handler blocks
	// in RecvMsg, which the context does not end) has its connection
	// closed, once no unary call has run for grpcReplyGrace (no new one
	// starts after the drain began, and grpc-go writes a reply right after
	// its handler returns).
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	streamsEnd := time.NewTimer(s.cfg.shutdownWait)
	defer streamsEnd.Stop()
	var grpcDrained <-chan struct{}
	var grpcForce <-chan time.Time
	forceDue := false
	lastBusy := time.Now()
	if b != nil {
		grpcDrained = b.drained
	}
	for s.inflight.Load() > 0 || s.openStreams.Load() > 0 || grpcDrained != nil {
		if s.inflight.Load() > 0 {
			lastBusy = time.Now()
		} else if forceDue && time.Since(lastBusy) >= grpcReplyGrace {
			forceDue = false
			b.gs.Stop()
		}
		select {
		case <-tick.C:
		case <-grpcDrained:
			grpcDrained = nil
		case <-grpcForce:
			grpcForce, forceDue = nil, true
		case <-streamsEnd.C:
			if grpcDrained != nil {
				force := time.NewTimer(s.cfg.shutdownWait)
				defer force.Stop()
				grpcForce = force.C
			}
			s.endStreams()
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("storks: shutdown: %d calls and %d streams still running: %w", s.inflight.Load(), s.openStreams.Load(), ctx.Err()))
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
	b := s.grpc
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
	defer s.flushWarnings(true) // after the connections' last words
	if b != nil {
		b.stop()
	}
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

// DefaultShutdownWait is how long Shutdown waits after deregistering, so that
// consumers learn of the removal before the server stops taking calls.
const DefaultShutdownWait = 2 * time.Second

// WithAdvertiseAddr sets the host:port registered for every export instead of
// the listener's bound address, for providers behind NAT or in containers.
// The address must be a dialable host:port with a port in 1..65535 and a
// specified host (not 0.0.0.0 or ::); anything else is an error.
func WithAdvertiseAddr(addr string) ServerOption {
	if err := registry.ValidateAddr(addr); err != nil {
		return reject("WithAdvertiseAddr", "%s", inputReason(err))
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return reject("WithAdvertiseAddr", "address %q has an unspecified host, which consumers cannot dial", addr)
	}
	return serverFunc(func(c *serverConfig) { c.advertise = addr })
}

// WithShutdownWait sets how long Shutdown waits between deregistering and
// refusing new calls (default DefaultShutdownWait). Zero does not wait; a
// negative wait is an error.
func WithShutdownWait(d time.Duration) ServerOption {
	if d < 0 {
		return reject("WithShutdownWait", "shutdown wait %v must not be negative", d)
	}
	return serverFunc(func(c *serverConfig) { c.shutdownWait = d })
}
