package testservers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdTB is the part of testing.TB that StartEtcd uses. *testing.T and
// *testing.B implement it; a program (a demo) can pass its own.
type EtcdTB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Etcd is a single-member etcd server embedded in this process
// (go.etcd.io/etcd/server/v3/embed), listening on free loopback ports with a
// data directory of its own. Stop and Start restart it on the same
// directory and ports, so clients reconnect to the same endpoint and find
// their data (and their leases) again. Its methods are safe for concurrent
// use.
type Etcd struct {
	dir        string
	clientPort int
	peerPort   int

	mu     sync.Mutex
	e      *embed.Etcd // nil while stopped
	closed bool
}

// etcdStartTimeout bounds how long a start may take before it is reported
// as a failure.
const etcdStartTimeout = 30 * time.Second

// StartEtcd starts an embedded etcd server for t and closes it (and removes
// its data directory) when t ends. If the server cannot start, the test
// fails when the environment variable CI is "true" and is skipped otherwise,
// with a message saying what went wrong.
func StartEtcd(t EtcdTB) *Etcd {
	t.Helper()
	s, err := LaunchEtcd()
	if err != nil {
		etcdFailOrSkip(t, "%v", err)
		return nil
	}
	t.Cleanup(s.Close)
	return s
}

// LaunchEtcd starts an embedded etcd server outside of a test. The caller
// must Close it, which also removes its data directory.
func LaunchEtcd() (*Etcd, error) {
	dir, err := os.MkdirTemp("", "storks-etcd-")
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: creating a data directory: %w", err)
	}
	ports, err := etcdFreePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded etcd: finding free loopback ports: %w", err)
	}
	s := &Etcd{dir: dir, clientPort: ports[0], peerPort: ports[1]}
	if err := s.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// etcdFailOrSkip fails the test under CI=true and skips it otherwise.
func etcdFailOrSkip(t EtcdTB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) +
		" (the etcd server is embedded from the Go module go.etcd.io/etcd/server/v3, which go.mod requires;" +
		" no binary is needed, but two free loopback TCP ports and a writable temp directory are)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
		return
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// etcdFreePorts returns n distinct TCP ports that were free on 127.0.0.1.
func etcdFreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Keep every listener open until all ports are known, so that
		// they are distinct.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (s *Etcd) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "storks-test"
	cfg.Dir = s.dir
	curl := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort))}
	purl := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.peerPort))}
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "storks-test-" + strconv.Itoa(s.clientPort)
	// A fast heartbeat makes the single member leader quickly after a
	// (re)start and lets leases be as short as 1s.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = true // the data only has to survive Stop/Start
	cfg.Metrics = "basic"
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	return cfg
}

// Start starts the server again after Stop, on the same data directory and
// ports, and waits until it serves clients. Starting a running server does
// nothing.
func (s *Etcd) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("embedded etcd: Start after Close")
	}
	if s.e != nil {
		return nil
	}
	e, err := embed.StartEtcd(s.config())
	if err != nil {
		return fmt.Errorf("embedded etcd on 127.0.0.1:%d (data dir %s) did not start: %w", s.clientPort, s.dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd on 127.0.0.1:%d failed while starting: %w", s.clientPort, err)
	case <-time.After(etcdStartTimeout):
		e.Close()
		return fmt.Errorf("embedded etcd on 127.0.0.1:%d was not ready within %v", s.clientPort, etcdStartTimeout)
	}
	s.e = e
	return nil
}

// Stop stops the server, keeping its data directory for Start. Clients see
// their connections fail. Stopping a stopped server does nothing. (The
// embedded server waits up to about 5s for open client streams to end
// before it cuts them.)
func (s *Etcd) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// Close stops the server for good and removes its data directory.
func (s *Etcd) Close() {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		os.RemoveAll(s.dir)
	}
}

// Endpoint returns the client address, "127.0.0.1:port". It does not change
// across Stop and Start.
func (s *Etcd) Endpoint() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort))
}

// URL returns the Storks registry URL of this server with the given base
// path and optional query, for example URL("/storks?ttl=2s") returns
// "etcd://127.0.0.1:port/storks?ttl=2s". The etcd adapter
// (github.com/storks-rpc/storks/registry/etcd) must be imported for
// registry.Open to accept it.
func (s *Etcd) URL(base string) string {
	return "etcd://" + s.Endpoint() + base
}

// Client returns a raw etcd client of the server, closed when t ends, for
// inspecting the server or injecting faults (revoking leases, deleting keys,
// compacting).
func (s *Etcd) Client(t EtcdTB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %s: %v", s.Endpoint(), err)
		return nil
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// EtcdRegistryURL starts an embedded etcd server for t (see StartEtcd) and
// returns a registry URL for it with a base path of its own and the given
// lease TTL (10s if zero): the one-liner for tests that run providers and
// consumers against a real etcd. The test must import the etcd adapter,
// github.com/storks-rpc/storks/registry/etcd.
func EtcdRegistryURL(t EtcdTB, ttl time.Duration) string {
	t.Helper()
	s := StartEtcd(t)
	if s == nil {
		return ""
	}
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return s.URL(fmt.Sprintf("/storks-test-%d?ttl=%s", time.Now().UnixNano(), ttl))
}

// Ping checks that the server answers a read within timeout.
func (s *Etcd) Ping(ctx context.Context, timeout time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = cli.Get(ctx, "ping")
	return err
}
