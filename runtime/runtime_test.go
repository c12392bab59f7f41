package runtime_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

func TestCallOverTCP(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{name: "p1"}, nil)
	_, ref := refer(t, reg, nil)
	got, err := callEcho(context.Background(), ref, "hi")
	if err != nil || got != "p1:hi" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestManyConcurrentCallsShareOneConnection(t *testing.T) {
	reg := newRegistry(t)
	impl := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		// Reply out of order: later requests may overtake earlier ones.
		var n int
		fmt.Sscan(in.GetValue(), &n)
		time.Sleep(time.Duration(n%7) * time.Millisecond)
		return wrapperspb.String("re:" + in.GetValue()), nil
	}}
	_, lis := startProvider(t, reg, impl, nil)
	_, ref := refer(t, reg, nil)
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprint(i)
			got, err := callEcho(context.Background(), ref, want)
			if err != nil {
				errs <- err
			} else if got != "re:"+want {
				errs <- fmt.Errorf("call %d got reply %q", i, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := lis.accepted.Load(); c != 1 {
		t.Fatalf("server accepted %d connections, want 1", c)
	}
	if c := impl.calls.Load(); c != n {
		t.Fatalf("handler ran %d times, want %d", c, n)
	}
}

func TestUnknownMethodIsUnimplemented(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{}, nil)
	_, ref := refer(t, reg, nil)
	err := ref.Invoke(context.Background(), "/"+echoService+"/Nope", wrapperspb.String("x"), new(wrapperspb.StringValue))
	wantCode(t, err, storks.CodeUnimplemented, "unknown method Nope for service test.Echo")
	err = ref.Invoke(context.Background(), "/other.Svc/Echo", wrapperspb.String("x"), new(wrapperspb.StringValue))
	wantCode(t, err, storks.CodeInvalidArgument, `does not belong to service test.Echo`)
}

func TestHandlerErrorCrossesTheWire(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		switch in.GetValue() {
		case "typed":
			return nil, storks.Errorf(storks.CodeNotFound, "no user %q", "bob")
		case "panic":
			panic("boom")
		case "nil":
			return nil, nil
		}
		return nil, errors.New("plain failure")
	}}, nil)
	_, ref := refer(t, reg, nil)
	ctx := context.Background()

	_, err := callEcho(ctx, ref, "typed")
	wantCode(t, err, storks.CodeNotFound, `no user "bob"`)
	var e *storks.Error
	if !errors.As(err, &e) || e.Message != `no user "bob"` {
		t.Fatalf("errors.As: %#v", err)
	}
	if !errors.Is(err, &storks.Error{Code: storks.CodeNotFound}) || errors.Is(err, &storks.Error{Code: storks.CodeInternal}) {
		t.Fatal("errors.Is by code does not work")
	}
	_, err = callEcho(ctx, ref, "plain")
	wantCode(t, err, storks.CodeUnknown, "plain failure")
	_, err = callEcho(ctx, ref, "panic")
	wantCode(t, err, storks.CodeInternal, "panic in handler /test.Echo/Echo: boom")
	_, err = callEcho(ctx, ref, "nil")
	wantCode(t, err, storks.CodeInternal, "returned a nil response")
}

