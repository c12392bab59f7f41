package otelstorks_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/observability/otelstorks"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
)

// The provider of TestTraceAcrossProcesses runs in a child process: this
// test binary, started again with providerEnv set.
const providerEnv = "OTELSTORKS_TEST_PROVIDER"

func TestMain(m *testing.M) {
	if os.Getenv(providerEnv) != "" {
		runProvider()
		return
	}
	os.Exit(m.Run())
}

// exportedSpan is what the child process reports of each span it ended.
type exportedSpan struct {
	Name, Kind, TraceID, SpanID, ParentSpanID string
	Attributes                                map[string]string
}

// runProvider serves testsvc with a server handler whose spans go to an
// in-memory exporter, prints "ADDR host:port", and when its standard input
// closes shuts down and prints each span as a JSON line.
func runProvider() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	srv := storks.NewServer(storks.WithStatsHandler(otelstorks.NewServerHandler(
		otelstorks.WithTracerProvider(tp), otelstorks.WithPropagators(propagation.TraceContext{}))))
	if _, err := srv.Export(&testsvc.Desc, &testsvc.Echo{Name: "child"}, storks.WithVersion("2.0")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lis, err := listen()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go srv.Serve(lis)
	fmt.Printf("ADDR %s\n", lis.Addr())
	io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	enc := json.NewEncoder(os.Stdout)
	for _, s := range exp.GetSpans() {
		attrs := make(map[string]string)
		for _, kv := range s.Attributes {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		enc.Encode(exportedSpan{Name: s.Name, Kind: s.SpanKind.String(), TraceID: s.SpanContext.TraceID().String(),
			SpanID: s.SpanContext.SpanID().String(), ParentSpanID: s.Parent.SpanID().String(), Attributes: attrs})
	}
}

// TestTraceAcrossProcesses: a call from this process to a provider in
// another yields one trace: the provider's server span is the child of
// this client span, through W3C trace context in the call's metadata.
func TestTraceAcrossProcesses(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), providerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := bufio.NewScanner(stdout)
	var addr string
	if out.Scan() {
		addr = strings.TrimPrefix(out.Text(), "ADDR ")
	}
	if addr == "" {
		t.Fatalf("the provider process printed no address: %v", out.Err())
	}

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	reg, err := registry.NewStatic(addr)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := storks.NewClient(storks.WithRegistry(reg), storks.WithStatsHandler(otelstorks.NewClientHandler(
		otelstorks.WithTracerProvider(tp), otelstorks.WithPropagators(propagation.TraceContext{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, testsvc.Service, storks.WithVersion("2.0"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := testsvc.Call(ctx, ref, "hi"); err != nil || got != "child:hi" {
		t.Fatalf("got %q, %v", got, err)
	}
	stdin.Close()
	var server []exportedSpan
	for out.Scan() {
		var s exportedSpan
		if err := json.Unmarshal(out.Bytes(), &s); err != nil {
			t.Fatalf("%q: %v", out.Text(), err)
		}
		server = append(server, s)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("provider process: %v", err)
	}

	client := exp.GetSpans()
	if len(client) != 1 || len(server) != 1 {
		t.Fatalf("%d client spans, %d server spans; want one each", len(client), len(server))
	}
	c, s := client[0], server[0]
	t.Logf("client span: name=%s kind=%s trace=%s span=%s attrs=%v events=%d", c.Name, c.SpanKind, c.SpanContext.TraceID(), c.SpanContext.SpanID(), attrs(c.Attributes), len(c.Events))
	t.Logf("server span (pid %d): name=%s kind=%s trace=%s span=%s parent=%s attrs=%v", cmd.Process.Pid, s.Name, s.Kind, s.TraceID, s.SpanID, s.ParentSpanID, s.Attributes)
	if s.TraceID != c.SpanContext.TraceID().String() || s.ParentSpanID != c.SpanContext.SpanID().String() {
		t.Fatalf("server span trace %s parent %s; client span trace %s span %s", s.TraceID, s.ParentSpanID, c.SpanContext.TraceID(), c.SpanContext.SpanID())
	}
	if c.Name != "obs.test.Echo/Echo" || c.SpanKind != trace.SpanKindClient || s.Name != c.Name || s.Kind != "server" {
		t.Fatalf("client span %s (%s), server span %s (%s)", c.Name, c.SpanKind, s.Name, s.Kind)
	}
	if s.Attributes["rpc.method"] != "obs.test.Echo/Echo" || s.Attributes["storks.service.version"] != "2.0" || s.Attributes["rpc.response.status_code"] != "OK" || s.Attributes["rpc.system.name"] != "storks" {
		t.Fatalf("server span attributes %v", s.Attributes)
	}
	if a := attrs(c.Attributes); a["server.address"] != "127.0.0.1" || a["storks.attempt"] != "1" || a["storks.service.version"] != "2.0" {
		t.Fatalf("client span attributes %v", a)
	}
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string)
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// telemetry is one side's SDK pipeline with in-memory exporters.
type telemetry struct {
	spans  *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	opts   []otelstorks.Option
}

func newTelemetry() *telemetry {
	t := &telemetry{spans: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	t.opts = []otelstorks.Option{
		otelstorks.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(t.spans))),
		otelstorks.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(t.reader))),
		otelstorks.WithPropagators(propagation.TraceContext{}),
	}
	return t
}

// points returns the data points of the named metric, with its unit.
func (tel *telemetry) points(t *testing.T, name string) (unit string, pts []map[string]string, counts []uint64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					pts = append(pts, attrs(dp.Attributes.ToSlice()))
					counts = append(counts, dp.Count)
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					pts = append(pts, attrs(dp.Attributes.ToSlice()))
					counts = append(counts, uint64(dp.Value))
				}
			}
			return m.Unit, pts, counts
		}
	}
	return "", nil, nil
}

