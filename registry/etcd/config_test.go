package etcd

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

func TestConfigFromURL(t *testing.T) {
	good := []struct {
		url  string
		want Config
	}{
		{"etcd://127.0.0.1:2379", Config{Endpoints: []string{"127.0.0.1:2379"}, BasePath: "/storks"}},
		{"etcd://127.0.0.1:2379/", Config{Endpoints: []string{"127.0.0.1:2379"}, BasePath: "/storks"}},
		{"etcd://h1:2379,h2.example.com:02380/svc/reg/?ttl=3s&dial-timeout=250ms",
			Config{Endpoints: []string{"h1:2379", "h2.example.com:2380"}, BasePath: "/svc/reg", TTL: 3 * time.Second, DialTimeout: 250 * time.Millisecond}},
		{"etcd://[::1]:2379/x?ttl=1h", Config{Endpoints: []string{"[::1]:2379"}, BasePath: "/x", TTL: time.Hour}},
		{"etcd://localhost:1/a?ttl=1s", Config{Endpoints: []string{"localhost:1"}, BasePath: "/a", TTL: time.Second}},
	}
	for _, tc := range good {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.url, err)
		}
		got, err := configFromURL(u)
		if err != nil {
			t.Errorf("configFromURL(%q): %v", tc.url, err)
			continue
		}
		if !slices.Equal(got.Endpoints, tc.want.Endpoints) || got.BasePath != tc.want.BasePath ||
			got.TTL != tc.want.TTL || got.DialTimeout != tc.want.DialTimeout {
			t.Errorf("configFromURL(%q) = %+v, want %+v", tc.url, got, tc.want)
		}
	}
}

// TestOpenBadURL goes through registry.Open, so it also covers what
// url.Parse rejects before the adapter sees the URL.
func TestOpenBadURL(t *testing.T) {
	bad := []struct{ url, field string }{
		{"etcd://", "URL host"},
		{"etcd:///storks", "URL host"},
		{"etcd:127.0.0.1:2379", "URL"},
		{"etcd://127.0.0.1/storks", "URL port"},
		{"etcd://127.0.0.1:0/x", "URL port"},
		{"etcd://127.0.0.1:99999/x", "URL port"},
		{"etcd://127.0.0.1:2379,/x", "port"}, // rejected by url.Parse
		{"etcd://,127.0.0.1:2379/x", "URL host"},
		{"etcd://a:1,b:x/x", "port"},
		{"etcd://a:1,b/x", "port"},
		{"etcd://bad!host:1/x", "URL host"},
		{"etcd://user@h:1/x", "URL user info"},
		{"etcd://:secret@h:1/x", "URL user info"},
		{"etcd://user:secret@h:1/x?ttl=0s", "ttl"},
		{"etcd://h:1/x#frag", "URL fragment"},
		{"etcd://h:1/a//b", "URL path"},
		{"etcd://h:1/a/../b", "URL path"},
		{"etcd://h:1/a/./b", "URL path"},
		{"etcd://h:1/x?ttl=500ms", "ttl"},
		{"etcd://h:1/x?ttl=0s", "ttl"},
		{"etcd://h:1/x?ttl=2h", "ttl"},
		{"etcd://h:1/x?ttl=1500ms", "ttl"},
		{"etcd://h:1/x?ttl=abc", "ttl"},
		{"etcd://h:1/x?ttl=10", "ttl"},
		{"etcd://h:1/x?ttl=", "ttl"},
		{"etcd://h:1/x?dial-timeout=0s", "dial-timeout"},
		{"etcd://h:1/x?dial-timeout=-1s", "dial-timeout"},
		{"etcd://h:1/x?dial-timeout=1h", "dial-timeout"},
		{"etcd://h:1/x?foo=1", "URL query parameter"},
		{"etcd://h:1/x?ttl=2s&ttl=3s", "URL query parameter"},
		{"etcd://h:1/x?ttl=%zz", "URL query"},
	}
	for _, tc := range bad {
		start := time.Now()
		r, err := registry.Open(context.Background(), tc.url)
		if err == nil {
			r.Close()
			t.Errorf("Open(%q): no error, want one naming %q", tc.url, tc.field)
			continue
		}
		var ie *registry.InputError
		if !errors.As(err, &ie) {
			t.Errorf("Open(%q): error %q (%T) is not a *registry.InputError", tc.url, err, err)
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Open(%q): error %q does not name %q", tc.url, err, tc.field)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q): error %q repeats the password", tc.url, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Open(%q) took %v to reject a bad URL", tc.url, d)
		}
	}
}

