package peers

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"

	"github.com/storks-rpc/storks/observability/otelstorks"
	storks "github.com/storks-rpc/storks/runtime"
)

// The instrumented rows: the storks and grpc-go rows with OpenTelemetry
// tracing and metrics on both sides, through each framework's own
// instrumentation (otelstorks; otelgrpc's stats handlers), with the same
// SDK pipeline: every span sampled and handed to a batch span processor
// whose exporter discards it, every metric aggregated by a meter provider
// whose manual reader is never collected, W3C trace context propagated.
// Each side of a row has a pipeline of its own, as two processes would.
const (
	StorksOTel = "storks+otel"
	GRPCOTel   = "grpc-go+otelgrpc"
)

func storksOTelSpec() Spec {
	return Spec{
		Name:   StorksOTel,
		Kind:   Instrumented,
		Config: "the storks row with observability/otelstorks handlers on server and client (WithStatsHandler): a span per call on each side, sampled, batched to a discarding exporter; rpc.*.call.duration and attempts into an uncollected manual reader; W3C trace context in the call metadata; unary only",
		Start: func() (Instance, error) {
			sp, cp := newOTelPipeline(), newOTelPipeline()
			inst, err := startStorksWith(
				[]storks.ServerOption{storks.WithStatsHandler(otelstorks.NewServerHandler(sp.storks()...))},
				[]storks.ClientOption{storks.WithStatsHandler(otelstorks.NewClientHandler(cp.storks()...))})
			if err != nil {
				return nil, err
			}
			inst.closers = append(closers{sp.shutdown, cp.shutdown}, inst.closers...)
			return unaryOnly{inst}, nil
		},
	}
}

func grpcOTelSpec() Spec {
	return Spec{
		Name:   GRPCOTel,
		Kind:   Instrumented,
		Config: "the grpc-go row with otelgrpc's stats handlers (grpc.StatsHandler(otelgrpc.NewServerHandler), grpc.WithStatsHandler(otelgrpc.NewClientHandler)), with the same SDK pipeline as " + StorksOTel + "; unary only",
		Start: func() (Instance, error) {
			sp, cp := newOTelPipeline(), newOTelPipeline()
			inst, err := startGRPCWith(
				[]grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(sp.grpc()...))},
				[]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(cp.grpc()...))})
			if err != nil {
				return nil, err
			}
			inst.closers = append(closers{sp.shutdown, cp.shutdown}, inst.closers...)
			return unaryOnly{inst}, nil
		},
	}
}

// otelPipeline is one side's OpenTelemetry SDK.
type otelPipeline struct {
	tp *sdktrace.TracerProvider
	mp *sdkmetric.MeterProvider
}

func newOTelPipeline() otelPipeline {
	return otelPipeline{
		tp: sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discardSpans{})),
		mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())),
	}
}

func (p otelPipeline) storks() []otelstorks.Option {
	return []otelstorks.Option{otelstorks.WithTracerProvider(p.tp), otelstorks.WithMeterProvider(p.mp), otelstorks.WithPropagators(propagation.TraceContext{})}
}

func (p otelPipeline) grpc() []otelgrpc.Option {
	return []otelgrpc.Option{otelgrpc.WithTracerProvider(p.tp), otelgrpc.WithMeterProvider(p.mp), otelgrpc.WithPropagators(propagation.TraceContext{})}
}

func (p otelPipeline) shutdown() error {
	ctx := context.Background()
	p.tp.Shutdown(ctx)
	return p.mp.Shutdown(ctx)
}

// discardSpans is a span exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }

func (discardSpans) Shutdown(context.Context) error { return nil }
