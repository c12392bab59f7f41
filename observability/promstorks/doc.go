// Package promstorks exposes Storks' metrics to Prometheus: an
// OpenTelemetry MeterProvider read by OpenTelemetry's Prometheus exporter
// (go.opentelemetry.io/otel/exporters/prometheus) into a
// prometheus/client_golang registry, and the HTTP handler that serves it.
//
//	m, err := promstorks.New()
//	srv := storks.NewServer(storks.WithStatsHandler(otelstorks.NewServerHandler(otelstorks.WithMeterProvider(m.MeterProvider()))))
//	health.New(health.WithServer(srv)).RegisterMetrics(m.MeterProvider())
//	http.Handle("/metrics", m.Handler())
//
// Why through OpenTelemetry rather than client_golang collectors of our
// own: the calls are instrumented once (observability/otelstorks), with the
// semantic conventions' names, units and attributes, and the same
// instruments go to Prometheus, to OTLP, or to both; a second, hand-written
// set of Prometheus metrics would drift from them. The exporter turns
// rpc.server.call.duration (unit s) into rpc_server_call_duration_seconds,
// and so on; every label is bounded (see otelstorks and health), none is
// per request.
package promstorks