func TestNewBadConfig(t *testing.T) {
	bad := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"no endpoints", Config{}, "Config.Endpoints"},
		{"empty endpoint", Config{Endpoints: []string{""}}, "Config.Endpoints host"},
		{"no port", Config{Endpoints: []string{"h"}}, "Config.Endpoints port"},
		{"relative base", Config{Endpoints: []string{"h:1"}, BasePath: "storks"}, "Config.BasePath"},
		{"root base", Config{Endpoints: []string{"h:1"}, BasePath: "/"}, "Config.BasePath"},
		{"short TTL", Config{Endpoints: []string{"h:1"}, TTL: 10 * time.Millisecond}, "Config.TTL"},
		{"fractional TTL", Config{Endpoints: []string{"h:1"}, TTL: 2500 * time.Millisecond}, "Config.TTL"},
		{"negative dial timeout", Config{Endpoints: []string{"h:1"}, DialTimeout: -time.Second}, "Config.DialTimeout"},
		{"negative request timeout", Config{Endpoints: []string{"h:1"}, RequestTimeout: -time.Second}, "Config.RequestTimeout"},
	}
	for _, tc := range bad {
		r, err := New(context.Background(), tc.cfg)
		if err == nil {
			r.Close()
			t.Errorf("%s: New: no error", tc.name)
			continue
		}
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: New: error %q (%T), want a *registry.InputError naming %q", tc.name, err, err, tc.field)
		}
	}
}

// TestOpenUnreachable checks the rule for servers that cannot be reached
// (see registrytest.CheckRefused): on a port that refuses connections, Open
// returns at once and every call fails at once naming the address and the
// refused connection. A server that accepts connections but never answers
// does not fail Open either, after the dial timeout; the caller's context
// bounds Open. A server that answers, but not etcd's protocol, fails Open.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	registrytest.CheckRefused(t, "etcd://"+addr+"/x", addr)

	silent := silentServer(t)
	start := time.Now()
	r, err := registry.Open(context.Background(), "etcd://"+silent+"/x?dial-timeout=300ms")
	if err != nil {
		t.Fatalf("Open of a server that never answers: %v; want a registry that keeps connecting", err)
	}
	t.Logf("Open of a server that never answers returned after %v", time.Since(start))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open took %v with dial-timeout=300ms", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = r.Register(ctx, registry.Instance{Key: registrytest.UniqueKey(t), ID: "a", Addr: "127.0.0.1:1"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), silent) {
		t.Errorf("Register on a server that never answers: %v; want the deadline, naming %s", err, silent)
	}
	r.Close()

	// The caller's context bounds Open.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	r, err = registry.Open(ctx, "etcd://"+silent+"/x")
	if err == nil {
		r.Close()
		t.Fatal("Open with an expiring context: no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Open took %v with a context of 200ms", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), silent) {
		t.Errorf("Open error %q: want context.DeadlineExceeded naming %s", err, silent)
	}

	// An HTTP/1 server on the port.
	hs := httptest.NewServer(http.NotFoundHandler())
	defer hs.Close()
	hp := strings.TrimPrefix(hs.URL, "http://")
	r, err = registry.Open(context.Background(), "etcd://"+hp+"/x?dial-timeout=500ms")
	if err == nil {
		r.Close()
		t.Fatal("Open of an HTTP/1 server: no error")
	}
	if !strings.Contains(err.Error(), hp) || !strings.Contains(err.Error(), "HTTP/1") {
		t.Errorf("Open of an HTTP/1 server: %v; want an error naming %s and HTTP/1", err, hp)
	}
	t.Logf("Open of an HTTP/1 server: %v", err)
}

// silentServer returns the address of a server that accepts connections
// and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l.Addr().String()
}

func TestParseServiceKey(t *testing.T) {
	for _, k := range []registry.ServiceKey{
		{Service: "a.B"},
		{Service: "a.B", Version: "1.0.0"},
		{Service: "a.B", Group: "blue"},
		{Service: "a.B", Version: "v2", Group: "g-1"},
		{Service: "ünï%2F", Version: "?#", Group: "&="},
	} {
		seg := strings.TrimSuffix(strings.TrimPrefix(servicePrefix("/b", k), "/b/"), "/")
		got, ok := parseServiceKey(seg)
		if !ok || got != k {
			t.Errorf("parseServiceKey(%q) = %+v, %v; want %+v", seg, got, ok, k)
		}
	}
	for _, seg := range []string{"", "%2Fsvc", "svc:", "g%2Fsvc%2Fx", "%zz", "a b"} {
		if k, ok := parseServiceKey(seg); ok {
			t.Errorf("parseServiceKey(%q) = %+v, want failure", seg, k)
		}
	}
}
