package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
)

// gRPC on the Storks port. A connection whose first bytes are the HTTP/2
// client preface is handed, with the bytes already read, to an embedded
// grpc-go server through an in-memory listener (grpcBridge.lis); the
// serverConn that read them stays in Server.conns, counted by the
// connection limits, until grpc-go closes the connection. The grpc-go
// server has no services of its own but health and reflection: every call
// is routed, like a Storks request, to the export its service and
// metadata name, and runs through the same handler, interceptors and
// panic recovery.

// Request metadata that selects the export a gRPC call is routed to. A
// Storks client puts the version and group in the request's key; a gRPC
// client sends them as metadata. Without them a call goes to the export
// with neither.
const (
	MetadataVersion = "storks-version"
	MetadataGroup   = "storks-group"
)

// MetadataProtocols is the registry metadata key that lists, comma-separated,
// the protocols an export's address answers: "storks,grpc", or "storks" for
// a server made WithoutGRPC. The runtime sets it on every export; a value
// given with WithMetadata is replaced.
const MetadataProtocols = "protocols"

// http2Preface is what every HTTP/2 client sends first (RFC 9113, 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// grpcReplyGrace is how long Shutdown lets grpc-go write the replies of
// the last unary calls before it closes gRPC connections that streams
// keep open.
const grpcReplyGrace = 100 * time.Millisecond

// versionGRPC is serverConn.version for a connection handed to grpc-go.
const versionGRPC = -1

// WithoutGRPC stops the server from answering gRPC clients: a connection
// that starts with the HTTP/2 preface is closed with a logged error, as
// any connection that is not Storks. By default a Server also serves gRPC
// on every listener it serves (see the package doc, "gRPC clients").
func WithoutGRPC() ServerOption {
	return serverFunc(func(c *serverConfig) { c.grpc.off = true })
}

// WithGRPCServerOptions adds options to the embedded grpc-go server that
// answers gRPC clients, after the ones the Server derives from its own
// (credentials, message size limits, keepalive from WithIdleTimeout, the
// routing of calls to exports). Use it for a stats handler, compressors,
// keepalive enforcement and the like; options that replace the
// credentials or the unknown-service handler break the server's gRPC side.
func WithGRPCServerOptions(opts ...grpc.ServerOption) ServerOption {
	for i, o := range opts {
		if o == nil {
			return reject("WithGRPCServerOptions", "option %d is nil", i)
		}
	}
	return serverFunc(func(c *serverConfig) { c.grpc.opts = append(c.grpc.opts, opts...) })
}

type grpcConfig struct {
	off  bool
	opts []grpc.ServerOption
}

// protocols is the MetadataProtocols value of the server's exports.
func (c *serverConfig) protocols() string {
	if c.grpc.off {
		return "storks"
	}
	return "storks,grpc"
}

// grpcBridge is the server's gRPC side, made by the first Serve.
type grpcBridge struct {
	s      *Server
	gs     *grpc.Server
	lis    *handoffListener
	health *health.Server
	// streams holds the cancel function (context.CancelCauseFunc) of
	// every gRPC stream whose handler runs, for Shutdown.
	streams sync.Map
	// watches holds those of the health watches, which end when the
	// drain begins: their clients have seen NOT_SERVING since Shutdown
	// began.
	watches sync.Map
	stopped chan struct{} // closed when gs.Serve returned
	drained chan struct{} // closed when the GracefulStop that drain began returned

	healthMu sync.Mutex      // orders refreshHealth's updates
	known    map[string]bool // service names given a health status; under healthMu
}

