package testservers

import (
	"context"
	"testing"
	"time"
)

// TestEtcdRestart checks that the embedded server restarts in the same
// process on the same directory and port, keeping its data.
func TestEtcdRestart(t *testing.T) {
	s := StartEtcd(t)
	cli := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/k", "v1"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	for i := range 2 {
		start := time.Now()
		s.Stop()
		t.Logf("restart %d: Stop took %v", i+1, time.Since(start))
		if err := s.Ping(ctx, 300*time.Millisecond); err == nil {
			t.Fatalf("restart %d: the stopped server still answers", i+1)
		}
		start = time.Now()
		if err := s.Start(); err != nil {
			t.Fatalf("restart %d: Start: %v", i+1, err)
		}
		t.Logf("restart %d: Start took %v", i+1, time.Since(start))
		if err := s.Ping(ctx, 10*time.Second); err != nil {
			t.Fatalf("restart %d: the restarted server does not answer: %v", i+1, err)
		}
		resp, err := cli.Get(ctx, "/k")
		if err != nil {
			t.Fatalf("restart %d: Get through the old client: %v", i+1, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
			t.Fatalf("restart %d: Get = %v, want the value written before the restart", i+1, resp.Kvs)
		}
	}
	if got, want := s.URL("/x?ttl=2s"), "etcd://"+s.Endpoint()+"/x?ttl=2s"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}
