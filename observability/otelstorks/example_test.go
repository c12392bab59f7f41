package otelstorks_test

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/observability/otelstorks"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// A provider and a consumer, each with its handler: the consumer's call and
// the provider's handling of it are one trace.
func Example() {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	opts := []otelstorks.Option{otelstorks.WithTracerProvider(tp), otelstorks.WithPropagators(propagation.TraceContext{})}

	srv := storks.NewServer(storks.WithStatsHandler(otelstorks.NewServerHandler(opts...)))
	srv.Export(&testsvc.Desc, &testsvc.Echo{Name: "provider"})
	lis, _ := listen()
	go srv.Serve(lis)
	defer srv.Close()

	reg, _ := registry.NewStatic(lis.Addr().String())
	cli, _ := storks.NewClient(storks.WithRegistry(reg), storks.WithStatsHandler(otelstorks.NewClientHandler(opts...)))
	defer cli.Close()
	// WithRemote: in one process, calls would otherwise take the in-process
	// shortcut, which has a client span and no server span.
	ref, _ := cli.Refer(context.Background(), testsvc.Service, storks.WithRemote())
	reply, err := testsvc.Call(context.Background(), ref, "hello")
	fmt.Println(reply, err)

	srv.Close() // the server span ends before Close returns
	got := spans.GetSpans()
	fmt.Println(len(got), "spans,", "one trace:", got[0].SpanContext.TraceID() == got[1].SpanContext.TraceID())
	// Output:
	// provider:hello <nil>
	// 2 spans, one trace: true
}
