package grpcgo

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/common/v1"
	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The unary methods of both services answer a grpc-go client on the
// provider's Storks port, with a deadline and outgoing metadata on every
// call.
func TestUnary(t *testing.T) {
	p := startProvider(t, "inproc://", "unary")
	cc := dial(t, p.addr)
	g, e := greeterv1.NewGreeterClient(cc), echov1.NewEchoClient(cc)
	call := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return metadata.AppendToOutgoingContext(ctx, "x-interop-test", t.Name(), "x-interop-bin", "\x00\xff")
	}

	hello, err := g.SayHello(call(), &greeterv1.HelloRequest{Name: "grpc"})
	if err != nil {
		t.Fatalf("SayHello: %v", err)
	}
	if hello.GetMessage() != "Hello, grpc" || hello.GetProvider() != "unary" {
		t.Errorf("SayHello = %v, want message \"Hello, grpc\" from provider \"unary\"", hello)
	}

	for _, body := range []string{"", "hello", "ünïcödé ✓", strings.Repeat("0123456789abcdef", 64<<10)} {
		out, err := e.Echo(call(), &commonv1.Text{Body: body})
		if err != nil {
			t.Fatalf("Echo(%d bytes): %v", len(body), err)
		}
		if out.GetBody() != body {
			t.Errorf("Echo(%d bytes) = %d bytes, not the same", len(body), len(out.GetBody()))
		}
	}

	before := time.Now()
	now, err := e.Now(call(), &emptypb.Empty{})
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	if got := now.AsTime(); got.Before(before.Add(-time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("Now = %v, want about %v", got, before)
	}

	stamped, err := e.Stamp(call(), &commonv1.Text{Body: "stamp me"})
	if err != nil {
		t.Fatalf("Stamp: %v", err)
	}
	if stamped.GetText().GetBody() != "stamp me" || stamped.GetProvider() != "unary" || stamped.GetTime() == nil {
		t.Errorf("Stamp = %v, want the text, provider \"unary\" and a time", stamped)
	}
}

// A call whose deadline ends before the handler answers fails with
// DeadlineExceeded at the deadline; the handler did run, and the same call
// with time to spare succeeds.
func TestDeadline(t *testing.T) {
	const latency = 500 * time.Millisecond
	log := filepath.Join(t.TempDir(), "requests.log")
	p := startProvider(t, "inproc://", "slow", "-latency", latency.String(), "-log-requests", log)
	g := greeterv1.NewGreeterClient(dial(t, p.addr))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := g.SayHello(ctx, &greeterv1.HelloRequest{Name: "hurry"})
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("SayHello with a 100ms deadline on a %v handler: %v, want code DeadlineExceeded", latency, err)
	}
	if took >= latency {
		t.Errorf("SayHello with a 100ms deadline returned after %v, not before the handler's %v", took, latency)
	}

	start = time.Now()
	if _, err := g.SayHello(timeout(t, 10*time.Second), &greeterv1.HelloRequest{Name: "patient"}); err != nil {
		t.Fatalf("SayHello with a 10s deadline: %v", err)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("SayHello took %v, less than the provider's -latency %v", took, latency)
	}
	if got, want := readLines(t, log), []string{"SayHello hurry", "SayHello patient"}; !slices.Equal(got, want) {
		t.Errorf("handler runs %q, want %q", got, want)
	}
}

// Greeter.Fail fails with the code and message of its request: a grpc-go
// client sees the same code (Storks codes are gRPC codes, number for
// number) and the same message, whatever its characters. Unknown services
// and methods are Unimplemented, and the handler's own errors keep their
// code too.
func TestErrors(t *testing.T) {
	p := startProvider(t, "inproc://", "errors")
	cc := dial(t, p.addr)
	g := greeterv1.NewGreeterClient(cc)

	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		msg := fmt.Sprintf("failed with %v (%d)", c, uint32(c))
		_, err := g.Fail(timeout(t, 10*time.Second), &greeterv1.FailRequest{Code: uint32(c), Message: msg})
		if st := status.Convert(err); st.Code() != c || st.Message() != msg {
			t.Errorf("Fail(%d, %q): code %v, message %q; want %v, %q", uint32(c), msg, st.Code(), st.Message(), c, msg)
		}
	}
	for _, msg := range []string{"ünïcödé ✓ 100% sûr", "two\nlines\tand a tab", "percent %2F and %%", strings.Repeat("long ", 2000)} {
		_, err := g.Fail(timeout(t, 10*time.Second), &greeterv1.FailRequest{Code: uint32(codes.FailedPrecondition), Message: msg})
		if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != msg {
			t.Errorf("Fail(FailedPrecondition, %.40q): code %v, message %.40q", msg, st.Code(), st.Message())
		}
	}

	_, err := g.SayHello(timeout(t, 10*time.Second), &greeterv1.HelloRequest{})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "name is required" {
		t.Errorf("SayHello without a name: %v, want InvalidArgument \"name is required\"", err)
	}

	for _, method := range []string{"/storks.examples.greeter.v1.Greeter/NoSuchMethod", "/no.such.v1.Service/Method"} {
		err := cc.Invoke(timeout(t, 10*time.Second), method, &greeterv1.HelloRequest{Name: "x"}, new(greeterv1.HelloReply))
		if status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: %v, want code Unimplemented", method, err)
		}
	}

	// The connection is still good after the errors.
	if _, err := g.SayHello(timeout(t, 10*time.Second), &greeterv1.HelloRequest{Name: "after"}, grpc.WaitForReady(false)); err != nil {
		t.Errorf("SayHello after the errors: %v", err)
	}
}
