package otelstorks

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.39.0"
	"go.opentelemetry.io/otel/trace"

	storks "github.com/storks-rpc/storks/runtime"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/storks-rpc/storks/observability/otelstorks"

// The attributes Storks adds to the RPC semantic conventions.
const (
	// AttrServiceVersion and AttrServiceGroup are the version and group of
	// the service key called (absent when empty).
	AttrServiceVersion = attribute.Key("storks.service.version")
	AttrServiceGroup   = attribute.Key("storks.service.group")
	// AttrAttempt is the number of an attempt within its call (span
	// events "storks.attempt"), or the number of attempts a call made (the
	// client span).
	AttrAttempt = attribute.Key("storks.attempt")
	// AttrRejected marks a server call refused before any interceptor ran.
	AttrRejected = attribute.Key("storks.rejected")
)

// The metrics, besides rpc.server.call.duration and
// rpc.client.call.duration.
const (
	// MetricClientFailedAttempts counts a client's failed attempts, by
	// provider (server.address, server.port) and code (error.type): a
	// call that failed over to another provider counts one here per
	// provider that failed it, and its success in
	// rpc.client.call.duration, with the provider that answered.
	MetricClientFailedAttempts = "storks.rpc.client.failed_attempts"
)

type config struct {
	tp         trace.TracerProvider
	mp         metric.MeterProvider
	prop       propagation.TextMapPropagator
	noProvider bool
}

// Option configures a handler.
type Option func(*config)

// WithTracerProvider sets the tracer provider (default otel.GetTracerProvider()).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets the meter provider (default otel.GetMeterProvider()).
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithPropagators sets the propagator that carries trace context in call
// metadata (default otel.GetTextMapPropagator(), which is a no-op until set:
// use propagation.TraceContext{} for W3C trace context).
func WithPropagators(p propagation.TextMapPropagator) Option { return func(c *config) { c.prop = p } }

// WithoutProviderAddress leaves the provider's address (server.address,
// server.port) out of the client's metric attributes, for fleets whose
// provider addresses churn so much that one series per provider is too
// many. Spans keep it.
func WithoutProviderAddress() Option { return func(c *config) { c.noProvider = true } }

func newConfig(opts []Option) config {
	c := config{}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = otel.GetTextMapPropagator()
	}
	return c
}

// handler is the StatsHandler of one side.
type handler struct {
	client   bool
	kind     trace.SpanStartOption // the span kind of the side
	cfg      config
	tracer   trace.Tracer
	duration metric.Float64Histogram
	attempts metric.Int64Counter // client only

	// What a call's telemetry needs and depends only on bounded parts
	// of it is made once and kept, so that a call allocates no more than
	// the SDK makes it: the span name and start options of each method
	// and key, the attributes of the span's end, the metric attribute
	// sets. Each cache stops growing at maxCached entries (a server sees
	// the methods and keys its callers ask for, exported or not).
	starts cache[startKey, *spanStart]
	ends   cache[endKey, []attribute.KeyValue]
	sets   cache[setKey, *attrSet]
}

// maxCached bounds each cache of a handler: past it, what is not cached
// is made per call.
const maxCached = 4096

// cache is a concurrent map that stops growing at maxCached entries.
type cache[K comparable, V any] struct {
	m sync.Map
	n atomic.Int64
}

// get returns the value of k, made by mk (and kept, while there is room)
// if the cache does not hold it.
func (c *cache[K, V]) get(k K, mk func() V) V {
	if v, ok := c.m.Load(k); ok {
		return v.(V)
	}
	v := mk()
	if c.n.Load() < maxCached {
		if old, loaded := c.m.LoadOrStore(k, v); loaded {
			return old.(V)
		}
		c.n.Add(1)
	}
	return v
}

// durationBuckets are the bucket boundaries, in seconds, of the call
// duration histograms, as the semantic conventions advise.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// NewServerHandler returns the StatsHandler of a Server: give it to
// storks.NewServer with storks.WithStatsHandler. It starts a server span
// per call, a child of the trace context the caller sent in the call's
// metadata, and records rpc.server.call.duration.
func NewServerHandler(opts ...Option) storks.StatsHandler {
	return newHandler(false, opts)
}

// NewClientHandler returns the StatsHandler of a Client: give it to
// storks.NewClient with storks.WithStatsHandler. It starts a client span
// per call, sends its trace context in the call's metadata, adds a span
// event per attempt with the provider chosen, and records
// rpc.client.call.duration and storks.rpc.client.attempts.
func NewClientHandler(opts ...Option) storks.StatsHandler {
	return newHandler(true, opts)
}

func newHandler(client bool, opts []Option) *handler {
	h := &handler{client: client, cfg: newConfig(opts), kind: trace.WithSpanKind(trace.SpanKindServer)}
	if client {
		h.kind = trace.WithSpanKind(trace.SpanKindClient)
	}
	h.tracer = h.cfg.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
	meter := h.cfg.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	name, desc := "rpc.server.call.duration", "Measures the duration of inbound remote procedure calls."
	if client {
		name, desc = "rpc.client.call.duration", "Measures the duration of outbound remote procedure calls."
	}
	var err error
	h.duration, err = meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	if client {
		h.attempts, err = meter.Int64Counter(MetricClientFailedAttempts, metric.WithUnit("{attempt}"),
			metric.WithDescription("Counts the failed attempts of outbound calls, by provider and code."))
		if err != nil {
			otel.Handle(err)
		}
	}
	return h
}

