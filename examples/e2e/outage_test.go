package e2e

import (
	"context"
	"fmt"
	"github.com/storks-rpc/storks/internal/loadtest"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

const ttl = 2 * time.Second

// server is a real registry server the test can stop and start again.
type server struct {
	url   string
	stop  func()
	start func() error
}

var restartable = []struct {
	name  string
	start func(t *testing.T) server
}{
	{"etcd", func(t *testing.T) server {
		s := testservers.StartEtcd(t)
		return server{s.URL(fmt.Sprintf("/outage-%d?ttl=%s", time.Now().UnixNano(), ttl)), s.Stop, s.Start}
	}},
	{"consul", func(t *testing.T) server {
		s := testservers.StartConsul(t)
		return server{s.URL("?ttl=" + ttl.String()), s.Stop, s.Start}
	}},
	{"zookeeper", func(t *testing.T) server {
		s := testservers.StartZooKeeper(t)
		return server{s.URL(fmt.Sprintf("/outage-%d?session-timeout=%s", time.Now().UnixNano(), ttl)), s.Stop, s.Start}
	}},
}

// serveGreeter starts an in-process provider with its own registry client.
func serveGreeter(t *testing.T, url, name string) *impl.Greeter {
	t.Helper()
	srv := storks.NewServer(storks.WithRegistry(openURL(t, url)), storks.WithShutdownWait(0))
	g := &impl.Greeter{Name: name}
	if _, err := greeterv1.RegisterGreeterServer(srv, g); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return g
}

// The registry server goes away for 3x the TTL: calls from an existing
// consumer keep working on the last known list, every provider is registered
// again within TTL + 2 s of the server's return, and the consumer sees later
// changes.
func TestRegistryOutageKeepsCallsWorking(t *testing.T) {
	for _, rs := range restartable {
		t.Run(rs.name, func(t *testing.T) {
			srv := rs.start(t)
			serveGreeter(t, srv.url, "a")
			serveGreeter(t, srv.url, "b")
			cli, err := storks.NewClient(storks.WithRegistry(openURL(t, srv.url)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithRemote())
			if err != nil {
				t.Fatal(err)
			}
			waitProviders(t, ref, 2)
			c := greeterv1.NewGreeterClient(ref)

			load := loadtest.Start(4, 2*time.Second, time.Millisecond, func(ctx context.Context) error {
				_, err := c.SayHello(ctx, &greeterv1.HelloRequest{Name: "outage"})
				return err
			})

			srv.stop()
			time.Sleep(3 * ttl)
			if n := len(ref.Providers()); n != 2 {
				t.Errorf("during the outage the consumer lists %d providers, want the last known 2", n)
			}
			if err := srv.start(); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			// A fresh client must find both providers registered again.
			fresh := openURL(t, srv.url)
			key := registry.ServiceKey{Service: greeterv1.Greeter_ServiceName}
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				list, _ := fresh.Discover(ctx, key)
				cancel()
				if len(list) == 2 {
					break
				}
				if time.Since(back) > ttl+2*time.Second {
					t.Fatalf("%d of 2 providers registered again %v after the server came back", len(list), time.Since(back))
				}
				time.Sleep(50 * time.Millisecond)
			}
			reregistered := time.Since(back)
			serveGreeter(t, srv.url, "c")
			waitProviders(t, ref, 3)
			res := load.Stop()
			if res.Failed > 0 {
				t.Fatalf("%d of %d calls failed across the registry outage; first: %v", res.Failed, res.Calls, res.FirstErr)
			}
			t.Logf("%s down %v: %d calls, 0 failed; providers registered again %v after restart", rs.name, 3*ttl, res.Calls, reregistered.Round(time.Millisecond))
		})
	}
}

var providerBin = sync.OnceValues(func() (string, error) { return buildBin("provider", "github.com/storks-rpc/storks/examples/provider") })

// buildBin builds the command pkg into a new temporary directory as name.
func buildBin(name, pkg string) (string, error) {
	dir, err := os.MkdirTemp("", "storks-e2e-"+name+"-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", name, err, out)
	}
	return bin, nil
}

// A provider process killed with SIGKILL never deregisters: it must vanish
// from the consumer's list within TTL + 2 s.
func TestKilledProviderDisappears(t *testing.T) {
	bin, err := providerBin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	for _, rs := range restartable {
		t.Run(rs.name, func(t *testing.T) {
			srv := rs.start(t)
			serveGreeter(t, srv.url, "survivor")
			cmd := exec.Command(bin, "-registry", srv.url, "-name", "victim")
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			cli, err := storks.NewClient(storks.WithRegistry(openURL(t, srv.url)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithRemote())
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for len(ref.Providers()) != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("provider process never registered:\n%s", out.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			for len(ref.Providers()) != 1 {
				if time.Since(killed) > ttl+2*time.Second {
					t.Fatalf("killed provider still listed %v after SIGKILL", time.Since(killed))
				}
				time.Sleep(10 * time.Millisecond)
			}
			gone := time.Since(killed)
			c := greeterv1.NewGreeterClient(ref)
			for range 10 {
				if p := hello(t, c); p != "survivor" {
					t.Fatalf("reply from %q", p)
				}
			}
			t.Logf("%s: killed provider gone from the consumer %v after SIGKILL (TTL %v)", rs.name, gone.Round(time.Millisecond), ttl)
		})
	}
}