// startGRPCLocked makes the server's gRPC side, once, unless it is turned off.
// s.mu is held. The services exported by now get grpc-go's unary fast
// path; later ones are served through the unknown-service handler.
func (s *Server) startGRPCLocked(addr net.Addr) {
	if s.cfg.grpc.off || s.grpc != nil {
		return
	}
	b := &grpcBridge{s: s, lis: newHandoffListener(addr), health: health.NewServer(), stopped: make(chan struct{}), drained: make(chan struct{})}
	sec := &s.cfg.sec
	opts := []grpc.ServerOption{
		grpc.Creds(handoffCreds{}),
		grpc.MaxRecvMsgSize(s.cfg.maxMessageSize),
		grpc.MaxSendMsgSize(s.cfg.maxMessageSize),
		grpc.UnknownServiceHandler(b.unknown),
		grpc.ChainStreamInterceptor(b.track),
	}
	if h := s.cfg.stats; h != nil {
		opts = append(opts, grpc.StatsHandler(grpcStats{h})) // stats_grpc.go
	}
	if sec.maxConcurrent > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(sec.maxConcurrent+s.cfg.maxStreams)))
	}
	if sec.idleTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: sec.idleTimeout}))
	}
	if sec.frameTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(sec.frameTimeout))
	}
	b.gs = grpc.NewServer(append(opts, s.cfg.grpc.opts...)...)
	healthpb.RegisterHealthServer(b.gs, b.health)
	ropts := reflection.ServerOptions{Services: b}
	reflectionv1.RegisterServerReflectionServer(b.gs, reflection.NewServerV1(ropts))
	reflectionv1alpha.RegisterServerReflectionServer(b.gs, reflection.NewServer(ropts))
	for _, sd := range b.fastPath() {
		b.gs.RegisterService(sd, nil)
	}
	s.grpc = b
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(b.stopped)
		_ = b.gs.Serve(b.lis) // returns when the listener closes, by Stop or GracefulStop
	}()
}

// fastPath returns a grpc.ServiceDesc for every service exported now, with
// a handler for each of its methods in any export. s.mu is held.
func (b *grpcBridge) fastPath() []*grpc.ServiceDesc {
	byName := make(map[string]*grpc.ServiceDesc)
	seen := make(map[string]bool)
	for ex := range b.s.exporters {
		e := ex.exp
		sd := byName[e.key.Service]
		if sd == nil {
			sd = &grpc.ServiceDesc{ServiceName: e.key.Service, Metadata: e.desc.Metadata}
			byName[e.key.Service] = sd
		}
		for name := range e.methods {
			if full := e.key.Service + "/" + name; !seen[full] {
				seen[full] = true
				sd.Methods = append(sd.Methods, grpc.MethodDesc{MethodName: name, Handler: b.unaryHandler(e.key.Service, name)})
			}
		}
		for name, sm := range e.streams {
			if full := e.key.Service + "/" + name; !seen[full] {
				seen[full] = true
				service := e.key.Service
				sd.Streams = append(sd.Streams, grpc.StreamDesc{
					StreamName:    name,
					ServerStreams: sm.desc.ServerStreams,
					ClientStreams: sm.desc.ClientStreams,
					Handler: func(_ any, ss grpc.ServerStream) error {
						return b.stream(service, name, ss)
					},
				})
			}
		}
	}
	out := make([]*grpc.ServiceDesc, 0, len(byName))
	for _, sd := range byName {
		out = append(out, sd)
	}
	return out
}

func (b *grpcBridge) unaryHandler(service, name string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		exp, err := b.route(ctx, service)
		if err != nil {
			return nil, err
		}
		m := exp.methods[name]
		if m == nil {
			return nil, b.unknownMethod(exp, name)
		}
		return b.unary(ctx, m, dec)
	}
}

