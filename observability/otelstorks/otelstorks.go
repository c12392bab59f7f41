package otelstorks

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"

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

	sets sync.Map // setKey -> attribute.Set: metric attribute sets, bounded
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

// TagCall implements storks.StatsHandler.
func (h *handler) TagCall(ctx context.Context, info *storks.CallInfo) context.Context {
	if !h.client {
		if md := storks.FromIncomingContext(ctx); len(md) > 0 {
			ctx = h.cfg.prop.Extract(ctx, metadataCarrier(md))
		}
	}
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, systemAttr(info), semconv.RPCMethod(methodName(info.FullMethod)))
	attrs = appendKeyAttrs(attrs, info.Key)
	if !h.client && info.Peer != "" {
		if host, port, ok := splitHostPort(info.Peer); ok {
			attrs = append(attrs, semconv.ClientAddress(host), semconv.ClientPort(port))
		}
	}
	ctx, _ = h.tracer.Start(ctx, methodName(info.FullMethod), h.kind, trace.WithAttributes(attrs...))
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
			attrs := make([]attribute.KeyValue, 0, 8)
			attrs = append(attrs, semconv.RPCResponseStatusCode(code))
			if h.client && ev.Addr != "" {
				attrs = appendServerAddr(attrs, ev.Addr)
				attrs = append(attrs, AttrAttempt.Int(ev.Attempt))
			}
			if ev.Rejected {
				attrs = append(attrs, AttrRejected.Bool(true))
			}
			if unrecognized(ev) {
				attrs = append(attrs, semconv.RPCMethod("_OTHER"), semconv.RPCMethodOriginal(methodName(ev.Info.FullMethod)))
			}
			if ev.Err != nil {
				attrs = append(attrs, semconv.ErrorTypeKey.String(code))
				span.SetStatus(otelcodes.Error, ev.Err.Error())
			}
			span.SetAttributes(attrs...)
		}
		span.End()
		h.duration.Record(context.Background(), ev.Duration.Seconds(), h.set(ev, false).record...)
	}
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
		k.method = "_OTHER"
	}
	if h.client && !h.cfg.noProvider {
		k.addr = ev.Addr
	}
	if v, ok := h.sets.Load(k); ok {
		return v.(*attrSet)
	}
	method := k.method
	if method != "_OTHER" {
		method = methodName(method)
	}
	code := statusCode(ev.Code)
	attrs := []attribute.KeyValue{systemAttr(ev.Info), semconv.RPCMethod(method), semconv.RPCResponseStatusCode(code)}
	if k.failed {
		attrs = append(attrs, semconv.ErrorTypeKey.String(code))
	}
	attrs = appendKeyAttrs(attrs, ev.Info.Key)
	if k.addr != "" {
		attrs = appendServerAddr(attrs, k.addr)
	}
	if k.rejected {
		attrs = append(attrs, AttrRejected.Bool(true))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	as := &attrSet{record: []metric.RecordOption{opt}, add: []metric.AddOption{opt}}
	v, _ := h.sets.LoadOrStore(k, as)
	return v.(*attrSet)
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
var serverAddrs sync.Map // string -> []attribute.KeyValue

func appendServerAddr(attrs []attribute.KeyValue, addr string) []attribute.KeyValue {
	if v, ok := serverAddrs.Load(addr); ok {
		return append(attrs, v.([]attribute.KeyValue)...)
	}
	kvs := []attribute.KeyValue{semconv.ServerAddress(addr)}
	if host, port, ok := splitHostPort(addr); ok {
		kvs = []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(port)}
	}
	serverAddrs.Store(addr, kvs)
	return append(attrs, kvs...)
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
