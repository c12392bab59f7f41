package runtime_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
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

func (*fakeInvoker) NewStream(context.Context, *storks.StreamDesc, string, ...storks.CallOption) (storks.ClientStream, error) {
	return nil, nil
}

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

// exportEcho exports impl as test.Echo with version on a server that is not
// served: only an in-process call reaches it.
func exportEcho(t testing.TB, reg registry.Registry, impl echoServer, version string, sopts ...storks.ServerOption) {
	t.Helper()
	srv := storks.NewServer(append([]storks.ServerOption{storks.WithRegistry(reg)}, sopts...)...)
	t.Cleanup(func() { srv.Close() })
	if _, err := srv.Export(&echoDesc, impl, storks.WithVersion(version)); err != nil {
		t.Fatal(err)
	}
}

// An in-process call gives the handler a copy of the request, so a handler
// that modifies its request does not change the caller's; WithLocalZeroCopy
// gives it the caller's request itself.
func TestLocalCallCopiesTheRequest(t *testing.T) {
	reg := newRegistry(t)
	var seen *wrapperspb.StringValue
	exportEcho(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		seen = in
		in.Value = "changed by the handler"
		return wrapperspb.String("ok"), nil
	}}, "local")
	for _, zeroCopy := range []bool{false, true} {
		var ropts []storks.ReferOption
		if zeroCopy {
			ropts = append(ropts, storks.WithLocalZeroCopy())
		}
		_, ref := referMaybeLocal(t, reg, nil, append(ropts, storks.WithVersion("local"))...)
		req, reply := wrapperspb.String("mine"), new(wrapperspb.StringValue)
		if err := ref.Invoke(withTimeout(t, 5*time.Second), echoMethod, req, reply); err != nil {
			t.Fatal(err)
		}
		if reply.GetValue() != "ok" {
			t.Fatalf("reply %q", reply.GetValue())
		}
		if zeroCopy {
			if seen != req || req.GetValue() != "changed by the handler" {
				t.Errorf("WithLocalZeroCopy: the handler got %p, not the caller's request %p", seen, req)
			}
		} else if seen == req || req.GetValue() != "mine" {
			t.Errorf("the handler changed the caller's request: %q", req.GetValue())
		}
	}
}

// An in-process call's reply is a copy of what the handler returned: a
// handler that returns a message it keeps, and changes it afterwards, does
// not change the caller's reply; nor does the caller, changing its reply,
// change the handler's message.
func TestLocalCallCopiesTheReply(t *testing.T) {
	reg := newRegistry(t)
	cached := &wrapperspb.StringValue{Value: "cached"}
	exportEcho(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return cached, nil
	}}, "local")
	for _, zeroCopy := range []bool{false, true} {
		var ropts []storks.ReferOption
		if zeroCopy {
			ropts = append(ropts, storks.WithLocalZeroCopy())
		}
		_, ref := referMaybeLocal(t, reg, nil, append(ropts, storks.WithVersion("local"))...)
		reply := &wrapperspb.StringValue{Value: "stale"}
		if err := ref.Invoke(withTimeout(t, 5*time.Second), echoMethod, wrapperspb.String("x"), reply); err != nil {
			t.Fatal(err)
		}
		cached.Value = "changed after the call"
		if reply.GetValue() != "cached" {
			t.Errorf("zero copy %v: reply %q, want %q", zeroCopy, reply.GetValue(), "cached")
		}
		reply.Value = "changed by the caller"
		if cached.GetValue() != "changed after the call" {
			t.Errorf("zero copy %v: the caller changed the handler's message", zeroCopy)
		}
		cached.Value = "cached"
	}
}