func TestDeadlineCrossesTheWire(t *testing.T) {
	reg := newRegistry(t)
	handlerErr := make(chan error, 1)
	var sawDeadline atomic.Bool
	startProvider(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		_, ok := ctx.Deadline()
		sawDeadline.Store(ok)
		<-ctx.Done()
		handlerErr <- ctx.Err()
		return nil, ctx.Err()
	}}, nil)
	_, ref := refer(t, reg, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := callEcho(ctx, ref, "slow")
	wantCode(t, err, storks.CodeDeadlineExceeded, "deadline exceeded")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error does not wrap context.DeadlineExceeded: %v", err)
	}
	if !sawDeadline.Load() {
		t.Fatal("handler context had no deadline")
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("call took %v", el)
	}
	select {
	case herr := <-handlerErr:
		if !errors.Is(herr, context.DeadlineExceeded) {
			t.Fatalf("handler context ended with %v, want deadline exceeded", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was never cancelled")
	}
}

func TestCancelCrossesTheWire(t *testing.T) {
	reg := newRegistry(t)
	handlerErr := make(chan error, 1)
	started := make(chan struct{})
	startProvider(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		close(started)
		<-ctx.Done()
		handlerErr <- ctx.Err()
		return nil, ctx.Err()
	}}, nil)
	_, ref := refer(t, reg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	_, err := callEcho(ctx, ref, "x")
	wantCode(t, err, storks.CodeCanceled, "canceled")
	select {
	case herr := <-handlerErr:
		if !errors.Is(herr, context.Canceled) {
			t.Fatalf("handler context ended with %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context was not cancelled by the client's cancel")
	}
}

func TestMetadataAndInterceptors(t *testing.T) {
	reg := newRegistry(t)
	var order []string
	var mu sync.Mutex
	rec := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	si := func(name string) storks.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
			rec("server " + name + " " + info.FullMethod)
			return h(ctx, req)
		}
	}
	ci := func(name string) storks.UnaryClientInterceptor {
		return func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			rec("client " + name)
			return inv(storks.NewOutgoingContext(ctx, storks.Metadata{"from-" + name: "yes"}), method, req, reply)
		}
	}
	startProvider(t, reg, &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		md := storks.FromIncomingContext(ctx)
		return wrapperspb.String(fmt.Sprintf("trace=%s a=%s b=%s call=%s", md["trace"], md["from-a"], md["from-b"], md["per-call"])), nil
	}}, []storks.ServerOption{storks.WithServerInterceptor(si("1"), si("2"))})
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithClientInterceptor(ci("a"), ci("b"))})
	ctx := storks.NewOutgoingContext(context.Background(), storks.Metadata{"trace": "t-1"})
	got, err := callEcho(ctx, ref, "x", storks.WithCallMetadata(storks.Metadata{"per-call": "pc"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := "trace=t-1 a=yes b=yes call=pc"; got != want {
		t.Fatalf("handler saw %q, want %q", got, want)
	}
	want := []string{"client a", "client b", "server 1 /test.Echo/Echo", "server 2 /test.Echo/Echo"}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("interceptor order %q, want %q", order, want)
	}
}

func TestNoProvider(t *testing.T) {
	reg := newRegistry(t)
	_, ref := refer(t, reg, nil, storks.WithVersion("v9"), storks.WithGroup("blue"))
	_, err := callEcho(context.Background(), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "no provider for blue/test.Echo:v9")
	if !errors.Is(err, storks.ErrNoProvider) {
		t.Fatalf("not ErrNoProvider: %v", err)
	}
}

func TestVersionAndGroupIsolation(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{name: "v1"}, nil, storks.WithVersion("v1"))
	startProvider(t, reg, &echoImpl{name: "v2"}, nil, storks.WithVersion("v2"))
	startProvider(t, reg, &echoImpl{name: "v2blue"}, nil, storks.WithVersion("v2"), storks.WithGroup("blue"))
	for _, c := range []struct {
		opts []storks.ReferOption
		want string
	}{
		{[]storks.ReferOption{storks.WithVersion("v1")}, "v1:x"},
		{[]storks.ReferOption{storks.WithVersion("v2")}, "v2:x"},
		{[]storks.ReferOption{storks.WithVersion("v2"), storks.WithGroup("blue")}, "v2blue:x"},
	} {
		_, ref := refer(t, reg, nil, c.opts...)
		for range 5 {
			if got, err := callEcho(context.Background(), ref, "x"); err != nil || got != c.want {
				t.Fatalf("%v: got %q, %v; want %q", ref.Key(), got, err, c.want)
			}
		}
	}
}