// metadataCarrier adapts storks.Metadata to a propagation.TextMapCarrier.
type metadataCarrier storks.Metadata

func (c metadataCarrier) Get(key string) string { return c[key] }

func (c metadataCarrier) Set(key, value string) { c[key] = value }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// startKey is what a span's name and start attributes depend on.
type startKey struct {
	method, version, group, protocol string
}

// spanStart is the name and the start options of the spans of one method
// and key.
type spanStart struct {
	name string
	opts []trace.SpanStartOption // the side's kind, the attributes
}

// start returns the spanStart of info's method and key.
func (h *handler) start(info *storks.CallInfo) *spanStart {
	k := startKey{method: info.FullMethod, version: info.Key.Version, group: info.Key.Group, protocol: info.Protocol}
	return h.starts.get(k, func() *spanStart {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, systemAttr(info), semconv.RPCMethod(methodName(info.FullMethod)))
		attrs = appendKeyAttrs(attrs, info.Key)
		return &spanStart{name: methodName(info.FullMethod), opts: []trace.SpanStartOption{h.kind, trace.WithAttributes(attrs...)}}
	})
}

// TagCall implements storks.StatsHandler.
func (h *handler) TagCall(ctx context.Context, info *storks.CallInfo) context.Context {
	st := h.start(info)
	opts := st.opts
	if !h.client {
		if md := storks.FromIncomingContext(ctx); len(md) > 0 {
			ctx = h.cfg.prop.Extract(ctx, metadataCarrier(md))
		}
		if info.Peer != "" {
			if host, port, ok := splitHostPort(info.Peer); ok {
				opts = append(opts[:len(opts):len(opts)], trace.WithAttributes(semconv.ClientAddress(host), semconv.ClientPort(port)))
			}
		}
	}
	ctx, _ = h.tracer.Start(ctx, st.name, opts...)
	if h.client {
		md := make(storks.Metadata, 2)
		h.cfg.prop.Inject(ctx, metadataCarrier(md))
		if len(md) > 0 {
			ctx = storks.NewOutgoingContext(ctx, md)
		}
	}
	// The span is found again with trace.SpanFromContext: the runtime
	// gives HandleCall this context or one derived from it.
	return ctx
}

// HandleCall implements storks.StatsHandler.
func (h *handler) HandleCall(ctx context.Context, ev storks.CallEvent) {
	switch ev.Kind {
	case storks.CallAttemptEnd:
		// A call's only attempt, if it succeeded, is the span itself
		// (server.address, storks.attempt=1): nothing is spent on it.
		if ev.Err == nil && ev.Attempt == 1 {
			return
		}
	case storks.CallEnd:
	default:
		return // payload sizes and attempt beginnings: not recorded (see doc.go)
	}
	span := trace.SpanFromContext(ctx)
	switch ev.Kind {
	case storks.CallAttemptEnd:
		code := statusCode(ev.Code)
		if span.IsRecording() {
			attrs := make([]attribute.KeyValue, 0, 7)
			attrs = append(attrs, AttrAttempt.Int(ev.Attempt))
			attrs = appendServerAddr(attrs, ev.Addr)
			attrs = append(attrs, semconv.RPCResponseStatusCode(code), attribute.Int64("storks.attempt.duration_us", ev.Duration.Microseconds()))
			if ev.Err != nil {
				attrs = append(attrs, semconv.ErrorTypeKey.String(code), attribute.String("exception.message", ev.Err.Error()))
			}
			span.AddEvent("storks.attempt", trace.WithTimestamp(ev.Time), trace.WithAttributes(attrs...))
		}
		if h.attempts != nil && ev.Err != nil {
			h.attempts.Add(context.Background(), 1, h.set(ev, true).add...)
		}
	case storks.CallEnd:
		code := statusCode(ev.Code)
		if span.IsRecording() {
			if unrecognized(ev) {
				span.SetAttributes(append(h.endAttrs(ev, code),
					semconv.RPCMethod("_OTHER"), semconv.RPCMethodOriginal(methodName(ev.Info.FullMethod)))...)
			} else {
				span.SetAttributes(h.endAttrs(ev, code)...)
			}
			if ev.Err != nil {
				span.SetStatus(otelcodes.Error, ev.Err.Error())
			}
		}
		span.End()
		h.duration.Record(context.Background(), ev.Duration.Seconds(), h.set(ev, false).record...)
	}
}

// endKey is what the attributes a span gets at its end depend on: the
// code, and on a client the provider and the number of attempts.
type endKey struct {
	code             storks.Code
	failed, rejected bool
	addr             string
	attempt          int
}