// A message the handler's type cannot be merged with (here a dynamic
// message of a descriptor of its own) is copied with the client's codec;
// messages of the handler's own types are not encoded at all.
func TestLocalCallCopiesWithTheCodec(t *testing.T) {
	reg := newRegistry(t)
	var seen *wrapperspb.StringValue
	exportEcho(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		seen = in
		return wrapperspb.String("re:" + in.GetValue()), nil
	}}, "local")
	codec := &countingCodec{}
	_, ref := referMaybeLocal(t, reg, []storks.ClientOption{storks.WithCodec(codec)}, storks.WithVersion("local"))

	if got, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil || got != "re:x" {
		t.Fatalf("got %q, %v", got, err)
	}
	if m, u := codec.marshals.Load(), codec.unmarshals.Load(); m != 0 || u != 0 {
		t.Errorf("protobuf messages of the handler's types: codec marshalled %d and unmarshalled %d times, want none", m, u)
	}

	req, reply := separateStringValue(t, "y"), separateStringValue(t, "")
	if err := ref.Invoke(withTimeout(t, 5*time.Second), echoMethod, req, reply); err != nil {
		t.Fatal(err)
	}
	if seen.GetValue() != "y" || reply.Get(reply.Descriptor().Fields().ByName("value")).String() != "re:y" {
		t.Fatalf("handler saw %v, reply %v", seen, reply)
	}
	if m, u := codec.marshals.Load(), codec.unmarshals.Load(); m != 2 || u != 2 {
		t.Errorf("codec marshalled %d and unmarshalled %d times, want 2 and 2", m, u)
	}
}

// countingCodec is the protobuf codec, counting its calls.
type countingCodec struct {
	storks.ProtoCodec
	marshals, unmarshals atomic.Int64
}

func (c *countingCodec) MarshalAppend(buf []byte, v any) ([]byte, error) {
	c.marshals.Add(1)
	return c.ProtoCodec.MarshalAppend(buf, v)
}

func (c *countingCodec) Unmarshal(data []byte, v any) error {
	c.unmarshals.Add(1)
	return c.ProtoCodec.Unmarshal(data, v)
}

// separateStringValue returns a google.protobuf.StringValue holding s as a
// dynamic message of a descriptor built anew, not the one of wrapperspb:
// proto.Merge cannot mix the two.
func separateStringValue(t testing.TB, s string) *dynamicpb.Message {
	t.Helper()
	fd, err := protodesc.NewFile(protodesc.ToFileDescriptorProto(wrapperspb.File_google_protobuf_wrappers_proto), nil)
	if err != nil {
		t.Fatal(err)
	}
	md := fd.Messages().ByName("StringValue")
	m := dynamicpb.NewMessage(md)
	if s != "" {
		m.Set(md.Fields().ByName("value"), protoreflect.ValueOfString(s))
	}
	return m
}

// Refer says, at Info, when calls of the new reference go to an export in
// this process; a reference that finds one only later says it once, at
// Debug; InProcess reports it.
func TestReferLogsInProcessCalls(t *testing.T) {
	reg := newRegistry(t)
	const want = "storks: calls to test.Echo:local go to the export in this process, not the network; WithRemote() sends them over the network"
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// Refer before the export: nothing to say yet.
	_, early := referMaybeLocal(t, reg, []storks.ClientOption{storks.WithLogger(logger)}, storks.WithVersion("local"))
	if early.InProcess() || strings.Contains(logs.String(), "in this process") {
		t.Fatalf("in process before any export; logs:\n%s", logs.String())
	}
	exportEcho(t, reg, &echoImpl{name: "p"}, "local")
	if !early.InProcess() {
		t.Fatal("InProcess is false with the export in this process")
	}
	for range 3 {
		if _, err := callEcho(withTimeout(t, 5*time.Second), early, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "level=DEBUG msg=\""+want+"\""); n != 1 {
		t.Fatalf("the later reference logged the shortcut %d times at Debug, want once; logs:\n%s", n, logs.String())
	}

	// Refer after the export: one line at Info.
	var infoLogs logBuffer
	_, ref := referMaybeLocal(t, reg, []storks.ClientOption{storks.WithLogger(infoLogs.logger())}, storks.WithVersion("local"))
	if !ref.InProcess() {
		t.Fatal("InProcess is false")
	}
	if _, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil {
		t.Fatal(err)
	}
	if got := infoLogs.String(); strings.Count(got, "level=INFO msg=\""+want+"\" service=test.Echo:local") != 1 || strings.Count(got, "\n") != 1 {
		t.Fatalf("Refer logged:\n%s\nwant one Info line %q", got, want)
	}

	// WithRemote: not in process, nothing logged.
	var remoteLogs logBuffer
	_, remote := referMaybeLocal(t, reg, []storks.ClientOption{storks.WithLogger(remoteLogs.logger())}, storks.WithVersion("local"), storks.WithRemote())
	if remote.InProcess() || remoteLogs.String() != "" {
		t.Fatalf("WithRemote: InProcess %v, logs %q", remote.InProcess(), remoteLogs.String())
	}
}
