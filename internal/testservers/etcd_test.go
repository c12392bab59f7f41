package testservers

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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

// TestEtcdTLSAuth checks a server with client TLS, client certificates and
// authentication: the admin client (root over TLS) works across a restart,
// a client without a password is refused, and one without the CA cannot
// connect.
func TestEtcdTLSAuth(t *testing.T) {
	s := StartEtcdWith(t, EtcdOptions{TLS: true, ClientCertAuth: true, AuthTokenTTL: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.EnableAuth(ctx, "root-pw"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "u", "u-pw", "/u/"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx, 10*time.Second); err != nil {
		t.Fatalf("Ping as root over TLS after a restart: %v", err)
	}
	cli := s.Client(t)
	if _, err := cli.Put(ctx, "/k", "v"); err != nil {
		t.Fatalf("Put as root: %v", err)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, TLS: s.ClientTLS(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	// Without a password, etcd takes the common name of the client
	// certificate, "storks-client", as the user, which has no role.
	if _, err := anon.Get(ctx, "/k"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Get without a user: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	user, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, TLS: s.ClientTLS(), Username: "u", Password: "u-pw",
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	if _, err := user.Put(ctx, "/u/k", "v"); err != nil {
		t.Errorf("Put under the user's prefix: %v", err)
	}
	if _, err := user.Put(ctx, "/k", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("Put outside the user's prefix: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	for _, f := range []string{s.CAFile(), s.ClientCertFile(), s.ClientKeyFile()} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	noCA := s.ClientTLS()
	noCA.RootCAs = nil
	plain, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, TLS: noCA, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err == nil {
		defer plain.Close()
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		if _, err := plain.Get(pctx, "/k"); err == nil {
			t.Error("a client that does not trust the test CA got an answer")
		}
	}
	s.Close()
	if _, err := os.Stat(s.CAFile()); !os.IsNotExist(err) {
		t.Errorf("the certificates were not removed: %v", err)
	}
}
