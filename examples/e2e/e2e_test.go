package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/emptypb"
)

type provider struct {
	srv      *storks.Server
	greeter  *impl.Greeter
	export   *storks.Exporter
	accepted *atomic.Int64 // connections the server accepted
}

// countingListener counts the connections it accepts.
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

// startProviders starts n servers on 127.0.0.1, each exporting the greeter
// and echo services and registering them in reg.
func startProviders(t *testing.T, reg registry.Registry, n int) []*provider {
	t.Helper()
	ps := make([]*provider, n)
	for i := range ps {
		srv := storks.NewServer(storks.WithRegistry(reg), storks.WithShutdownWait(100*time.Millisecond))
		g := &impl.Greeter{Name: fmt.Sprintf("p%d", i+1)}
		ex, err := greeterv1.RegisterGreeterServer(srv, g)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := echov1.RegisterEchoServer(srv, &impl.Echo{Name: g.Name}); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis := &countingListener{Listener: l}
		done := make(chan struct{})
		go func() { srv.Serve(lis); close(done) }()
		t.Cleanup(func() { srv.Close(); <-done })
		ps[i] = &provider{srv: srv, greeter: g, export: ex, accepted: &lis.accepted}
	}
	// Serve registers asynchronously: wait until both services are listed.
	deadline := time.Now().Add(10 * time.Second)
	for _, svc := range []string{greeterv1.Greeter_ServiceName, echov1.Echo_ServiceName} {
		for {
			l, err := reg.Discover(context.Background(), registry.ServiceKey{Service: svc})
			if err == nil && len(l) == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d providers registered (%v)", svc, len(l), n, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ps
}

// greeter refers the greeter over the network (the providers live in this
// process, so without WithRemote calls would take the in-process path) and
// waits until it knows n providers.
func greeter(t *testing.T, reg registry.Registry, n int, opts ...storks.ReferOption) (greeterv1.GreeterClient, *storks.Reference) {
	t.Helper()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, append([]storks.ReferOption{storks.WithRemote()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(ref.Providers()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("reference sees %d providers, want %d", len(ref.Providers()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return greeterv1.NewGreeterClient(ref), ref
}

func newRegistry(t *testing.T) registry.Registry {
	r := registry.NewInproc()
	t.Cleanup(func() { r.Close() })
	return r
}

func hello(t *testing.T, c greeterv1.GreeterClient) string {
	t.Helper()
	r, err := c.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetMessage() != "Hello, e2e" {
		t.Fatalf("reply %q", r.GetMessage())
	}
	return r.GetProvider()
}

func TestRoundRobinIsExactlyEven(t *testing.T) {
	reg := newRegistry(t)
	ps := startProviders(t, reg, 3)
	c, _ := greeter(t, reg, 3, storks.WithBalancer(storks.RoundRobin()))
	const perProvider = 100
	seen := map[string]int{}
	for range 3 * perProvider {
		seen[hello(t, c)]++
	}
	for _, p := range ps {
		if seen[p.greeter.Name] != perProvider || p.greeter.Calls.Load() != perProvider {
			t.Fatalf("round robin over 3 providers: replies %v, handler counts %d/%d/%d; want %d each",
				seen, ps[0].greeter.Calls.Load(), ps[1].greeter.Calls.Load(), ps[2].greeter.Calls.Load(), perProvider)
		}
	}
}

func TestRandomIsRoughlyUniform(t *testing.T) {
	reg := newRegistry(t)
	startProviders(t, reg, 3)
	c, _ := greeter(t, reg, 3, storks.WithBalancer(storks.Random()))
	const calls = 3000
	seen := map[string]int{}
	for range calls {
		seen[hello(t, c)]++
	}
	// Chi-squared test against the uniform distribution, 2 degrees of
	// freedom: 13.8 is the 99.9th percentile, so a fair selector fails
	// about once in a thousand runs and a skewed one almost always.
	var chi2 float64
	exp := float64(calls) / 3
	for _, name := range []string{"p1", "p2", "p3"} {
		d := float64(seen[name]) - exp
		chi2 += d * d / exp
	}
	if chi2 > 13.8 || math.IsNaN(chi2) {
		t.Fatalf("random selection is not uniform: %v (chi2 %.1f)", seen, chi2)
	}
}

func TestConcurrentCallsOverOneConnection(t *testing.T) {
	reg := newRegistry(t)
	ps := startProviders(t, reg, 1)
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(context.Background(), echov1.Echo_ServiceName, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	echo := echov1.NewEchoClient(ref)
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf("message %d", i)
			r, err := echo.Echo(context.Background(), &commonv1.Text{Body: body})
			if err == nil && r.GetBody() != body {
				err = fmt.Errorf("call %d got %q", i, r.GetBody())
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ps[0].accepted.Load(); n != 1 {
		t.Fatalf("1000 concurrent calls used %d connections, want 1", n)
	}
	now, err := echo.Now(context.Background(), &emptypb.Empty{})
	if err != nil || time.Since(now.AsTime()).Abs() > time.Minute {
		t.Fatalf("Now: %v, %v", now, err)
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	reg := newRegistry(t)
	startProviders(t, reg, 1)
	c, ref := greeter(t, reg, 1)
	_, err := c.Fail(context.Background(), &greeterv1.FailRequest{Code: uint32(storks.CodePermissionDenied), Message: "not you"})
	var e *storks.Error
	if !errors.As(err, &e) || e.Code != storks.CodePermissionDenied || e.Message != "not you" {
		t.Fatalf("Fail: %v", err)
	}
	_, err = c.SayHello(context.Background(), &greeterv1.HelloRequest{})
	if storks.CodeOf(err) != storks.CodeInvalidArgument {
		t.Fatalf("empty name: %v", err)
	}
	err = ref.Invoke(context.Background(), "/"+greeterv1.Greeter_ServiceName+"/Missing", &greeterv1.HelloRequest{}, new(greeterv1.HelloReply))
	if storks.CodeOf(err) != storks.CodeUnimplemented {
		t.Fatalf("unknown method: %v", err)
	}
}

func TestDeadlineExpires(t *testing.T) {
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithRegistry(reg))
	handlerDone := make(chan error, 1)
	if _, err := greeterv1.RegisterGreeterServer(srv, &slowGreeter{done: handlerDone}); err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.Close()
	c, _ := greeter(t, reg, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.SayHello(ctx, &greeterv1.HelloRequest{Name: "x"})
	if storks.CodeOf(err) != storks.CodeDeadlineExceeded || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	select {
	case herr := <-handlerDone:
		if !errors.Is(herr, context.DeadlineExceeded) {
			t.Fatalf("handler context: %v", herr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context not cancelled")
	}
}

type slowGreeter struct {
	greeterv1.UnimplementedGreeterServer
	done chan error
}

func (s *slowGreeter) SayHello(ctx context.Context, _ *greeterv1.HelloRequest) (*greeterv1.HelloReply, error) {
	<-ctx.Done()
	s.done <- ctx.Err()
	return nil, ctx.Err()
}

func TestUnexportStopsTraffic(t *testing.T) {
	reg := newRegistry(t)
	ps := startProviders(t, reg, 3)
	c, ref := greeter(t, reg, 3)
	for range 9 {
		hello(t, c)
	}
	if err := ps[1].export.Unexport(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, _ := reg.Discover(context.Background(), ref.Key())
	if len(list) != 2 {
		t.Fatalf("registry still lists %d providers after unexport", len(list))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ref.Providers()) != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	before := ps[1].greeter.Calls.Load()
	for range 30 {
		if hello(t, c) == "p2" {
			t.Fatal("unexported provider answered")
		}
	}
	if ps[1].greeter.Calls.Load() != before {
		t.Fatal("unexported provider's handler ran")
	}
}

func TestUnimplementedByDefault(t *testing.T) {
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithRegistry(reg))
	type bare struct {
		greeterv1.UnimplementedGreeterServer
	}
	if _, err := greeterv1.RegisterGreeterServer(srv, &bare{}); err != nil {
		t.Fatal(err)
	}
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.Close()
	c, _ := greeter(t, reg, 1)
	_, err := c.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "x"})
	if storks.CodeOf(err) != storks.CodeUnimplemented {
		t.Fatalf("err = %v", err)
	}
}