// unary runs m for a gRPC call whose request dec decodes.
func (b *grpcBridge) unary(ctx context.Context, m *method, dec func(any) error) (any, error) {
	s := b.s
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.noteServed()
	req := m.desc.NewRequest()
	if err := dec(req); err != nil {
		return nil, err // a status from grpc-go's codec
	}
	if s.cfg.stats != nil {
		markRan(ctx)
	}
	ctx = incomingGRPCTag(ctx)
	resp, err := s.call(ctx, m, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// stream runs the streaming method name of service for a gRPC stream.
func (b *grpcBridge) stream(service, name string, gss grpc.ServerStream) error {
	exp, err := b.route(gss.Context(), service)
	if err != nil {
		return err
	}
	sm := exp.streams[name]
	if sm == nil {
		return b.unknownMethod(exp, name)
	}
	return b.runStream(sm, gss)
}

// track counts every gRPC stream (a streaming call, a unary call to a
// late export, a health watch, a reflection session) as an open stream,
// and gives it a context that Shutdown ends when its drain is over.
func (b *grpcBridge) track(srv any, gss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	s := b.s
	s.openStreams.Add(1)
	defer s.openStreams.Add(-1)
	s.noteServed()
	ctx, cancel := context.WithCancelCause(gss.Context())
	defer cancel(nil)
	b.streams.Store(&cancel, cancel)
	defer b.streams.Delete(&cancel)
	if info.FullMethod == healthpb.Health_Watch_FullMethodName {
		b.watches.Store(&cancel, cancel)
		defer b.watches.Delete(&cancel)
	}
	return h(srv, &ctxStream{ServerStream: gss, ctx: ctx})
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func (b *grpcBridge) runStream(sm *streamMethod, gss grpc.ServerStream) error {
	s := b.s
	ctx := gss.Context()
	if s.cfg.stats != nil {
		markRan(ctx)
	}
	err := s.handleStream(sm, &grpcServerStream{ServerStream: gss, ctx: incomingGRPCTag(ctx)})
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		var e *Error
		if errors.As(cause, &e) {
			err = e // ended by Shutdown: say so, not "context canceled"
		}
	}
	return toStatus(err)
}

// unknown serves every call for a service the grpc-go server has no
// ServiceDesc of: one exported after the first Serve, or none.
func (b *grpcBridge) unknown(_ any, gss grpc.ServerStream) error {
	full, ok := grpc.MethodFromServerStream(gss)
	if !ok {
		return status.Error(codes.Internal, "storks: gRPC stream without a method name")
	}
	service, name, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return status.Errorf(codes.Unimplemented, "malformed method name %q", full)
	}
	exp, err := b.route(gss.Context(), service)
	if err != nil {
		return err
	}
	if sm := exp.streams[name]; sm != nil {
		return b.runStream(sm, gss)
	}
	m := exp.methods[name]
	if m == nil {
		return b.unknownMethod(exp, name)
	}
	resp, err := b.unary(gss.Context(), m, gss.RecvMsg)
	if err != nil {
		return err
	}
	return gss.SendMsg(resp)
}

// route finds the export a gRPC call for service goes to, by the version
// and group in its metadata. It reads those two keys only: a handler that
// wants the metadata converts it (FromIncomingContext).
func (b *grpcBridge) route(ctx context.Context, service string) (*export, error) {
	s := b.s
	key := ServiceKey{Service: service, Version: lastValue(ctx, MetadataVersion), Group: lastValue(ctx, MetadataGroup)}
	ks := service
	if key.Version != "" || key.Group != "" {
		ks = key.String()
	}
	s.mu.RLock()
	exp := s.exports[ks]
	s.mu.RUnlock()
	if exp == nil {
		e := s.notExported([]byte(ks))
		if key.Version == "" && key.Group == "" && strings.Contains(e.Message, "exports ") {
			e.Message += "; a gRPC client selects a version and group with the metadata " + MetadataVersion + " and " + MetadataGroup
		}
		return nil, toStatus(e)
	}
	return exp, nil
}

// lastValue returns the last value of key in a gRPC call's metadata, or "".
func lastValue(ctx context.Context, key string) string {
	if vs := metadata.ValueFromIncomingContext(ctx, key); len(vs) > 0 {
		return vs[len(vs)-1]
	}
	return ""
}

func (b *grpcBridge) unknownMethod(exp *export, name string) error {
	return status.Errorf(codes.Unimplemented, "unknown method %s for service %s", name, exp.keyStr)
}

// GetServiceInfo lists the services for reflection: the exported ones and
// the grpc-go server's own (health, reflection), but not a service
// registered for the fast path and unexported since.
func (b *grpcBridge) GetServiceInfo() map[string]grpc.ServiceInfo {
	out := make(map[string]grpc.ServiceInfo)
	for name, info := range b.gs.GetServiceInfo() {
		if name == healthpb.Health_ServiceDesc.ServiceName || strings.HasPrefix(name, "grpc.reflection.") {
			out[name] = info
		}
	}
	s := b.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.exports {
		info := out[e.key.Service]
		info.Metadata = e.desc.Metadata
		add := func(m grpc.MethodInfo) {
			if !slices.ContainsFunc(info.Methods, func(o grpc.MethodInfo) bool { return o.Name == m.Name }) {
				info.Methods = append(info.Methods, m)
			}
		}
		for name := range e.methods {
			add(grpc.MethodInfo{Name: name})
		}
		for name, sm := range e.streams {
			add(grpc.MethodInfo{Name: name, IsClientStream: sm.desc.ClientStreams, IsServerStream: sm.desc.ServerStreams})
		}
		out[e.key.Service] = info
	}
	return out
}

// refreshHealth sets the health of every service name the server exports
// or exported: SERVING while an export of it takes calls and is
// registered (or the server has no registry), NOT_SERVING otherwise; and
// of the server (""), SERVING. After Shutdown began grpc-go's health
// server keeps everything NOT_SERVING.
func (s *Server) refreshHealth() {
	s.mu.RLock()
	b := s.grpc
	exs := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exs = append(exs, ex)
	}
	s.mu.RUnlock()
	if b == nil {
		return
	}
	b.healthMu.Lock()
	defer b.healthMu.Unlock()
	serving := make(map[string]bool, len(exs))
	for _, ex := range exs {
		st := ex.State()
		serving[ex.exp.key.Service] = serving[ex.exp.key.Service] || (st == ExportRegistered || st == ExportNoRegistry) && !ex.ruleDisabled.Load()
	}
	for name := range b.known {
		if _, ok := serving[name]; !ok {
			serving[name] = false
		}
	}
	if b.known == nil {
		b.known = make(map[string]bool)
	}
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name, ok := range serving {
		b.known[name] = true
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		b.health.SetServingStatus(name, st)
	}
}

