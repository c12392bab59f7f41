package runtime_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
)

// These tests call Storks servers with grpc-go's own client: the gRPC side
// of the Storks port (grpc.go).

func dialGRPC(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func grpcEcho(ctx context.Context, cc *grpc.ClientConn, s string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	err := cc.Invoke(ctx, echoMethod, wrapperspb.String(s), out, opts...)
	return out.GetValue(), err
}

func wantStatus(t testing.TB, err error, code codes.Code, substr string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), substr) {
		t.Fatalf("got %v, want a %v status containing %q", err, code, substr)
	}
}

func TestGRPCUnary(t *testing.T) {
	impl := &echoImpl{name: "p"}
	var intercepted atomic.Int64
	ic := func(ctx context.Context, req any, info *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
		intercepted.Add(1)
		if storks.FromIncomingContext(ctx)["deny"] != "" {
			return nil, storks.Errorf(storks.CodePermissionDenied, "denied by interceptor for %s", info.FullMethod)
		}
		return h(ctx, req)
	}
	reg := newRegistry(t)
	var logs logBuffer
	srv, _ := startProvider(t, reg, impl, []storks.ServerOption{storks.WithServerInterceptor(ic), storks.WithLogger(logs.logger())})
	cc := dialGRPC(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := grpcEcho(ctx, cc, "hi")
	if err != nil || got != "p:hi" {
		t.Fatalf("Echo = %q, %v; want p:hi", got, err)
	}
	if intercepted.Load() != 1 {
		t.Fatalf("the server interceptor ran %d times, want 1", intercepted.Load())
	}

	// Metadata and the deadline reach the handler; transport headers do not.
	impl.hook = func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		md := storks.FromIncomingContext(ctx)
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > 5*time.Second {
			return nil, storks.Errorf(storks.CodeFailedPrecondition, "deadline %v %v", dl, ok)
		}
		if _, ok := md["content-type"]; ok {
			return nil, storks.Errorf(storks.CodeFailedPrecondition, "transport header in metadata: %v", md)
		}
		return wrapperspb.String(md["x-user"]), nil
	}
	dctx, dcancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "x-user", "ann"), 5*time.Second)
	got, err = grpcEcho(dctx, cc, "")
	dcancel()
	if err != nil || got != "ann" {
		t.Fatalf("Echo with metadata = %q, %v; want ann", got, err)
	}

	// Interceptor errors, handler errors and panics keep their code and
	// message.
	_, err = grpcEcho(metadata.AppendToOutgoingContext(ctx, "deny", "1"), cc, "")
	wantStatus(t, err, codes.PermissionDenied, "denied by interceptor for /test.Echo/Echo")
	impl.hook = func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return nil, storks.Errorf(storks.CodeNotFound, "no such thing")
	}
	_, err = grpcEcho(ctx, cc, "")
	wantStatus(t, err, codes.NotFound, "no such thing")
	impl.hook = func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { panic("boom") }
	_, err = grpcEcho(ctx, cc, "")
	wantStatus(t, err, codes.Internal, "panic in handler /test.Echo/Echo: boom")

	// A deadline that passes while the handler runs. The handler may run
	// after the client gave up: wait for it before the hook changes.
	ended := make(chan struct{})
	impl.hook = func(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		defer close(ended)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	sctx, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = grpcEcho(sctx, cc, "")
	scancel()
	wantStatus(t, err, codes.DeadlineExceeded, "")
	<-ended

	// Unknown methods and services.
	err = cc.Invoke(ctx, "/test.Echo/Nope", wrapperspb.String(""), new(wrapperspb.StringValue))
	wantStatus(t, err, codes.Unimplemented, "unknown method Nope for service test.Echo")
	err = cc.Invoke(ctx, "/test.Other/Echo", wrapperspb.String(""), new(wrapperspb.StringValue))
	wantStatus(t, err, codes.Unimplemented, "service test.Other is not exported")

	// The Storks protocol still works on the same port.
	impl.hook = nil
	_, ref := refer(t, reg, nil)
	if got, err := callEcho(ctx, ref, "storks"); err != nil || got != "p:storks" {
		t.Fatalf("Storks call = %q, %v", got, err)
	}
}

