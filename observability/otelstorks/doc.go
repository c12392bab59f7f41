// Package otelstorks instruments Storks with OpenTelemetry: traces and
// metrics through the runtime's stats seam (storks.WithStatsHandler), for
// calls and streams on both sides, gRPC clients of a Storks server
// included.
//
//	srv := storks.NewServer(storks.WithStatsHandler(otelstorks.NewServerHandler()))
//	cli, err := storks.NewClient(storks.WithStatsHandler(otelstorks.NewClientHandler()))
//
// The handlers use the global tracer and meter providers and propagator
// unless given others (WithTracerProvider, WithMeterProvider,
// WithPropagators). Set the propagator to propagation.TraceContext{} (with
// otel.SetTextMapPropagator or WithPropagators) to carry W3C trace context:
// the client handler writes traceparent (and tracestate) into the call's
// metadata, and the server handler continues the trace from it, across
// processes.
//
// # Traces
//
// One span per call or stream on each side, named after the method
// ("package.Service/Method"), of kind client or server, with rpc.system.name
// ("storks", or "grpc" for a gRPC client on a Storks port), rpc.method,
// rpc.response.status_code, error.type on failure, storks.service.version and
// storks.service.group when set, and client.address/client.port (server) or
// server.address/server.port of the provider of the last attempt and
// storks.attempt, the number of attempts (client). A client call that made
// more than one attempt, or whose attempt failed, has a span event
// "storks.attempt" per attempt with its number, provider, outcome and
// duration, so a call that failed over shows each provider it tried; a call
// answered at its first attempt has none (its span says it all) and pays
// nothing for them. A request the server refused before any
// interceptor (an unknown method, a limit, an undecodable payload) has
// storks.rejected=true; one for a method or service not exported has
// rpc.method "_OTHER" and rpc.method_original, as the semantic conventions
// require.
//
// # Metrics
//
// Following the RPC semantic conventions (semconv v1.39.0):
// rpc.server.call.duration and rpc.client.call.duration, histograms in
// seconds, with rpc.system.name, rpc.method, rpc.response.status_code,
// error.type (failed calls only), storks.service.version and
// storks.service.group, storks.rejected (server, refused requests), and on
// the client server.address and server.port of the provider (leave them out
// with WithoutProviderAddress). storks.rpc.client.failed_attempts counts the
// attempts that failed, by provider and code: a call that failed over counts
// there once per provider that failed it. Every attribute is bounded: methods are those
// exported or called (a method the server does not know is "_OTHER"),
// codes are Storks' seventeen, and providers are the fleet's; nothing is per
// request. Message sizes are not recorded.
//
// Export the metrics to Prometheus with observability/promstorks.
//
// The module's go directive (1.24) keeps OpenTelemetry at v1.41.0, the last
// release that does not require Go 1.25; the API used here is the same in
// the current one.
package otelstorks