// endAttrs returns the attributes a call's span gets at its end, made once
// per distinct set. The result is shared: append to it only with a copy
// (its capacity is its length).
func (h *handler) endAttrs(ev storks.CallEvent, code string) []attribute.KeyValue {
	k := endKey{code: ev.Code, failed: ev.Err != nil, rejected: ev.Rejected}
	if h.client && ev.Addr != "" {
		k.addr, k.attempt = ev.Addr, ev.Attempt
	}
	return h.ends.get(k, func() []attribute.KeyValue {
		attrs := make([]attribute.KeyValue, 0, 8)
		attrs = append(attrs, semconv.RPCResponseStatusCode(code))
		if k.addr != "" {
			attrs = appendServerAddr(attrs, k.addr)
			attrs = append(attrs, AttrAttempt.Int(k.attempt))
		}
		if k.rejected {
			attrs = append(attrs, AttrRejected.Bool(true))
		}
		if k.failed {
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
		}
		return attrs[:len(attrs):len(attrs)]
	})
}

// setKey is what a metric attribute set depends on: bounded by the
// methods exported or called, the status codes, and (client) the provider
// addresses.
type setKey struct {
	method, version, group, system string
	code                           storks.Code
	failed, rejected, attempt      bool
	addr                           string
}

// attrSet is a metric attribute set as the options of Record and Add,
// made once, so that recording allocates nothing.
type attrSet struct {
	record []metric.RecordOption
	add    []metric.AddOption
}

// set returns the metric attributes of ev, made once per distinct set.
func (h *handler) set(ev storks.CallEvent, attempt bool) *attrSet {
	k := setKey{method: ev.Info.FullMethod, version: ev.Info.Key.Version, group: ev.Info.Key.Group,
		system: ev.Info.Protocol, code: ev.Code, failed: ev.Err != nil, rejected: ev.Rejected, attempt: attempt}
	if unrecognized(ev) {
		// What the caller asked for and the server does not have makes
		// no series of its own: neither its method nor its key's version
		// and group.
		k.method, k.version, k.group = "_OTHER", "", ""
	}
	if h.client && !h.cfg.noProvider {
		k.addr = ev.Addr
	}
	return h.sets.get(k, func() *attrSet {
		method := k.method
		if method != "_OTHER" {
			method = methodName(method)
		}
		code := statusCode(ev.Code)
		attrs := []attribute.KeyValue{systemAttr(ev.Info), semconv.RPCMethod(method), semconv.RPCResponseStatusCode(code)}
		if k.failed {
			attrs = append(attrs, semconv.ErrorTypeKey.String(code))
		}
		attrs = appendKeyAttrs(attrs, storks.ServiceKey{Version: k.version, Group: k.group})
		if k.addr != "" {
			attrs = appendServerAddr(attrs, k.addr)
		}
		if k.rejected {
			attrs = append(attrs, AttrRejected.Bool(true))
		}
		opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
		return &attrSet{record: []metric.RecordOption{opt}, add: []metric.AddOption{opt}}
	})
}

// unrecognized reports a server call refused because its service or
// method is not exported: its method is "_OTHER" in metrics, as the
// semantic conventions require, so that callers cannot make series.
func unrecognized(ev storks.CallEvent) bool {
	return ev.Rejected && !ev.Info.Client && (ev.Code == storks.CodeUnimplemented || ev.Code == storks.CodeNotFound)
}

func systemAttr(info *storks.CallInfo) attribute.KeyValue {
	if info.Protocol == storks.ProtocolGRPC {
		return semconv.RPCSystemNameGRPC
	}
	return semconv.RPCSystemNameKey.String("storks")
}

// methodName is "package.Service/Method", the fully qualified name of
// rpc.method and of spans, from "/package.Service/Method".
func methodName(full string) string { return strings.TrimPrefix(full, "/") }

func appendKeyAttrs(attrs []attribute.KeyValue, key storks.ServiceKey) []attribute.KeyValue {
	if key.Version != "" {
		attrs = append(attrs, AttrServiceVersion.String(key.Version))
	}
	if key.Group != "" {
		attrs = append(attrs, AttrServiceGroup.String(key.Group))
	}
	return attrs
}

// serverAddrs caches the server.address and server.port attributes of
// provider addresses: a process calls a bounded set of providers.
var serverAddrs cache[string, []attribute.KeyValue]

// appendServerAddr appends the server.address and server.port attributes
// of addr to attrs.
func appendServerAddr(attrs []attribute.KeyValue, addr string) []attribute.KeyValue {
	return append(attrs, serverAddrs.get(addr, func() []attribute.KeyValue {
		if host, port, ok := splitHostPort(addr); ok {
			return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(port)}
		}
		return []attribute.KeyValue{semconv.ServerAddress(addr)}
	})...)
}

func splitHostPort(addr string) (string, int, bool) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, false
	}
	return host, port, true
}

// statusCodes are the codes' names as rpc.response.status_code gives
// gRPC's (Storks' codes are gRPC's).
var statusCodes = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

func statusCode(c storks.Code) string {
	if int(c) < len(statusCodes) {
		return statusCodes[c]
	}
	return strconv.Itoa(int(c))
}