func TestGRPCStreams(t *testing.T) {
	impl := &streamBoth{}
	srv := startStreamProvider(t, newRegistry(t), impl)
	cc := dialGRPC(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Server streaming.
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, countMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(wrapperspb.Int64(3)); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	var got []string
	for {
		m := new(wrapperspb.StringValue)
		if err := cs.RecvMsg(m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetValue())
	}
	if !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("Count = %q", got)
	}

	// Client streaming.
	cs, err = cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, sumMethod)
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 4; i++ {
		if err := cs.SendMsg(wrapperspb.Int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	cs.CloseSend()
	sum := new(wrapperspb.Int64Value)
	if err := cs.RecvMsg(sum); err != nil || sum.GetValue() != 10 {
		t.Fatalf("Sum = %v, %v; want 10", sum.GetValue(), err)
	}

	// Bidi, with header and trailer metadata set by the handler.
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		if err := st.SendHeader(storks.Metadata{"x-h": storks.FromIncomingContext(st.Context())["x-in"]}); err != nil {
			return err
		}
		st.SetTrailer(storks.Metadata{"x-t": "bye"})
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if string(m.GetValue()) == "fail" {
				return storks.Errorf(storks.CodeAborted, "asked to fail")
			}
			if err := st.Send(m); err != nil {
				return err
			}
		}
	}
	bctx := metadata.AppendToOutgoingContext(ctx, "x-in", "hello")
	cs, err = cc.NewStream(bctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := cs.Header()
	if err != nil || hdr.Get("x-h")[0] != "hello" {
		t.Fatalf("header = %v, %v", hdr, err)
	}
	for _, w := range []string{"a", "b"} {
		if err := cs.SendMsg(wrapperspb.Bytes([]byte(w))); err != nil {
			t.Fatal(err)
		}
		m := new(wrapperspb.BytesValue)
		if err := cs.RecvMsg(m); err != nil || string(m.GetValue()) != w {
			t.Fatalf("Chat echo = %q, %v; want %q", m.GetValue(), err, w)
		}
	}
	if err := cs.SendMsg(wrapperspb.Bytes([]byte("fail"))); err != nil {
		t.Fatal(err)
	}
	err = cs.RecvMsg(new(wrapperspb.BytesValue))
	wantStatus(t, err, codes.Aborted, "asked to fail")
	if tr := cs.Trailer(); len(tr.Get("x-t")) != 1 || tr.Get("x-t")[0] != "bye" {
		t.Fatalf("trailer = %v", tr)
	}

	// A client that cancels: the handler's context ends.
	ended := make(chan error, 1)
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		<-st.Context().Done()
		_, err := st.Recv()
		ended <- err
		return err
	}
	cctx, ccancel := context.WithCancel(ctx)
	if _, err = cc.NewStream(cctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, chatMethod); err != nil {
		t.Fatal(err)
	}
	ccancel()
	select {
	case err := <-ended:
		if storks.CodeOf(err) != storks.CodeCanceled {
			t.Fatalf("handler's Recv after the client canceled: %v, want Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("the handler did not see the client cancel")
	}
}

func TestGRPCVersionsAndLateExports(t *testing.T) {
	srv := storks.NewServer(storks.WithShutdownWait(0))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "v2"}, storks.WithVersion("v2"), storks.WithMetadata(map[string]string{storks.MetadataProtocols: "x", "zone": "a"}))
	if err != nil {
		t.Fatal(err)
	}
	if md := ex.Instance().Metadata; md[storks.MetadataProtocols] != "storks,grpc" || md["zone"] != "a" {
		t.Fatalf("registry metadata = %v, want protocols=storks,grpc and the user's", md)
	}
	if md := storks.NewServer(storks.WithoutGRPC()); true {
		ex, err := md.Export(&echoDesc, &echoImpl{})
		if err != nil || ex.Instance().Metadata[storks.MetadataProtocols] != "storks" {
			t.Fatalf("WithoutGRPC export metadata = %v, %v", ex.Instance().Metadata, err)
		}
		md.Close()
	}
	l, _ := serve(t, srv)
	cc := dialGRPC(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = grpcEcho(ctx, cc, "x")
	wantStatus(t, err, codes.Unimplemented, "test.Echo:v2")
	wantStatus(t, err, codes.Unimplemented, storks.MetadataVersion)
	if got, err := grpcEcho(metadata.AppendToOutgoingContext(ctx, storks.MetadataVersion, "v2"), cc, "x"); err != nil || got != "v2:x" {
		t.Fatalf("Echo with %s: v2 = %q, %v", storks.MetadataVersion, got, err)
	}

	// Exported after Serve: served through the unknown-service handler,
	// unary and streaming alike; a group too.
	if _, err := srv.Export(&echoDesc, &echoImpl{name: "plain"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Export(&streamDesc, &streamBoth{echoImpl: echoImpl{name: "g"}}, storks.WithGroup("blue")); err != nil {
		t.Fatal(err)
	}
	if got, err := grpcEcho(ctx, cc, "x"); err != nil || got != "plain:x" {
		t.Fatalf("Echo of a late export = %q, %v", got, err)
	}
	blue := metadata.AppendToOutgoingContext(ctx, storks.MetadataGroup, "blue")
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(blue, "/"+streamService+"/Echo", wrapperspb.String("y"), out); err != nil || out.GetValue() != "g:y" {
		t.Fatalf("late grouped Echo = %q, %v", out.GetValue(), err)
	}
	cs, err := cc.NewStream(blue, &grpc.StreamDesc{ClientStreams: true}, sumMethod)
	if err != nil {
		t.Fatal(err)
	}
	cs.SendMsg(wrapperspb.Int64(5))
	cs.CloseSend()
	sum := new(wrapperspb.Int64Value)
	if err := cs.RecvMsg(sum); err != nil || sum.GetValue() != 5 {
		t.Fatalf("late Sum = %v, %v", sum.GetValue(), err)
	}
}

func TestGRPCHealthAndReflection(t *testing.T) {
	srv := storks.NewServer(storks.WithRegistry(newRegistry(t)), storks.WithShutdownWait(300*time.Millisecond))
	if _, err := srv.Export(&echoDesc, &echoImpl{name: "p"}); err != nil {
		t.Fatal(err)
	}
	late, err := srv.Export(&streamDesc, &streamBoth{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := serve(t, srv)
	cc := dialGRPC(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(cc)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		return r.GetStatus()
	}
	waitFor(t, func() bool { return check(echoService) == healthpb.HealthCheckResponse_SERVING })
	for _, svc := range []string{"", streamService} {
		if st := check(svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, want SERVING", svc, st)
		}
	}
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "test.Unknown"})
	wantStatus(t, err, codes.NotFound, "")

	// Reflection lists the exports.
	rc, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{echoService, streamService, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Fatalf("reflection lists %q, want %q among them", names, want)
		}
	}

	// An unexported service goes NOT_SERVING and leaves the list.
	if err := late.Unexport(ctx); err != nil {
		t.Fatal(err)
	}
	if st := check(streamService); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Check after Unexport = %v, want NOT_SERVING", st)
	}

	// Watch sees NOT_SERVING when Shutdown begins, before the listener
	// closes.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: echoService})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v", r, err)
	}
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch during shutdown = %v, %v; want NOT_SERVING", r, err)
	}
	if c, err := net.Dial("tcp", l.Addr().String()); err != nil {
		t.Fatalf("the listener closed before the health went NOT_SERVING: %v", err)
	} else {
		c.Close()
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestGRPCGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	impl := &echoImpl{name: "p", hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		started <- struct{}{}
		<-release
		return wrapperspb.String("done"), nil
	}}
	srv, _ := startProvider(t, newRegistry(t), impl, nil)
	cc := dialGRPC(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		got, err := grpcEcho(ctx, cc, "x")
		if err == nil && got != "done" {
			err = errors.New("reply " + got)
		}
		res <- err
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a gRPC call in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-res; err != nil {
		t.Fatalf("the call in flight failed: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

func TestGRPCTLS(t *testing.T) {
	_, serverConf, clientConf := tlsPeers(t)
	srv, _ := startProvider(t, newRegistry(t), &echoImpl{name: "tls"}, []storks.ServerOption{storks.WithTLSConfig(serverConf)})
	cc := dialGRPC(t, srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(clientConf)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := grpcEcho(ctx, cc, "x"); err != nil || got != "tls:x" {
		t.Fatalf("Echo over TLS = %q, %v", got, err)
	}
	// A plaintext gRPC client gets no answer but a closed connection.
	plain := dialGRPC(t, srv.Addr())
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	_, err := grpcEcho(sctx, plain, "x")
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("plaintext gRPC on a TLS server: %v", err)
	}
}

func TestWithoutGRPC(t *testing.T) {
	var logs logBuffer
	impl := &echoImpl{name: "p"}
	srv, _ := startProvider(t, newRegistry(t), impl, []storks.ServerOption{storks.WithoutGRPC(), storks.WithLogger(logs.logger())})
	cc := dialGRPC(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := grpcEcho(ctx, cc, "x")
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Fatalf("gRPC call to a server WithoutGRPC: %v", err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "the peer speaks HTTP/2 (a gRPC client?)") })
}

func TestGRPCAuthAndLimits(t *testing.T) {
	check, err := auth.NewServerInterceptor(auth.WithTokens("s3cret-token"))
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	impl := &echoImpl{name: "p"}
	srv, _ := startProvider(t, newRegistry(t), impl, []storks.ServerOption{
		storks.WithServerInterceptor(check), storks.WithMaxMessageSize(1024), storks.WithLogger(logs.logger()),
	})
	cc := dialGRPC(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err = grpcEcho(ctx, cc, "x")
	wantStatus(t, err, codes.Unauthenticated, "missing credentials")
	_, err = grpcEcho(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer wrong-token"), cc, "x")
	wantStatus(t, err, codes.Unauthenticated, "")
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer s3cret-token")
	if got, err := grpcEcho(authed, cc, "x"); err != nil || got != "p:x" {
		t.Fatalf("Echo with the token = %q, %v", got, err)
	}

	// WithMaxMessageSize bounds gRPC messages too, both ways.
	_, err = grpcEcho(authed, cc, strings.Repeat("a", 2000))
	wantStatus(t, err, codes.ResourceExhausted, "larger than max")
	if _, err = grpcEcho(authed, cc, strings.Repeat("a", 1000)); err != nil {
		t.Fatalf("a request just under the limit: %v", err)
	}
	impl.hook = func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return wrapperspb.String(strings.Repeat("b", 2000)), nil
	}
	_, err = grpcEcho(authed, cc, "x")
	wantStatus(t, err, codes.ResourceExhausted, "larger than max")
}

// Health watches end when Shutdown's drain begins: their clients were told
// NOT_SERVING, and an open watch must not hold the drain for the whole
// stream window (here a minute, past the test's deadline).
func TestGRPCShutdownEndsHealthWatches(t *testing.T) {
	srv := storks.NewServer(storks.WithShutdownWait(time.Minute))
	if _, err := srv.Export(&echoDesc, &echoImpl{name: "p"}); err != nil {
		t.Fatal(err)
	}
	l, _ := serve(t, srv)
	cc := dialGRPC(t, l.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: echoService})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v, %v", r, err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a health watch open: %v", err)
	}
	for {
		r, err := w.Recv()
		if err != nil {
			break
		}
		if r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch during shutdown = %v", r)
		}
	}
}