// endStreams ends the gRPC streams still running at the end of Shutdown's
// drain, as Server.endStreams does the Storks ones.
func (b *grpcBridge) endStreams(e *Error) {
	b.streams.Range(func(_, v any) bool {
		v.(context.CancelCauseFunc)(e)
		return true
	})
}

// toStatus converts a handler's error to a gRPC status error with the
// same code (the codes are numbered alike) and message.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	e := toError(err)
	return status.Error(codes.Code(e.Code), e.Message)
}

// fromStatus converts an error of grpc-go's stream methods to the errors a
// Storks handler expects: io.EOF as it is, a status as an *Error.
func fromStatus(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if st, ok := status.FromError(err); ok {
		return &Error{Code: Code(st.Code()), Message: st.Message(), cause: err}
	}
	return err
}

// reservedGRPCKey reports whether an incoming gRPC metadata key is a
// transport header rather than the caller's metadata.
func reservedGRPCKey(k string) bool {
	switch k {
	case "content-type", "user-agent", "te":
		return true
	}
	return strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-")
}

// fromGRPCMetadata returns the caller's metadata of a gRPC call, the last
// value of each key, or nil if there is none.
func fromGRPCMetadata(in metadata.MD) Metadata {
	var md Metadata
	for k, vs := range in {
		if len(vs) == 0 || reservedGRPCKey(k) {
			continue
		}
		if md == nil {
			md = make(Metadata, len(in))
		}
		md[k] = vs[len(vs)-1]
	}
	return md
}

func toGRPCMetadata(md Metadata) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, v := range md {
		k = strings.ToLower(k)
		out[k] = append(out[k], v)
	}
	return out
}

// grpcServerStream is the ServerStream a Storks stream handler gets for a
// gRPC stream.
type grpcServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (ss *grpcServerStream) SetHeader(md Metadata) error {
	return fromStatus(ss.ServerStream.SetHeader(toGRPCMetadata(md)))
}

func (ss *grpcServerStream) SendHeader(md Metadata) error {
	return fromStatus(ss.ServerStream.SendHeader(toGRPCMetadata(md)))
}

func (ss *grpcServerStream) SetTrailer(md Metadata) { ss.ServerStream.SetTrailer(toGRPCMetadata(md)) }

func (ss *grpcServerStream) Context() context.Context { return ss.ctx }

func (ss *grpcServerStream) SendMsg(m any) error {
	if err := ss.ctx.Err(); err != nil {
		return ctxStreamError(ss.ctx)
	}
	return fromStatus(ss.ServerStream.SendMsg(m))
}

func (ss *grpcServerStream) RecvMsg(m any) error {
	if err := ss.ctx.Err(); err != nil {
		return ctxStreamError(ss.ctx)
	}
	return fromStatus(ss.ServerStream.RecvMsg(m))
}

// ctxStreamError is the error of a gRPC stream whose context ended: the
// cause Shutdown gave, or the context's error.
func ctxStreamError(ctx context.Context) error {
	var e *Error
	if errors.As(context.Cause(ctx), &e) {
		return e
	}
	return toError(ctx.Err())
}

