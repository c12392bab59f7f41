package browsertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/console"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/consul"
	"github.com/storks-rpc/storks/registry/rule"
	_ "github.com/storks-rpc/storks/registry/zookeeper"
)

// backend is a real registry server that can be stopped and started.
type backend struct {
	url         string
	stop, start func()
}

var backends = []struct {
	name  string
	start func(t *testing.T) *backend
}{
	{"etcd", func(t *testing.T) *backend {
		s := testservers.StartEtcd(t)
		if s == nil {
			return nil
		}
		return &backend{s.URL(fmt.Sprintf("/console-%d?ttl=3s", time.Now().UnixNano())), s.Stop, func() { s.Start() }}
	}},
	{"consul", func(t *testing.T) *backend {
		s := testservers.StartConsul(t)
		if s == nil {
			return nil
		}
		return &backend{s.URL("?ttl=3s"), s.Stop, func() { s.Start() }}
	}},
	{"zookeeper", func(t *testing.T) *backend {
		s := testservers.StartZooKeeper(t)
		if s == nil {
			return nil
		}
		return &backend{s.URL(fmt.Sprintf("/console-%d?session-timeout=3s", time.Now().UnixNano())), s.Stop, func() { s.Start() }}
	}},
}

// The console over each real registry (no browser): it lists the service
// with its provider and consumer, disables the provider through a rule and
// shows it disabled, and while the registry is down shows a banner and
// the last known state, which it leaves once the registry is back.
func TestConsoleOnEachRegistry(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			b := be.start(t)
			if b == nil {
				return
			}
			ctx := context.Background()
			open := func() registry.Registry {
				r, err := registry.Open(ctx, b.url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				return r
			}
			other := open()
			prov := registry.Instance{Key: key, ID: "p1", Addr: "127.0.0.1:9001", Weight: 100, Metadata: map[string]string{
				registry.MetadataRegisteredAt: fmt.Sprint(time.Now().UnixMilli()),
				registry.MetadataLoad:         fmt.Sprintf("cps=12.5,inflight=2,at=%d", time.Now().UnixMilli()),
			}}
			if err := other.Register(ctx, prov); err != nil {
				t.Fatal(err)
			}
			cons := registry.Instance{Key: registry.ConsumerKey(key), ID: "c1", Addr: "127.0.0.1:0",
				Metadata: map[string]string{registry.MetadataApplication: "shop"}}
			if err := other.Register(ctx, cons); err != nil {
				t.Fatal(err)
			}
			reg := open()
			c, err := console.New(reg, console.Options{Token: token, RegistryURL: b.url, Refresh: 200 * time.Millisecond,
				Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(c)
			t.Cleanup(func() { srv.Close(); c.Close() })
			page := "/service?service=" + url.QueryEscape(svc) + "&version=" + version
			waitPage(t, srv.URL+"/", `class="consumers" data-n="1"`, 20*time.Second)
			waitPage(t, srv.URL+page, "12.5 cps, 2 in flight", 10*time.Second)

			req, _ := http.NewRequest("POST", srv.URL+"/provider", strings.NewReader(url.Values{
				"service": {svc}, "version": {version}, "addr": {prov.Addr}, "action": {"disable"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set(console.TokenHeader, token)
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("disable: %d\n%s", resp.StatusCode, body)
			}
			store, err := rule.Store(other)
			if err != nil {
				t.Fatal(err)
			}
			set, err := rule.Load(ctx, store, key)
			if err != nil || !set.EffectOn(prov).Disabled {
				t.Fatalf("rules after disable: %+v, %v", set, err)
			}
			waitPage(t, srv.URL+page, `data-state="disabled"`, 10*time.Second)

			b.stop()
			stopped := time.Now()
			got := waitPage(t, srv.URL+page, "The registry is unreachable", 20*time.Second)
			if !strings.Contains(got, prov.Addr) || !strings.Contains(got, `data-state="disabled"`) {
				t.Errorf("with the registry down the page lost the last known state:\n%s", got)
			}
			t.Logf("%s stopped: the banner showed after %v, with the last known state", be.name, time.Since(stopped).Round(time.Millisecond))
			b.start()
			waitPageLacks(t, srv.URL+"/", "The registry is unreachable", 30*time.Second)
		})
	}
}

func fetch(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitPage(t *testing.T, u, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body := fetch(t, u)
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q within %v:\n%s", u, want, timeout, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitPageLacks(t *testing.T, u, unwanted string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body := fetch(t, u)
		if !strings.Contains(body, unwanted) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still shows %q after %v:\n%s", u, unwanted, timeout, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
