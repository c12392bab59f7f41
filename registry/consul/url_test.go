package consul

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

const secretToken = "s3cr3t-t0ken-do-not-print"

func TestParseURL(t *testing.T) {
	good := []struct {
		url  string
		want Config
	}{
		{"consul://", Config{Address: "127.0.0.1:8500"}},
		{"consul:///", Config{Address: "127.0.0.1:8500"}},
		{"consul://agent.local", Config{Address: "agent.local:8500"}},
		{"consul://10.0.0.1:18500", Config{Address: "10.0.0.1:18500"}},
		{"consul://[::1]:8501", Config{Address: "[::1]:8501"}},
		{"consul://[::1]", Config{Address: "[::1]:8500"}},
		{"consul://h:08500", Config{Address: "h:8500"}},
		{"consul://h:1?token=" + secretToken + "&ttl=3s&deregister-after=2m&tcp-check=true&dial-timeout=250ms&resync-grace=7s",
			Config{Address: "h:1", Token: secretToken, TTL: 3 * time.Second, DeregisterAfter: 2 * time.Minute,
				TCPCheck: true, DialTimeout: 250 * time.Millisecond, ResyncGrace: 7 * time.Second}},
		{"consul://h:1?resync-grace=0&tcp-check=0", Config{Address: "h:1", ResyncGrace: -1}},
	}
	for _, tc := range good {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseURL(u)
		if err != nil {
			t.Errorf("ParseURL(%s): %v", tc.url, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseURL(%s) = %+v, want %+v", tc.url, got, tc.want)
		}
	}

	bad := []struct {
		url, field string
	}{
		{"consul://user:" + secretToken + "@h:1", "URL user info"},
		{"consul://" + secretToken + "@h:1", "URL user info"},
		{"consul://h:1/path", "URL path"},
		{"consul://h:1#frag", "URL fragment"},
		{"consul://h:0", "URL port"},
		{"consul://h:65536", "URL port"},
		{"consul://:8500", "URL host"},
		{"consul://h:1?ttl=soon", "ttl"},
		{"consul://h:1?ttl=-1s", "ttl"},
		{"consul://h:1?ttl=0s", "ttl"},
		{"consul://h:1?dial-timeout=x", "dial-timeout"},
		{"consul://h:1?deregister-after=1", "deregister-after"},
		{"consul://h:1?tcp-check=maybe", "tcp-check"},
		{"consul://h:1?token=a&token=" + secretToken, "token"},
		{"consul://h:1?tokn=" + secretToken, "tokn"},
		{"consul://h:1?token=%zz" + secretToken, "URL query"},
	}
	for _, tc := range bad {
		_, err := registry.Open(context.Background(), tc.url)
		checkInputError(t, "Open("+redactForTest(tc.url)+")", err, tc.field)
	}

	// Ranges are checked when the registry is built, for URLs and Configs
	// alike, before anything is dialled.
	ranges := []struct {
		url, field string
	}{
		{"consul://127.0.0.1:1?ttl=500ms", "ttl"},
		{"consul://127.0.0.1:1?deregister-after=30s", "deregister-after"},
	}
	for _, tc := range ranges {
		_, err := registry.Open(context.Background(), tc.url)
		checkInputError(t, "Open("+tc.url+")", err, tc.field)
	}
	for _, cfg := range []Config{
		{Address: "nohostport"},
		{TTL: time.Millisecond},
		{DeregisterAfter: time.Second},
		{DialTimeout: -time.Second},
		{WaitTime: 11 * time.Minute},
		{QueryInterval: -time.Second},
	} {
		_, err := New(context.Background(), cfg)
		var ie *registry.InputError
		if !errors.As(err, &ie) {
			t.Errorf("New(%+v): err = %v, want an InputError", cfg, err)
		}
	}
}

func redactForTest(s string) string { return strings.ReplaceAll(s, secretToken, "TOKEN") }

func checkInputError(t *testing.T, what string, err error, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	var ie *registry.InputError
	if !errors.As(err, &ie) {
		t.Errorf("%s: error %q (%T) is not a *registry.InputError", what, redactForTest(err.Error()), err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("%s: error %q does not name %q", what, redactForTest(err.Error()), field)
	}
	if strings.Contains(err.Error(), secretToken) {
		t.Errorf("%s: error %q shows the token", what, redactForTest(err.Error()))
	}
}

// TestOpenUnreachable checks the rule for agents that cannot be reached
// (see registrytest.CheckRefused): on a port that refuses connections, Open
// returns at once and every call fails at once naming the address and the
// refused connection. An agent that accepts connections and never answers
// does not fail Open either, after the dial timeout, and the caller's
// context bounds Open. A server that answers, but not as a Consul agent,
// fails Open. No error shows the token.
func TestOpenUnreachable(t *testing.T) {
	// A port that refuses connections.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	registrytest.CheckRefused(t, "consul://"+refused+"?token="+secretToken, refused)

	// A port that accepts connections but never answers, or answers
	// something else than HTTP.
	serve := func(answer string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if answer != "" {
					c.Read(make([]byte, 4096)) // the request
					c.Write([]byte(answer))
				}
			}
		}()
		return l.Addr().String()
	}
	silent := serve("")
	u := "consul://" + silent + "?dial-timeout=300ms&token=" + secretToken
	start := time.Now()
	r, err := registry.Open(context.Background(), u)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Open(%s) of an agent that never answers: %v; want a registry that keeps trying", silent, redactForTest(err.Error()))
	}
	t.Logf("Open(%s) of an agent that never answers returned after %v", silent, took)
	if took > 3*time.Second {
		t.Errorf("Open(%s) took %v with dial-timeout=300ms", silent, took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = r.Register(ctx, registry.Instance{Key: registrytest.UniqueKey(t), ID: "a", Addr: "127.0.0.1:1"})
	cancel()
	if err == nil || !strings.Contains(err.Error(), silent) || strings.Contains(err.Error(), secretToken) {
		t.Errorf("Register on an agent that never answers: %v; want an error naming %s, without the token", err, silent)
	}
	r.Close()

	// The context bounds Open too.
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = registry.Open(ctx, "consul://"+silent+"?dial-timeout=1m")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with an expiring context: err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Open with a 200ms context took %v", took)
	}

	// Servers that answer, but not as a Consul agent.
	hs := httptest.NewServer(http.NotFoundHandler())
	defer hs.Close()
	for _, addr := range []string{serve("\x00\x00\x00\x10zookeeper?\n"), strings.TrimPrefix(hs.URL, "http://")} {
		r, err := registry.Open(context.Background(), "consul://"+addr+"?dial-timeout=1s&token="+secretToken)
		if err == nil {
			r.Close()
			t.Errorf("Open(%s) of a server that is not a Consul agent: no error", addr)
			continue
		}
		t.Logf("Open(%s) of a server that is not a Consul agent: %v", addr, redactForTest(err.Error()))
		if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "Consul agent") || strings.Contains(err.Error(), secretToken) {
			t.Errorf("Open(%s) of a server that is not a Consul agent: %v; want an error naming it, without the token", addr, redactForTest(err.Error()))
		}
	}
}

func TestConfigString(t *testing.T) {
	cfg := Config{Address: "h:1", Token: secretToken, TTL: 3 * time.Second, TCPCheck: true}
	s := cfg.String()
	if strings.Contains(s, secretToken) {
		t.Fatalf("Config.String() = %q shows the token", s)
	}
	if want := "consul://h:1?tcp-check=true&token=redacted&ttl=3s"; s != want {
		t.Errorf("Config.String() = %q, want %q", s, want)
	}
	u, _ := url.Parse(s)
	back, err := ParseURL(u)
	if err != nil {
		t.Fatalf("ParseURL(%s): %v", s, err)
	}
	back.Token = secretToken
	if back != cfg {
		t.Errorf("ParseURL(String()) = %+v, want %+v", back, cfg)
	}
}
