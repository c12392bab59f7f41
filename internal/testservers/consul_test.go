package testservers

import (
	"context"
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