// handleStream runs a stream handler through the server's stream
// interceptors, turning a panic into CodeInternal: for remote, in-process
// and gRPC streams alike.
func (s *Server) handleStream(sm *streamMethod, ss ServerStream) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.cfg.logger.Error("storks: handler panic", "method", sm.info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = Errorf(CodeInternal, "panic in handler %s: %v", sm.info.FullMethod, r)
		}
	}()
	if ic := s.streamInterceptor; ic != nil {
		return ic(sm.info.Server, ss, &sm.info, sm.desc.Handler)
	}
	return sm.desc.Handler(sm.info.Server, ss)
}

// toGRPC hands the connection to the gRPC server if what it sent first,
// in the read buffer, is the HTTP/2 preface, and then waits until the
// connection closes. It reports whether it did; if not, the frame loop
// goes on and reports the bytes as it would. The reader goroutine calls it
// before the first frame, when its first byte is the preface's.
func (sc *serverConn) toGRPC() bool {
	s := sc.s
	r := sc.lr.r
	if r == nil {
		return false
	}
	p, err := r.Peek(len(http2Preface))
	if err != nil || string(p) != http2Preface {
		return false
	}
	pre := make([]byte, r.Buffered())
	_, _ = io.ReadFull(r, pre)
	sc.releaseReader()
	sc.in.disarm()

	sc.verMu.Lock()
	if sc.version.Load() != 0 { // a goaway went out: the server is shutting down
		sc.verMu.Unlock()
		return true
	}
	sc.version.Store(versionGRPC)
	sc.verMu.Unlock()

	s.mu.RLock()
	b := s.grpc
	s.mu.RUnlock()
	if b == nil {
		return true
	}
	hc := &handoffConn{Conn: sc.rw, pre: pre, closed: make(chan struct{})}
	if tc, ok := sc.rw.(*tls.Conn); ok {
		hc.tls = tc
	} else {
		hc.Conn = sc.c // read past connReader: its idle detection is the frame loop's
	}
	if !b.lis.hand(hc, sc.ctx.Done()) {
		return true
	}
	select {
	case <-hc.closed:
	case <-sc.ctx.Done():
	}
	return true
}

// handoffListener is the net.Listener the gRPC server accepts the
// connections handed to it from.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// hand gives c to the gRPC server, unless the listener or stop closes
// first; then it closes c.
func (l *handoffListener) hand(c net.Conn, stop <-chan struct{}) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
	case <-stop:
	}
	c.Close()
	return false
}

// handoffConn is a connection handed to the gRPC server: the bytes read
// while detecting the protocol, then the connection (TLS, if the server
// has it).
type handoffConn struct {
	net.Conn
	pre    []byte
	tls    *tls.Conn // nil for plaintext
	closed chan struct{}
	once   sync.Once
}

func (c *handoffConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *handoffConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// handoffCreds are the gRPC server's transport credentials: the TLS
// handshake, if any, is done before the connection is handed over, so
// the handshake only reports it.
type handoffCreds struct{}

func (handoffCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	hc, ok := c.(*handoffConn)
	if !ok || hc.tls == nil {
		return c, insecureInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
	}
	return c, credentials.TLSInfo{State: hc.tls.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handoffCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("storks: handoff credentials are server-side only")
}

func (handoffCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "storks-handoff"}
}

func (handoffCreds) Clone() credentials.TransportCredentials { return handoffCreds{} }

func (handoffCreds) OverrideServerName(string) error { return nil }

type insecureInfo struct{ credentials.CommonAuthInfo }

func (insecureInfo) AuthType() string { return "insecure" }

// stop stops the gRPC side at once: Close, or the end of Shutdown.
func (b *grpcBridge) stop() {
	b.lis.Close()
	b.gs.Stop()
	<-b.stopped
}

// drain starts grpc-go's graceful stop: a GOAWAY on every connection,
// calls in flight run to their end. Shutdown waits for them as for Storks
// calls, and stop ends whatever is left.
func (b *grpcBridge) drain() {
	b.lis.Close()
	b.watches.Range(func(_, v any) bool {
		v.(context.CancelCauseFunc)(nil)
		return true
	})
	s := b.s
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(b.drained)
		b.gs.GracefulStop()
	}()
}
