package otelstorks_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/observability/otelstorks"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

func pipeline(sampler sdktrace.Sampler) []otelstorks.Option {
	return []otelstorks.Option{
		otelstorks.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(discard{}))),
		otelstorks.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))),
		otelstorks.WithPropagators(propagation.TraceContext{}),
	}
}

// nopHandler is a StatsHandler that does nothing.
type nopHandler struct{}

func (nopHandler) TagCall(ctx context.Context, _ *storks.CallInfo) context.Context { return ctx }
func (nopHandler) HandleCall(context.Context, storks.CallEvent)                    {}

// BenchmarkUnary: calls over loopback, client and server in this process,
// without a stats handler (plain), with one that does nothing (seam: what
// the runtime spends on the seam) and with otelstorks' handlers (tracing and metrics on, spans sampled and
// discarded by a batch processor, metrics aggregated and never collected).
func BenchmarkUnary(b *testing.B) {
	for _, name := range []string{"plain", "seam", "otel", "otel-1%"} {
		var sopts []storks.ServerOption
		var copts []storks.ClientOption
		switch name {
		case "seam": // the runtime's side of the seam alone
			sopts = append(sopts, storks.WithStatsHandler(nopHandler{}))
			copts = append(copts, storks.WithStatsHandler(nopHandler{}))
		case "otel": // every span sampled
			sopts = append(sopts, storks.WithStatsHandler(otelstorks.NewServerHandler(pipeline(sdktrace.AlwaysSample())...)))
			copts = append(copts, storks.WithStatsHandler(otelstorks.NewClientHandler(pipeline(sdktrace.AlwaysSample())...)))
		case "otel-1%": // 1% of traces sampled by the client, the server following
			sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))
			sopts = append(sopts, storks.WithStatsHandler(otelstorks.NewServerHandler(pipeline(sampler)...)))
			copts = append(copts, storks.WithStatsHandler(otelstorks.NewClientHandler(pipeline(sampler)...)))
		}
		b.Run(name, func(b *testing.B) {
			srv := testsvc.Start(b, &testsvc.Echo{Name: "p"}, sopts)
			reg, _ := registry.NewStatic(srv.Addr())
			cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(reg)}, copts...)...)
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			ref, err := cli.Refer(context.Background(), testsvc.Service, storks.WithRemote())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := testsvc.Call(context.Background(), ref, "x"); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
