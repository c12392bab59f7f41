package examples_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	storks "github.com/storks-rpc/storks/runtime"
)

// loopback is a storks.ServiceRegistrar and a storks.Invoker in one: it
// calls the services exported on it through their generated ServiceDesc, as
// the runtime does for calls it receives, with requests and replies copied
// through the protobuf wire format as if they had crossed the network. It
// lets these tests exercise the generated code alone.
type loopback struct {
	methods map[string]loopbackMethod // by full method name
}

type loopbackMethod struct {
	desc storks.MethodDesc
	impl any
}

func newLoopback() *loopback { return &loopback{methods: make(map[string]loopbackMethod)} }

func (l *loopback) Export(desc *storks.ServiceDesc, impl any, _ ...storks.ExportOption) (*storks.Exporter, error) {
	if want := reflect.TypeOf(desc.HandlerType).Elem(); !reflect.TypeOf(impl).Implements(want) {
		return nil, fmt.Errorf("%T does not implement %v", impl, want)
	}
	for _, m := range desc.Methods {
		l.methods["/"+desc.ServiceName+"/"+m.Name] = loopbackMethod{desc: m, impl: impl}
	}
	return nil, nil
}

func (l *loopback) Invoke(ctx context.Context, method string, req, reply any, _ ...storks.CallOption) error {
	m, ok := l.methods[method]
	if !ok {
		return storks.Errorf(storks.CodeUnimplemented, "unknown method %s", method)
	}
	in := m.desc.NewRequest()
	if err := copyMessage(in, req); err != nil {
		return err
	}
	out, err := m.desc.Handler(m.impl, ctx, in)
	if err != nil {
		return err
	}
	return copyMessage(reply, out)
}

// NewStream is not needed by the example: Greeter has no streaming method.
func (l *loopback) NewStream(_ context.Context, _ *storks.StreamDesc, method string, _ ...storks.CallOption) (storks.ClientStream, error) {
	return nil, storks.Errorf(storks.CodeUnimplemented, "loopback: no streams (%s)", method)
}

// copyMessage copies src into dst through the wire format.
func copyMessage(dst, src any) error {
	b, err := proto.Marshal(src.(proto.Message))
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, dst.(proto.Message))
}

// greeter implements the Greeter service.
type greeter struct {
	greeterv1.UnimplementedGreeterServer
	provider string
}

func (g *greeter) SayHello(_ context.Context, req *greeterv1.HelloRequest) (*greeterv1.HelloReply, error) {
	return &greeterv1.HelloReply{Message: "Hello, " + req.GetName() + "!", Provider: g.provider}, nil
}

func (g *greeter) Fail(_ context.Context, req *greeterv1.FailRequest) (*greeterv1.FailReply, error) {
	return nil, storks.NewError(storks.Code(req.GetCode()), req.GetMessage())
}

// Example shows the generated Greeter API: RegisterGreeterServer exports an
// implementation, NewGreeterClient calls it through an Invoker. With the
// runtime, the registrar is a *storks.Server and the Invoker a reference
// from a *storks.Client; here both are a loopback.
func Example() {
	lb := newLoopback()
	if _, err := greeterv1.RegisterGreeterServer(lb, &greeter{provider: "provider-1"}); err != nil {
		fmt.Println(err)
		return
	}

	client := greeterv1.NewGreeterClient(lb)
	reply, err := client.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "storks"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s (answered by %s)\n", reply.GetMessage(), reply.GetProvider())
	// Output: Hello, storks! (answered by provider-1)
}

func TestGreeterError(t *testing.T) {
	lb := newLoopback()
	if _, err := greeterv1.RegisterGreeterServer(lb, &greeter{}); err != nil {
		t.Fatal(err)
	}
	_, err := greeterv1.NewGreeterClient(lb).Fail(context.Background(),
		&greeterv1.FailRequest{Code: uint32(storks.CodeNotFound), Message: "no such greeting"})
	if !errors.Is(err, &storks.Error{Code: storks.CodeNotFound, Message: "no such greeting"}) {
		t.Fatalf("Fail returned %v, want NotFound: no such greeting", err)
	}
}

// unimplemented embeds UnimplementedGreeterServer and nothing else.
type unimplemented struct {
	greeterv1.UnimplementedGreeterServer
}