// A raw connection sends bytes that are not Storks frames: the server closes
// that connection, logs why, and keeps serving everyone else.
func TestHostileBytesCloseOnlyThatConnection(t *testing.T) {
	cases := []struct {
		name    string
		payload func() []byte
		log     string
		reply   string // error text the server sends before closing, if any
	}{
		{"garbage", func() []byte { return []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, "bad magic", ""},
		{"oversized frame", func() []byte {
			b := []byte{'S', 'K', 1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(b[12:], 0xFFFFFFF0)
			return b
		}, "request frame too large", "received message larger than max (4294967280 vs. 4194304)"},
		{"metadata past end", func() []byte {
			body := []byte{9, 't', 'e', 's', 't', '.', 'E', 'c', 'h', 'o', 4, 'E', 'c', 'h', 'o', 0, 1, 200, 1}
			b := []byte{'S', 'K', 1, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, byte(len(body))}
			return append(b, body...)
		}, "metadata key length 200 runs past the end", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg := newRegistry(t)
			var logs logBuffer
			srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithLogger(logs.logger())})
			_, ref := refer(t, reg, nil)
			if _, err := callEcho(context.Background(), ref, "before"); err != nil {
				t.Fatal(err)
			}
			raw, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := raw.Write(c.payload()); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(bufio.NewReader(raw))
			if err != nil {
				t.Fatalf("server did not close the connection: %v", err)
			}
			if c.reply != "" && !strings.Contains(string(rest), c.reply) {
				t.Fatalf("server replied %q, want it to contain %q", rest, c.reply)
			}
			waitFor(t, func() bool { return strings.Contains(logs.String(), c.log) })
			if got, err := callEcho(context.Background(), ref, "after"); err != nil || got != "p:after" {
				t.Fatalf("other client broken after hostile input: %q, %v", got, err)
			}
		})
	}
}

func TestMessageSizeLimits(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithMaxMessageSize(1000)})
	big := strings.Repeat("x", 2000)

	// The client's own limit is checked before sending.
	_, small := refer(t, reg, []storks.ClientOption{storks.WithMaxMessageSize(1500)})
	_, err := callEcho(context.Background(), small, big)
	wantCode(t, err, storks.CodeResourceExhausted, "message larger than max (")
	if !errors.Is(err, storks.ErrMessageTooLarge) || !strings.Contains(err.Error(), "vs. 1500)") {
		t.Fatalf("err = %v", err)
	}
	if got, err := callEcho(context.Background(), small, "ok"); err != nil || got != "p:ok" {
		t.Fatalf("connection unusable after local rejection: %q %v", got, err)
	}

	// The server's limit: it answers with the sizes, then closes.
	_, ref := refer(t, reg, nil)
	_, err = callEcho(context.Background(), ref, big)
	wantCode(t, err, storks.CodeResourceExhausted, "vs. 1000)")
	if got, err := callEcho(context.Background(), ref, "again"); err != nil || got != "p:again" {
		t.Fatalf("reference did not reconnect: %q %v", got, err)
	}
}

