// Package testsvc is the service the observability packages' tests and
// examples call: "obs.test.Echo" with hand-written descriptors over
// well-known wrapper messages, so that they need no generated code.
package testsvc

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	storks "github.com/storks-rpc/storks/runtime"
)

// Service is the service's name; Method its one method's full name.
const (
	Service = "obs.test.Echo"
	Method  = "/" + Service + "/Echo"
)

// Echo implements the service: it answers "Name:value", or what Hook
// answers if it is set.
type Echo struct {
	Name string
	// Hook, if set, answers instead.
	Hook func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type echoServer interface {
	Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

// Echo implements the service.
func (e *Echo) Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if e.Hook != nil {
		return e.Hook(ctx, in)
	}
	return wrapperspb.String(e.Name + ":" + in.GetValue()), nil
}

// Desc describes the service.
var Desc = storks.ServiceDesc{
	ServiceName: Service,
	HandlerType: (*echoServer)(nil),
	Methods: []storks.MethodDesc{{
		Name:       "Echo",
		NewRequest: func() any { return new(wrapperspb.StringValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			return srv.(echoServer).Echo(ctx, req.(*wrapperspb.StringValue))
		},
	}},
}

// Call calls Echo with s through inv.
func Call(ctx context.Context, inv storks.Invoker, s string, opts ...storks.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := inv.Invoke(ctx, Method, wrapperspb.String(s), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// Start exports impl on a new server with opts on 127.0.0.1 and serves it
// until the test ends.
func Start(t testing.TB, impl *Echo, opts []storks.ServerOption, eopts ...storks.ExportOption) *storks.Server {
	t.Helper()
	srv := storks.NewServer(append([]storks.ServerOption{storks.WithShutdownWait(50 * time.Millisecond)}, opts...)...)
	if _, err := srv.Export(&Desc, impl, eopts...); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	WaitFor(t, func() bool { return srv.Addr() != "" })
	return srv
}

// WaitFor waits up to 10 s for cond, failing the test if it stays false.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
