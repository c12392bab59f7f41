package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"reflect"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Exports: what a Server answers calls for. Export checks a service
// descriptor and its implementation, makes the export take calls (at once or
// after WithDelay) and registers it once the server has an address;
// Unexport undoes both. A request, remote (serverconn.go) or in-process
// (local.go), finds its export with lookup and runs through call.

// export is an active export: what a request is dispatched to.
type export struct {
	key     ServiceKey
	keyStr  string
	desc    *ServiceDesc
	impl    any
	server  *Server
	methods map[string]*method
	streams map[string]*streamMethod
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

	// registeredAt is the Unix ms of the first registration attempt, which
	// every registration of the export carries as
	// registry.MetadataRegisteredAt (0 before it).
	registeredAt atomic.Int64
	// lastWrite is the Unix ns of the last successful Register (state.go).
	lastWrite atomic.Int64

	mu         sync.Mutex // guards the fields below
	active     bool       // in srv.exports and the local table
	registered bool
	removed    bool
	reg        exportRegistration // register.go
	ruleWatch  bool               // governance_server.go: the rules are followed

	ruleDisabled atomic.Bool // a rule disables this provider
}

// Key returns the service key the export answers to.
func (ex *Exporter) Key() ServiceKey { return ex.exp.key }

// Instance returns the registry entry of the export. Its address is empty
// until the server is serving, and its registry.MetadataRegisteredAt is set
// from the first registration on.
func (ex *Exporter) Instance() registry.Instance {
	ex.srv.mu.RLock()
	defer ex.srv.mu.RUnlock()
	return ex.instance(ex.srv.addr)
}

// instance returns the registry entry of the export at addr, with its
// registration time if it has one.
func (ex *Exporter) instance(addr string) registry.Instance {
	in := ex.inst.Clone()
	in.Addr = addr
	if ms := ex.registeredAt.Load(); ms != 0 {
		in.Metadata[registry.MetadataRegisteredAt] = strconv.FormatInt(ms, 10)
	}
	return in
}

// Export makes impl answer calls for desc's service. It returns an error if
// the server's options or opts are invalid (a CodeInvalidArgument *Error
// whose message starts with the option's name), if desc or impl is
// unusable, if the service key is already exported on this server, or if
// the server is serving, was made WithRegistrationRequired and the
// registration fails. Without that option a failed registration is retried
// in the background (see Exporter.State). Without WithDelay the export
// takes calls when Export returns.
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
	if err := applyOptions(&cfg.optionErrors, "Export", opts, func(o ExportOption) { o.applyExport(&cfg) }); err != nil {
		return nil, err
	}
	key := ServiceKey{Service: desc.ServiceName, Version: cfg.version, Group: cfg.group}
	if err := key.Validate(); err != nil {
		return nil, wrapError(CodeInvalidArgument, err, "export: %v", err)
	}
	exp := &export{key: key, keyStr: key.String(), desc: desc, impl: impl, server: s, methods: make(map[string]*method, len(desc.Methods))}
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
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		if sd.StreamName == "" || sd.Handler == nil {
			return nil, Errorf(CodeInvalidArgument, "export %s: stream %d (%q) needs a name and a handler", key, i, sd.StreamName)
		}
		_, unary := exp.methods[sd.StreamName]
		if _, dup := exp.streams[sd.StreamName]; dup || unary {
			return nil, Errorf(CodeInvalidArgument, "export %s: method %s is listed twice", key, sd.StreamName)
		}
		if exp.streams == nil {
			exp.streams = make(map[string]*streamMethod, len(desc.Streams))
		}
		exp.streams[sd.StreamName] = &streamMethod{desc: sd, info: StreamServerInfo{
			Server: impl, FullMethod: "/" + desc.ServiceName + "/" + sd.StreamName, Key: key,
			IsClientStream: sd.ClientStreams, IsServerStream: sd.ServerStreams,
		}}
	}
	id, err := newInstanceID()
	if err != nil {
		return nil, Errorf(CodeInternal, "export %s: instance ID: %v", key, err)
	}
	weight := registry.DefaultWeight
	if cfg.weight != nil {
		weight = *cfg.weight
	}
	ex := &Exporter{
		srv:  s,
		exp:  exp,
		stop: make(chan struct{}),
		inst: registry.Instance{Key: key, ID: id, Weight: weight, Metadata: maps.Clone(cfg.metadata)},
	}
	if ex.inst.Metadata == nil {
		ex.inst.Metadata = make(map[string]string, 1)
	}
	ex.inst.Metadata[MetadataProtocols] = s.cfg.protocols()
	delete(ex.inst.Metadata, registry.MetadataRegisteredAt) // the runtime's to set
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

// WithWeight sets the weight registered for an export: its relative share
// of the calls of consumers that use a weighted balancer (WeightedRoundRobin,
// WeightedRandom). Without it the export registers registry.DefaultWeight.
// Weight 0 registers a provider that takes no calls from them while any
// other provider of the key has a weight (to drain it, or keep a standby);
// if every provider has weight 0 they share the calls equally. A negative
// weight is an error.
func WithWeight(w int) ExportOption {
	if w < 0 {
		return reject("WithWeight", "weight %d must not be negative", w)
	}
	return exportFunc(func(c *exportConfig) { c.weight = &w })
}

// WithMetadata adds registry metadata to an export. An empty key is an
// error. md is copied; later changes to it have no effect.
func WithMetadata(md map[string]string) ExportOption {
	if _, ok := md[""]; ok {
		return reject("WithMetadata", "a key is empty")
	}
	md = maps.Clone(md)
	return exportFunc(func(c *exportConfig) {
		if c.metadata == nil {
			c.metadata = make(map[string]string, len(md))
		}
		maps.Copy(c.metadata, md)
	})
}

// WithDelay delays an export: the service neither takes calls nor is
// registered until d has passed (Dubbo's delay), for providers that need to
// warm up. A negative delay is an error.
func WithDelay(d time.Duration) ExportOption {
	if d < 0 {
		return reject("WithDelay", "delay %v must not be negative", d)
	}
	return exportFunc(func(c *exportConfig) { c.delay = d })
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
	defer s.refreshHealth()
	return s.register(ctx, ex)
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
	s.refreshHealth()
	return err
}

func newInstanceID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
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
