package devetcd

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, k, v string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, k, v); err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
}

func get(t *testing.T, cli *clientv3.Client, k string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, k)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestStartTempDir(t *testing.T) {
	s := start(t, Config{Listen: "127.0.0.1:0"})
	if !strings.HasPrefix(s.URL(), "etcd://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/storks") {
		t.Errorf("URL() = %q, want etcd://127.0.0.1:PORT/storks", s.URL())
	}
	if s.URL() != "etcd://"+s.Endpoint()+"/storks" {
		t.Errorf("URL() = %q does not match Endpoint() %q", s.URL(), s.Endpoint())
	}
	if !s.TempDataDir() {
		t.Error("TempDataDir() = false without a DataDir")
	}
	cli := client(t, s)
	put(t, cli, "k", "v")
	if got := get(t, cli, "k"); got != "v" {
		t.Errorf("get k = %q, want v", got)
	}
	dir := s.DataDir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary data directory %s still there after Close: %v", dir, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, ok := <-s.Err(); ok {
		t.Error("Err() not closed after Close")
	}
}

func TestDataDirKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := start(t, Config{Listen: "127.0.0.1:0", DataDir: dir, BasePath: "/dev"})
	if !strings.HasSuffix(s.URL(), "/dev") {
		t.Errorf("URL() = %q, want base path /dev", s.URL())
	}
	put(t, client(t, s), "k", "kept")
	s.Close()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data directory removed by Close: %v", err)
	}

	// A restart on the same directory (with another peer port) finds the
	// data again.
	s2 := start(t, Config{Listen: "127.0.0.1:0", DataDir: dir})
	if got := get(t, client(t, s2), "k"); got != "kept" {
		t.Errorf("after restart get k = %q, want kept", got)
	}
}

func TestListenInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(context.Background(), Config{Listen: l.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a taken port: err = %v, want address already in use", err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Listen: "2379"}, "not host:port"},
		{Config{Listen: "127.0.0.1:99999"}, "port must be"},
		{Config{Listen: "example.com:2379"}, "host must be an IP address"},
		{Config{Listen: "127.0.0.1:0", BasePath: "storks"}, "must start with /"},
	} {
		_, err := Start(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v): err = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
