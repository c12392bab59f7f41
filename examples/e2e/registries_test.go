package e2e

import (
	"context"
	"fmt"
	"github.com/storks-rpc/storks/internal/loadtest"
	"net"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

// realRegistries are the networked registries, each started for real by
// internal/testservers (failing under CI=true when a server cannot start).
var realRegistries = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"etcd", func(t *testing.T) string { return testservers.EtcdRegistryURL(t, 2*time.Second) }},
	{"consul", func(t *testing.T) string { return testservers.ConsulRegistryURL(t, 2*time.Second) }},
	{"zookeeper", func(t *testing.T) string { return testservers.ZooKeeperRegistryURL(t, 2*time.Second) }},
}

func openURL(t *testing.T, url string) registry.Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Three providers and a consumer, each with its own registry client as if
// they were separate processes, through each real registry: round-robin
// reaches all three evenly; one provider shut down gracefully under load
// costs no call, and the consumer stops routing to it.
func TestRealRegistriesEndToEnd(t *testing.T) {
	for _, rr := range realRegistries {
		t.Run(rr.name, func(t *testing.T) {
			url := rr.url(t)
			type prov struct {
				srv *storks.Server
				g   *impl.Greeter
			}
			var ps []prov
			for i := range 3 {
				srv := storks.NewServer(storks.WithRegistry(openURL(t, url)), storks.WithShutdownWait(time.Second))
				g := &impl.Greeter{Name: fmt.Sprintf("%s-%d", rr.name, i+1)}
				if _, err := greeterv1.RegisterGreeterServer(srv, g, storks.WithVersion("e2e")); err != nil {
					t.Fatal(err)
				}
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan struct{})
				go func() { srv.Serve(lis); close(done) }()
				t.Cleanup(func() { srv.Close(); <-done })
				ps = append(ps, prov{srv, g})
			}
			cli, err := storks.NewClient(storks.WithRegistry(openURL(t, url)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithVersion("e2e"), storks.WithRemote())
			if err != nil {
				t.Fatal(err)
			}
			waitProviders(t, ref, 3)
			c := greeterv1.NewGreeterClient(ref)

			seen := map[string]int{}
			for range 30 {
				seen[hello(t, c)]++
			}
			for _, p := range ps {
				if seen[p.g.Name] != 10 {
					t.Fatalf("round robin through %s: %v, want 10 each", rr.name, seen)
				}
			}

			load := loadtest.Start(8, 5*time.Second, 0, func(ctx context.Context) error {
				_, err := c.SayHello(ctx, &greeterv1.HelloRequest{Name: "load"})
				return err
			})
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			if err := ps[0].srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			shutdownTook := time.Since(start)
			time.Sleep(200 * time.Millisecond)
			res := load.Stop()
			if res.Failed > 0 {
				t.Fatalf("%d of %d calls failed while a provider shut down; first: %v", res.Failed, res.Calls, res.FirstErr)
			}
			waitProviders(t, ref, 2)
			before := ps[0].g.Calls.Load()
			for range 20 {
				if hello(t, c) == ps[0].g.Name {
					t.Fatal("the stopped provider answered")
				}
			}
			if ps[0].g.Calls.Load() != before {
				t.Fatal("the stopped provider's handler ran")
			}
			t.Logf("%s: %d calls under load across a graceful shutdown (%v), 0 failed", rr.name, res.Calls, shutdownTook.Round(time.Millisecond))
		})
	}
}

func waitProviders(t *testing.T, ref *storks.Reference, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(ref.Providers()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("consumer sees %d providers, want %d", len(ref.Providers()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
