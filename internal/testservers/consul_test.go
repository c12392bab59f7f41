package testservers

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConsulRestart checks that Stop and Kill stop the agent and that Start
// restarts it on the same port. (That a restart loses the agent's state is
// checked by the Consul adapter's tests.)
func TestConsulRestart(t *testing.T) {
	s := StartConsul(t)
	ctx := context.Background()
	if err := s.Ping(ctx, 5*time.Second); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	for i, stop := range []func(){s.Stop, s.Kill} {
		start := time.Now()
		stop()
		t.Logf("restart %d: stop took %v", i+1, time.Since(start))
		if s.Running() {
			t.Fatalf("restart %d: Running after stop", i+1)
		}
		if err := s.Ping(ctx, 300*time.Millisecond); err == nil {
			t.Fatalf("restart %d: the stopped agent still answers", i+1)
		}
		start = time.Now()
		if err := s.Start(); err != nil {
			t.Fatalf("restart %d: Start: %v", i+1, err)
		}
		t.Logf("restart %d: Start took %v", i+1, time.Since(start))
		if err := s.Ping(ctx, 5*time.Second); err != nil {
			t.Fatalf("restart %d: the restarted agent does not answer: %v", i+1, err)
		}
	}
	if got, want := s.URL("?ttl=2s"), "consul://"+s.Addr()+"?ttl=2s"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if !strings.Contains(s.LogTail(1000), "Consul agent running") {
		t.Errorf("the log %s does not show the agent running:\n%s", s.LogPath(), s.LogTail(20))
	}
}

// TestConsulACL checks an agent with ACLs: anonymous writes are refused,
// CreateToken makes a token that may write, and a restart keeps the
// management token working.
func TestConsulACL(t *testing.T) {
	const mgmt = "0b7c5b8e-2f5e-4c3a-9d1e-5c0de5c0de01"
	s := StartConsulWith(t, ConsulOptions{ManagementToken: mgmt})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(token string) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+s.Addr()+"/v1/agent/service/register",
			strings.NewReader(`{"Name":"acl-test","ID":"acl-test-1","Port":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("X-Consul-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put(""); code != http.StatusForbidden {
		t.Errorf("anonymous register: HTTP %d, want 403", code)
	}
	tok, err := s.CreateToken(ctx, `service_prefix "acl-test" { policy = "write" }`)
	if err != nil {
		t.Fatal(err)
	}
	if code := put(tok); code != http.StatusOK {
		t.Errorf("register with a write token: HTTP %d, want 200", code)
	}
	s.Stop()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if code := put(mgmt); code != http.StatusOK {
		t.Errorf("register with the management token after a restart: HTTP %d, want 200", code)
	}
	if _, err := StartConsul(t).CreateToken(ctx, ""); err == nil {
		t.Error("CreateToken on an agent without ACLs: no error")
	}
}