func TestUnexportRemovesProvider(t *testing.T) {
	reg := newRegistry(t)
	a := &echoImpl{name: "a"}
	b := &echoImpl{name: "b"}
	startProvider(t, reg, a, nil)
	srvB := storks.NewServer(storks.WithRegistry(reg))
	exB, err := srvB.Export(&echoDesc, b)
	if err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srvB.Serve(lis)
	defer srvB.Close()
	_, ref := refer(t, reg, nil)
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	ctx := context.Background()
	if err := exB.Unexport(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := reg.Discover(ctx, storks.ServiceKey{Service: echoService})
	if err != nil || len(list) != 1 || list[0].Addr == srvB.Addr() {
		t.Fatalf("registry after unexport: %v, %v", list, err)
	}
	waitFor(t, func() bool { return len(ref.Providers()) == 1 })
	before := b.calls.Load()
	for range 20 {
		if got, err := callEcho(ctx, ref, "x"); err != nil || got != "a:x" {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	if b.calls.Load() != before {
		t.Fatal("unexported provider still got calls")
	}
}

func TestShutdownDeregistersDrainsAndRefuses(t *testing.T) {
	reg := newRegistry(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	impl := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.GetValue() == "slow" {
			entered <- struct{}{}
			<-release
		}
		return wrapperspb.String("done:" + in.GetValue()), nil
	}}
	srv, _ := startProvider(t, reg, impl, []storks.ServerOption{storks.WithShutdownWait(200 * time.Millisecond)})
	_, ref := refer(t, reg, nil)
	slow := make(chan error, 1)
	go func() {
		got, err := callEcho(context.Background(), ref, "slow")
		if err == nil && got != "done:slow" {
			err = fmt.Errorf("got %q", got)
		}
		slow <- err
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	key := storks.ServiceKey{Service: echoService}
	waitFor(t, func() bool { l, _ := reg.Discover(context.Background(), key); return len(l) == 0 })
	// The registration is gone; the in-flight call is still running.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v before the in-flight call finished", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("in-flight call failed during shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// A client that still had the old address gets a clear refusal.
	raw := newClient(t, storks.WithRegistry(mustOpen(t, "direct://"+srv.Addr())))
	r2, err := raw.Refer(context.Background(), echoService)
	if err != nil {
		t.Fatal(err)
	}
	_, err = callEcho(context.Background(), r2, "late")
	wantCode(t, err, storks.CodeUnavailable, "")
}

func mustOpen(t testing.TB, url string) registry.Registry {
	t.Helper()
	r, err := registry.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestDelayedExport(t *testing.T) {
	reg := newRegistry(t)
	srv, _ := startProvider(t, reg, &echoImpl{name: "late"}, nil, storks.WithDelay(300*time.Millisecond))
	key := storks.ServiceKey{Service: echoService}
	l, _ := reg.Discover(context.Background(), key)
	if len(l) != 0 {
		t.Fatalf("registered before the delay: %v", l)
	}
	waitFor(t, func() bool { l, _ := reg.Discover(context.Background(), key); return len(l) == 1 })
	if l, _ := reg.Discover(context.Background(), key); l[0].Addr != srv.Addr() {
		t.Fatalf("registered address %q, server bound %q", l[0].Addr, srv.Addr())
	}
}

func TestExportRegistersBoundAndAdvertisedAddress(t *testing.T) {
	reg := newRegistry(t)
	srv, _ := startProvider(t, reg, &echoImpl{}, nil, storks.WithWeight(7), storks.WithMetadata(map[string]string{"zone": "a"}))
	l, _ := reg.Discover(context.Background(), storks.ServiceKey{Service: echoService})
	if len(l) != 1 || l[0].Addr != srv.Addr() || !strings.HasPrefix(l[0].Addr, "127.0.0.1:") || l[0].Weight != 7 || l[0].Metadata["zone"] != "a" || l[0].ID == "" {
		t.Fatalf("registered %+v", l)
	}
	reg2 := newRegistry(t)
	startProvider(t, reg2, &echoImpl{}, []storks.ServerOption{storks.WithAdvertiseAddr("10.1.2.3:7000")})
	l, _ = reg2.Discover(context.Background(), storks.ServiceKey{Service: echoService})
	if len(l) != 1 || l[0].Addr != "10.1.2.3:7000" {
		t.Fatalf("advertised %+v", l)
	}
}

func TestLocalCallsSkipNetworkAndSerialization(t *testing.T) {
	reg := newRegistry(t)
	var seen atomic.Pointer[wrapperspb.StringValue]
	var sawDeadline atomic.Bool
	impl := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		seen.Store(in)
		_, ok := ctx.Deadline()
		sawDeadline.Store(ok)
		if storks.FromIncomingContext(ctx)["k"] != "v" {
			return nil, errors.New("metadata missing")
		}
		return wrapperspb.String("local"), nil
	}}
	var intercepted atomic.Int64
	// Exported, never served: there is no listener, so only a local call
	// can reach it.
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithServerInterceptor(func(ctx context.Context, req any, info *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
		intercepted.Add(1)
		return h(ctx, req)
	}))
	defer srv.Close()
	if _, err := srv.Export(&echoDesc, impl, storks.WithVersion("local")); err != nil {
		t.Fatal(err)
	}
	_, ref := referMaybeLocal(t, reg, nil, storks.WithVersion("local"))
	in := wrapperspb.String("x")
	ctx, cancel := context.WithTimeout(storks.NewOutgoingContext(context.Background(), storks.Metadata{"k": "v"}), time.Second)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := ref.Invoke(ctx, echoMethod, in, out); err != nil {
		t.Fatal(err)
	}
	if out.GetValue() != "local" || seen.Load() == in || seen.Load().GetValue() != "x" {
		t.Fatalf("reply %q, handler saw %v (the caller's request: %v); want a copy of the request", out.GetValue(), seen.Load(), seen.Load() == in)
	}
	if !sawDeadline.Load() || intercepted.Load() != 1 {
		t.Fatalf("deadline seen %v, interceptor ran %d times", sawDeadline.Load(), intercepted.Load())
	}
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	err := ref.Invoke(expired, echoMethod, in, new(wrapperspb.StringValue))
	wantCode(t, err, storks.CodeDeadlineExceeded, "deadline exceeded")

	// WithRemote refuses the shortcut: with nothing served, no provider.
	_, remote := refer(t, reg, nil, storks.WithVersion("local"), storks.WithRemote())
	err = remote.Invoke(context.Background(), echoMethod, in, new(wrapperspb.StringValue))
	wantCode(t, err, storks.CodeUnavailable, "")
}

func TestExportRejectsBadInput(t *testing.T) {
	srv := storks.NewServer()
	defer srv.Close()
	var nilImpl *echoImpl
	cases := []struct {
		name string
		desc *storks.ServiceDesc
		impl any
		opts []storks.ExportOption
		want string
	}{
		{"nil desc", nil, &echoImpl{}, nil, "service descriptor is nil"},
		{"nil impl", &echoDesc, nil, nil, "implementation is nil"},
		{"typed nil impl", &echoDesc, nilImpl, nil, "implementation is a nil"},
		{"wrong type", &echoDesc, struct{}{}, nil, "does not implement"},
		{"bad version", &echoDesc, &echoImpl{}, []storks.ExportOption{storks.WithVersion("a/b")}, "version"},
		{"negative weight", &echoDesc, &echoImpl{}, []storks.ExportOption{storks.WithWeight(-1)}, "weight -1"},
		{"negative delay", &echoDesc, &echoImpl{}, []storks.ExportOption{storks.WithDelay(-time.Second)}, "delay"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := srv.Export(c.desc, c.impl, c.opts...)
			wantCode(t, err, storks.CodeInvalidArgument, c.want)
		})
	}
	if _, err := srv.Export(&echoDesc, &echoImpl{}); err != nil {
		t.Fatal(err)
	}
	_, err := srv.Export(&echoDesc, &echoImpl{})
	wantCode(t, err, storks.CodeAlreadyExists, "already exported")
}

func TestCallsAfterCloseFail(t *testing.T) {
	reg := newRegistry(t)
	startProvider(t, reg, &echoImpl{}, nil)
	cli, ref := refer(t, reg, nil)
	cli.Close()
	_, err := callEcho(context.Background(), ref, "x")
	wantCode(t, err, storks.CodeCanceled, "closed")
	_, err = cli.Refer(context.Background(), echoService)
	wantCode(t, err, storks.CodeCanceled, "client is closed")
}
