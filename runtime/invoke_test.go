package runtime_test

import (
	"context"
	"net"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// exportGreeter exports the example Greeter as "p" with version, and serves
// it on loopback if serve is set (otherwise only an in-process call reaches
// it).
func exportGreeter(t testing.TB, reg registry.Registry, version string, serve bool) {
	t.Helper()
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithShutdownWait(50*time.Millisecond))
	t.Cleanup(func() { srv.Close() })
	if _, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: "p"}, storks.WithVersion(version)); err != nil {
		t.Fatal(err)
	}
	if !serve {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	waitFor(t, func() bool { return srv.Addr() != "" })
}

// referGreeter refers the Greeter with version, over the network if remote.
func referGreeter(t testing.TB, reg registry.Registry, version string, remote bool, copts []storks.ClientOption, ropts ...storks.ReferOption) *storks.Reference {
	t.Helper()
	cli := newClient(t, append([]storks.ClientOption{storks.WithRegistry(reg)}, copts...)...)
	ropts = append([]storks.ReferOption{storks.WithVersion(version)}, ropts...)
	if remote {
		ropts = append(ropts, storks.WithRemote())
	}
	ref, err := cli.Refer(withTimeout(t, 5*time.Second), greeterv1.Greeter_ServiceName, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !remote || len(ref.Providers()) > 0 })
	return ref
}

// A client interceptor passes the reply its invoker fills: one that passes
// another value (even of another type) fills that one, and one that does
// not call its invoker fills nothing. Either way the generated method
// returns the caller's reply, never panics on a type assertion, and a well
// behaved interceptor can copy what it got into the caller's reply.
func TestInterceptorCannotBreakTheReplyType(t *testing.T) {
	cases := []struct {
		name string
		ic   storks.UnaryClientInterceptor
		want string // the caller's reply's message
	}{
		{"another reply type", func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			return inv(ctx, method, req, new(wrapperspb.StringValue))
		}, ""},
		{"another reply of the same type, copied back", func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			mine := new(greeterv1.HelloReply)
			if err := inv(ctx, method, req, mine); err != nil {
				return err
			}
			mine.Message += "!"
			proto.Merge(reply.(proto.Message), mine)
			return nil
		}, "Hello, x!"},
		{"no call", func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			return nil
		}, ""},
		{"pass-through", func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			return inv(ctx, method, req, reply)
		}, "Hello, x"},
	}
	for _, remote := range []bool{true, false} {
		reg := newRegistry(t)
		exportGreeter(t, reg, "v1", remote)
		for _, tc := range cases {
			name := tc.name + map[bool]string{true: ", remote", false: ", in-process"}[remote]
			t.Run(name, func(t *testing.T) {
				ref := referGreeter(t, reg, "v1", remote, []storks.ClientOption{storks.WithClientInterceptor(tc.ic)})
				reply, err := greeterv1.NewGreeterClient(ref).SayHello(withTimeout(t, 5*time.Second), &greeterv1.HelloRequest{Name: "x"})
				if err != nil {
					t.Fatal(err)
				}
				if reply == nil || reply.GetMessage() != tc.want {
					t.Fatalf("reply %v, want message %q", reply, tc.want)
				}
			})
		}
	}
}

// fakeInvoker is an Invoker BindService does not know.
type fakeInvoker struct{}

func (*fakeInvoker) Invoke(context.Context, string, any, any, ...storks.CallOption) error { return nil }

// BindService returns an Invoker it does not know unchanged, so that a
// generated client made with a fake calls the fake itself.
func TestBindServiceLeavesOtherInvokers(t *testing.T) {
	fake := &fakeInvoker{}
	if got := storks.BindService(fake, &greeterv1.Greeter_ServiceDesc); got != storks.Invoker(fake) {
		t.Fatalf("BindService(fake) = %#v, want the fake", got)
	}
	var nilRef *storks.Reference
	if got := storks.BindService(nilRef, &greeterv1.Greeter_ServiceDesc); got != storks.Invoker(nilRef) {
		t.Fatalf("BindService(nil reference) = %#v", got)
	}
	_, ref := refer(t, newRegistry(t), nil)
	if got := storks.BindService(ref, nil); got != storks.Invoker(ref) {
		t.Fatalf("BindService(ref, nil) = %#v, want the reference", got)
	}
}

// A generated client made with a reference to another service fails every
// call with an error naming both services.
func TestBindServiceToAnotherService(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{name: "p"}, nil)
	_, ref := refer(t, reg, nil)
	_, err := greeterv1.NewGreeterClient(ref).SayHello(withTimeout(t, 5*time.Second), &greeterv1.HelloRequest{Name: "x"})
	wantCode(t, err, storks.CodeInvalidArgument,
		"call /storks.examples.greeter.v1.Greeter/SayHello: the client is for service storks.examples.greeter.v1.Greeter, but its Invoker is a reference to service test.Echo")
	// Binding it again to its own service works.
	if got, err := callEcho(withTimeout(t, 5*time.Second), storks.BindService(ref, &echoDesc), "x"); err != nil || got != "p:x" {
		t.Fatalf("got %q, %v", got, err)
	}
}