// find returns the count of the point whose attributes include want, and
// whether there is one.
func find(pts []map[string]string, counts []uint64, want map[string]string) (uint64, bool) {
next:
	for i, p := range pts {
		for k, v := range want {
			if p[k] != v {
				continue next
			}
		}
		return counts[i], true
	}
	return 0, false
}

func TestMetricsNamesUnitsAttributes(t *testing.T) {
	stel, ctel := newTelemetry(), newTelemetry()
	srv := testsvc.Start(t, &testsvc.Echo{Name: "p"}, []storks.ServerOption{storks.WithStatsHandler(otelstorks.NewServerHandler(stel.opts...))},
		storks.WithVersion("1.0"), storks.WithGroup("blue"))
	reg, _ := registry.NewStatic(srv.Addr())
	cli, err := storks.NewClient(storks.WithRegistry(reg), storks.WithStatsHandler(otelstorks.NewClientHandler(ctel.opts...)))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(context.Background(), testsvc.Service, storks.WithVersion("1.0"), storks.WithGroup("blue"), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := testsvc.Call(context.Background(), ref, "x"); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"rpc.system.name": "storks", "rpc.method": "obs.test.Echo/Echo", "rpc.response.status_code": "OK",
		"storks.service.version": "1.0", "storks.service.group": "blue"}
	testsvc.WaitFor(t, func() bool {
		_, pts, counts := stel.points(t, "rpc.server.call.duration")
		n, _ := find(pts, counts, want)
		return n == 3
	})
	unit, pts, _ := stel.points(t, "rpc.server.call.duration")
	if unit != "s" || len(pts) != 1 || pts[0]["error.type"] != "" {
		t.Fatalf("server duration: unit %q, points %v", unit, pts)
	}
	unit, pts, counts := ctel.points(t, "rpc.client.call.duration")
	host, port, _ := strings.Cut(srv.Addr(), ":")
	cwant := map[string]string{"server.address": host, "server.port": port}
	for k, v := range want {
		cwant[k] = v
	}
	if n, ok := find(pts, counts, cwant); unit != "s" || !ok || n != 3 {
		t.Fatalf("client duration: unit %q, points %v %v", unit, pts, counts)
	}
	if _, pts, _ = ctel.points(t, otelstorks.MetricClientFailedAttempts); len(pts) != 0 {
		t.Fatalf("failed attempts of calls that all succeeded at once: %v", pts)
	}
}