func TestUnimplemented(t *testing.T) {
	lb := newLoopback()
	if _, err := greeterv1.RegisterGreeterServer(lb, unimplemented{}); err != nil {
		t.Fatal(err)
	}
	_, err := greeterv1.NewGreeterClient(lb).SayHello(context.Background(), &greeterv1.HelloRequest{})
	want := &storks.Error{Code: storks.CodeUnimplemented, Message: "method SayHello not implemented"}
	if !errors.Is(err, want) {
		t.Fatalf("SayHello returned %v, want %v", err, want)
	}
}

// byPointer embeds UnimplementedGreeterServer by pointer, which
// RegisterGreeterServer refuses (by panicking) when the pointer is nil.
type byPointer struct {
	*greeterv1.UnimplementedGreeterServer
}

func TestEmbeddedByNilPointer(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("RegisterGreeterServer accepted an UnimplementedGreeterServer embedded by nil pointer")
		}
	}()
	_, _ = greeterv1.RegisterGreeterServer(newLoopback(), byPointer{})
}

func TestGreeterServiceDesc(t *testing.T) {
	d := greeterv1.Greeter_ServiceDesc
	if d.ServiceName != "storks.examples.greeter.v1.Greeter" {
		t.Errorf("ServiceName = %q", d.ServiceName)
	}
	if d.Metadata != "greeter/v1/greeter.proto" {
		t.Errorf("Metadata = %q", d.Metadata)
	}
	if _, ok := d.HandlerType.(*greeterv1.GreeterServer); !ok {
		t.Errorf("HandlerType is %T", d.HandlerType)
	}
	want := []struct {
		name       string
		fullName   string
		request    any
		idempotent bool
	}{
		{"SayHello", greeterv1.Greeter_SayHello_FullMethodName, &greeterv1.HelloRequest{}, true},
		{"Fail", greeterv1.Greeter_Fail_FullMethodName, &greeterv1.FailRequest{}, false},
	}
	if len(d.Methods) != len(want) {
		t.Fatalf("%d methods, want %d", len(d.Methods), len(want))
	}
	for i, w := range want {
		m := d.Methods[i]
		if m.Name != w.name || m.Idempotent != w.idempotent {
			t.Errorf("method %d = {%q, idempotent %v}, want {%q, %v}", i, m.Name, m.Idempotent, w.name, w.idempotent)
		}
		if w.fullName != "/"+d.ServiceName+"/"+w.name {
			t.Errorf("full method name %q", w.fullName)
		}
		req := m.NewRequest()
		if reflect.TypeOf(req) != reflect.TypeOf(w.request) {
			t.Errorf("%s: NewRequest returned %T, want %T", m.Name, req, w.request)
		}
		if req == m.NewRequest() {
			t.Errorf("%s: NewRequest returned the same message twice", m.Name)
		}
	}
}

// echo implements the Echo service, whose messages come from other Go
// packages.
type echo struct {
	echov1.UnimplementedEchoServer
	now time.Time
}

func (e *echo) Echo(_ context.Context, t *commonv1.Text) (*commonv1.Text, error) { return t, nil }

func (e *echo) Now(context.Context, *emptypb.Empty) (*timestamppb.Timestamp, error) {
	return timestamppb.New(e.now), nil
}

func (e *echo) Stamp(_ context.Context, t *commonv1.Text) (*commonv1.Stamped, error) {
	return &commonv1.Stamped{Text: t, Provider: "echo-1", Time: timestamppb.New(e.now)}, nil
}

func TestEcho(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	lb := newLoopback()
	if _, err := echov1.RegisterEchoServer(lb, &echo{now: now}); err != nil {
		t.Fatal(err)
	}
	client := echov1.NewEchoClient(lb)

	text, err := client.Echo(ctx, &commonv1.Text{Body: "ping"})
	if err != nil || text.GetBody() != "ping" {
		t.Errorf("Echo = %v, %v", text, err)
	}
	ts, err := client.Now(ctx, &emptypb.Empty{})
	if err != nil || !ts.AsTime().Equal(now) {
		t.Errorf("Now = %v, %v", ts, err)
	}
	stamped, err := client.Stamp(ctx, &commonv1.Text{Body: "pong"})
	if err != nil || stamped.GetText().GetBody() != "pong" || stamped.GetProvider() != "echo-1" || !stamped.GetTime().AsTime().Equal(now) {
		t.Errorf("Stamp = %v, %v", stamped, err)
	}
}
