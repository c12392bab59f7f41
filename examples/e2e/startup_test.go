package e2e

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/internal/testservers"
	storks "github.com/storks-rpc/storks/runtime"
)

// A provider and a consumer both start while their etcd is stopped: the
// provider serves calls by address at once and registers in the background
// once etcd is back; the consumer, made WithWaitForProvider, refers at once
// and its call, started during the outage, goes through.
func TestProviderAndConsumerStartWhileTheRegistryIsDown(t *testing.T) {
	etcd := testservers.StartEtcd(t)
	url := etcd.URL(fmt.Sprintf("/startup-%d?ttl=%s", time.Now().UnixNano(), ttl))
	// Opening an etcd registry needs the server (for now): open the
	// clients first, then stop it.
	provReg, consReg := openURL(t, url), openURL(t, url)
	etcd.Stop()

	srv := storks.NewServer(storks.WithRegistry(provReg), storks.WithShutdownWait(0))
	ex, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	start := time.Now()
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-served })

	direct, err := storks.NewClient(storks.WithRegistry(openURL(t, "direct://"+lis.Addr().String())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	dref, err := direct.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	if p := hello(t, greeterv1.NewGreeterClient(dref)); p != "p" {
		t.Fatalf("reply from %q", p)
	}
	firstCall := time.Since(start)
	// Err is nil while the first attempt waits for etcd, then the error.
	if s := ex.State(); s != storks.ExportRegistering {
		t.Fatalf("during the outage the export is %v (err %v), want registering", s, ex.Err())
	}
	t.Logf("during the outage: first call by address %v after Serve; export %v", firstCall.Round(time.Millisecond), ex.State())

	cli, err := storks.NewClient(storks.WithRegistry(consReg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	referStart := time.Now()
	ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithWaitForProvider(), storks.WithRemote())
	if err != nil {
		t.Fatalf("Refer during the outage: %v", err)
	}
	if d := time.Since(referStart); d > time.Second {
		t.Errorf("Refer took %v during the outage", d)
	}
	type result struct {
		provider string
		err      error
	}
	called := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := greeterv1.NewGreeterClient(ref).SayHello(ctx, &greeterv1.HelloRequest{Name: "e2e"})
		called <- result{r.GetProvider(), err}
	}()

	time.Sleep(2 * time.Second)
	select {
	case r := <-called:
		t.Fatalf("the call ended during the outage: %q, %v", r.provider, r.err)
	default:
	}
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for ex.State() != storks.ExportRegistered {
		if time.Since(back) > 30*time.Second {
			t.Fatalf("not registered 30 s after etcd came back: %v (%v)", ex.State(), ex.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	registered := time.Since(back)
	r := <-called
	if r.err != nil || r.provider != "p" {
		t.Fatalf("the waiting call: %q, %v", r.provider, r.err)
	}
	t.Logf("etcd back: export registered after %v, the waiting call answered after %v",
		registered.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
}