// TestRejectedRequestsAreCounted: an unknown method, a request over the
// server's concurrency limit and one that fails authentication are each
// counted in rpc.server.call.duration with their error.type.
func TestRejectedRequestsAreCounted(t *testing.T) {
	stel := newTelemetry()
	authIn, err := auth.NewServerInterceptor(auth.WithTokens("secret"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var blocked sync.WaitGroup
	blocked.Add(1)
	impl := &testsvc.Echo{Hook: func(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.GetValue() == "block" {
			blocked.Done()
			<-release
		}
		return in, nil
	}}
	srv := testsvc.Start(t, impl, []storks.ServerOption{
		storks.WithStatsHandler(otelstorks.NewServerHandler(stel.opts...)),
		storks.WithMaxConcurrentRequests(1),
		storks.WithServerInterceptor(authIn),
	})
	reg, _ := registry.NewStatic(srv.Addr())
	authOut, err := auth.NewClientInterceptor("secret")
	if err != nil {
		t.Fatal(err)
	}
	good, err := storks.NewClient(storks.WithRegistry(reg), storks.WithClientInterceptor(authOut))
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	gref, err := good.Refer(context.Background(), testsvc.Service, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	// Over the limit: one call holds the connection's only slot.
	done := make(chan error, 1)
	go func() { _, err := testsvc.Call(context.Background(), gref, "block"); done <- err }()
	blocked.Wait()
	if _, err := testsvc.Call(context.Background(), gref, "x"); storks.CodeOf(err) != storks.CodeResourceExhausted {
		t.Fatalf("call over the limit: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Unknown method.
	if err := gref.Invoke(context.Background(), "/"+testsvc.Service+"/Nope", wrapperspb.String("x"), new(wrapperspb.StringValue)); storks.CodeOf(err) != storks.CodeUnimplemented {
		t.Fatalf("unknown method: %v", err)
	}
	// Service keys the server does not export: the versions a caller asks
	// for are the caller's to choose, so they make no series of their own.
	for _, v := range []string{"9.1", "9.2", "9.3"} {
		vref, err := good.Refer(context.Background(), testsvc.Service, storks.WithVersion(v), storks.WithRemote())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := testsvc.Call(context.Background(), vref, "x"); err == nil {
			t.Fatalf("call of version %s, which is not exported: no error", v)
		}
	}
	// No token.
	bad, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bref, err := bad.Refer(context.Background(), testsvc.Service, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testsvc.Call(context.Background(), bref, "x"); storks.CodeOf(err) != storks.CodeUnauthenticated {
		t.Fatalf("call without a token: %v", err)
	}

	for _, c := range []struct {
		want map[string]string
	}{
		{map[string]string{"rpc.method": "obs.test.Echo/Echo", "error.type": "RESOURCE_EXHAUSTED", "storks.rejected": "true"}},
		{map[string]string{"rpc.method": "_OTHER", "error.type": "UNIMPLEMENTED", "storks.rejected": "true"}},
		{map[string]string{"rpc.method": "obs.test.Echo/Echo", "error.type": "UNAUTHENTICATED", "rpc.response.status_code": "UNAUTHENTICATED"}},
		{map[string]string{"rpc.method": "obs.test.Echo/Echo", "rpc.response.status_code": "OK"}},
	} {
		testsvc.WaitFor(t, func() bool {
			_, pts, counts := stel.points(t, "rpc.server.call.duration")
			n, ok := find(pts, counts, c.want)
			return ok && n >= 1
		})
	}
	_, pts, counts := stel.points(t, "rpc.server.call.duration")
	var other uint64
	for i, p := range pts {
		if v := p["storks.service.version"]; v != "" {
			t.Errorf("a series of version %q, which the server does not export: %v", v, p)
		}
		if p["rpc.method"] == "_OTHER" {
			other += counts[i]
		}
	}
	if other < 4 {
		t.Errorf("%d calls counted under rpc.method _OTHER, want at least 4 (an unknown method, three keys not exported; a retry counts again): %v", other, pts)
	}
	// The unknown method's server span keeps the name it was called with.
	var found bool
	for _, s := range stel.spans.GetSpans() {
		a := attrs(s.Attributes)
		if a["rpc.method_original"] == "obs.test.Echo/Nope" && a["rpc.method"] == "_OTHER" && a["storks.rejected"] == "true" {
			found = true
		}
	}
	if !found {
		t.Fatal("no span of the unknown method")
	}
}

// TestFailoverShowsEachAttempt: a call that fails over from a provider
// answering Unavailable to a healthy one shows both attempts, with their
// providers, as span events and in storks.rpc.client.attempts.
func TestFailoverShowsEachAttempt(t *testing.T) {
	ctel := newTelemetry()
	bad := testsvc.Start(t, &testsvc.Echo{Hook: func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return nil, storks.Errorf(storks.CodeUnavailable, "overloaded")
	}}, nil)
	good := testsvc.Start(t, &testsvc.Echo{Name: "good"}, nil)
	reg, _ := registry.NewStatic(bad.Addr(), good.Addr())
	cli, err := storks.NewClient(storks.WithRegistry(reg), storks.WithStatsHandler(otelstorks.NewClientHandler(ctel.opts...)))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(context.Background(), testsvc.Service, storks.WithRemote(), storks.Failover(2), storks.WithIdempotentMethods("Echo"))
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if got, err := testsvc.Call(context.Background(), ref, "x"); err != nil || got != "good:x" {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	var failedOver *tracetest.SpanStub
	for _, s := range ctel.spans.GetSpans() {
		if attrs(s.Attributes)["storks.attempt"] == "2" {
			failedOver = &s
			break
		}
	}
	if failedOver == nil {
		t.Fatal("no call span with two attempts")
	}
	var ends []map[string]string
	for _, e := range failedOver.Events {
		if e.Name == "storks.attempt" {
			ends = append(ends, attrs(e.Attributes))
		}
	}
	hostPort := func(m map[string]string) string { return m["server.address"] + ":" + m["server.port"] }
	if len(ends) != 2 || hostPort(ends[0]) != bad.Addr() || ends[0]["error.type"] != "UNAVAILABLE" || ends[0]["storks.attempt"] != "1" ||
		hostPort(ends[1]) != good.Addr() || ends[1]["rpc.response.status_code"] != "OK" || ends[1]["storks.attempt"] != "2" {
		t.Fatalf("attempt events %v", ends)
	}
	t.Logf("span %s: attrs %v", failedOver.Name, attrs(failedOver.Attributes))
	for _, e := range ends {
		t.Logf("  event storks.attempt %v", e)
	}
	_, pts, counts := ctel.points(t, otelstorks.MetricClientFailedAttempts)
	badHost, badPort, _ := strings.Cut(bad.Addr(), ":")
	if n, ok := find(pts, counts, map[string]string{"server.address": badHost, "server.port": badPort, "error.type": "UNAVAILABLE"}); !ok || n < 1 {
		t.Fatalf("failed attempts %v %v", pts, counts)
	}
	goodHost, goodPort, _ := strings.Cut(good.Addr(), ":")
	if _, ok := find(pts, counts, map[string]string{"server.address": goodHost, "server.port": goodPort}); ok {
		t.Fatalf("failed attempts on the good provider: %v %v", pts, counts)
	}
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestGRPCClientTraceContinues: a gRPC client that sends W3C trace context
// in its metadata (as otelgrpc does) calls a Storks server: the server span
// is the child of the caller's span, with rpc.system.name "grpc".
func TestGRPCClientTraceContinues(t *testing.T) {
	stel := newTelemetry()
	srv := testsvc.Start(t, &testsvc.Echo{Name: "p"}, []storks.ServerOption{storks.WithStatsHandler(otelstorks.NewServerHandler(stel.opts...))})
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	callerSpans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(callerSpans))
	ctx, span := tp.Tracer("caller").Start(context.Background(), "caller")
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", carrier["traceparent"])
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, testsvc.Method, wrapperspb.String("g"), out); err != nil || out.GetValue() != "p:g" {
		t.Fatalf("gRPC call: %q, %v", out.GetValue(), err)
	}
	span.End()
	testsvc.WaitFor(t, func() bool { return len(stel.spans.GetSpans()) == 1 })
	s := stel.spans.GetSpans()[0]
	a := attrs(s.Attributes)
	if s.Parent.SpanID() != span.SpanContext().SpanID() || s.SpanContext.TraceID() != span.SpanContext().TraceID() ||
		s.SpanKind != trace.SpanKindServer || a["rpc.system.name"] != "grpc" || a["rpc.method"] != "obs.test.Echo/Echo" || a["rpc.response.status_code"] != "OK" {
		t.Fatalf("server span %s parent %s trace %s attrs %v; caller span %s trace %s", s.Name, s.Parent.SpanID(), s.SpanContext.TraceID(), a,
			span.SpanContext().SpanID(), span.SpanContext().TraceID())
	}
	_, pts, counts := stel.points(t, "rpc.server.call.duration")
	if n, ok := find(pts, counts, map[string]string{"rpc.system.name": "grpc", "rpc.method": "obs.test.Echo/Echo"}); !ok || n != 1 {
		t.Fatalf("gRPC call duration %v %v", pts, counts)
	}
}
