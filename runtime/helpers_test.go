package runtime_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The test service: "test.Echo" with hand-written descriptors over
// well-known wrapper messages, so the runtime is tested without generated
// code (the generated examples are tested end to end elsewhere).
const echoService = "test.Echo"

type echoServer interface {
	Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type echoImpl struct {
	name  string
	calls atomic.Int64
	// hook, if set, runs instead of the default echo.
	hook func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

func (e *echoImpl) Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	e.calls.Add(1)
	if e.hook != nil {
		return e.hook(ctx, in)
	}
	return wrapperspb.String(e.name + ":" + in.GetValue()), nil
}

var echoDesc = storks.ServiceDesc{
	ServiceName: echoService,
	HandlerType: (*echoServer)(nil),
	Methods: []storks.MethodDesc{{
		Name:       "Echo",
		NewRequest: func() any { return new(wrapperspb.StringValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			return srv.(echoServer).Echo(ctx, req.(*wrapperspb.StringValue))
		},
	}},
}

const echoMethod = "/" + echoService + "/Echo"

func callEcho(ctx context.Context, inv storks.Invoker, s string, opts ...storks.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := inv.Invoke(ctx, echoMethod, wrapperspb.String(s), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func newRegistry(t testing.TB) registry.Registry {
	t.Helper()
	r := registry.NewInproc()
	t.Cleanup(func() { r.Close() })
	return r
}

// logBuffer captures what the runtime logs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startProvider exports impl on a new server on 127.0.0.1 and serves it.
func startProvider(t testing.TB, reg registry.Registry, impl echoServer, sopts []storks.ServerOption, eopts ...storks.ExportOption) (*storks.Server, *countingListener) {
	t.Helper()
	srv := storks.NewServer(append([]storks.ServerOption{storks.WithRegistry(reg), storks.WithShutdownWait(50 * time.Millisecond)}, sopts...)...)
	ex, err := srv.Export(&echoDesc, impl, eopts...)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(cl) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	// Serve registers in the background; a delayed export stays pending.
	waitFor(t, func() bool { return srv.Addr() != "" && ex.State() != storks.ExportRegistering })
	return srv, cl
}

// refer refers the echo service over the network: the providers run in this
// test process, so without WithRemote every call would be a local call.
// newClient returns a client closed when the test ends, failing the test if
// NewClient fails.
func newClient(t testing.TB, opts ...storks.ClientOption) *storks.Client {
	t.Helper()
	cli, err := storks.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func refer(t testing.TB, reg registry.Registry, copts []storks.ClientOption, ropts ...storks.ReferOption) (*storks.Client, *storks.Reference) {
	t.Helper()
	return referMaybeLocal(t, reg, copts, append([]storks.ReferOption{storks.WithRemote()}, ropts...)...)
}

func referMaybeLocal(t testing.TB, reg registry.Registry, copts []storks.ClientOption, ropts ...storks.ReferOption) (*storks.Client, *storks.Reference) {
	t.Helper()
	cli := newClient(t, append([]storks.ClientOption{storks.WithRegistry(reg)}, copts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, echoService, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	return cli, ref
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantCode(t testing.TB, err error, code storks.Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error containing %q, got nil", code, substr)
	}
	if got := storks.CodeOf(err); got != code {
		t.Fatalf("code = %v, want %v (err: %v)", got, code, err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
