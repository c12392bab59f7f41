package devetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// DefaultListen is the client address of a server whose Config leaves
// Listen empty: etcd's usual client port, on loopback only.
const DefaultListen = "127.0.0.1:2379"

// DefaultBasePath is the registry base path of the URL a server reports.
const DefaultBasePath = "/storks"

// Config configures a development server.
type Config struct {
	// Listen is the host:port clients connect to (default DefaultListen).
	// Port 0 picks a free port. An unspecified host (":2379",
	// "0.0.0.0:2379") listens on every interface and is reported as
	// 127.0.0.1.
	Listen string
	// DataDir is where etcd keeps its data. Empty means a new temporary
	// directory, removed by Close; a directory given here is created if
	// needed and kept, so that registrations survive a restart.
	DataDir string
	// BasePath is the base path of the registry URL that URL returns
	// (default DefaultBasePath).
	BasePath string
	// StartTimeout bounds how long Start waits for the server to serve
	// clients (default 30s). Start also returns when its ctx is done.
	StartTimeout time.Duration
}

// Server is a running development etcd server.
type Server struct {
	e        *embed.Etcd
	endpoint string
	url      string
	dataDir  string
	tempDir  bool
	errc     chan error

	closeOnce sync.Once
	closeErr  error
}

// Start starts an etcd server as cfg says and returns once it serves
// clients. Its logging is discarded. The caller must Close it.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.BasePath == "" {
		cfg.BasePath = DefaultBasePath
	}
	if !strings.HasPrefix(cfg.BasePath, "/") {
		return nil, fmt.Errorf("base path %q must start with /", cfg.BasePath)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}

	s := &Server{dataDir: cfg.DataDir, errc: make(chan error, 1)}
	if s.dataDir == "" {
		dir, err := os.MkdirTemp("", "storks-dev-etcd-")
		if err != nil {
			return nil, fmt.Errorf("creating a data directory: %w", err)
		}
		s.dataDir, s.tempDir = dir, true
	} else if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}

	// Ports picked here may be taken by someone else before etcd binds
	// them; try again with new ones a few times.
	var e *embed.Etcd
	for attempt := 0; ; attempt++ {
		e, err = s.start(ctx, cfg, host, port)
		if err == nil {
			break
		}
		if attempt < 3 && addrInUse(err) && (port == 0 || !isPeerErr(err, host, port)) {
			continue
		}
		s.removeTemp()
		return nil, err
	}
	s.e = e
	go func() {
		// Err delivers serving errors; it is closed when the server stops.
		if err, ok := <-e.Err(); ok && err != nil {
			s.errc <- err
		}
		close(s.errc)
	}()
	return s, nil
}

// addrInUse reports whether err says that an address was already taken.
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// isPeerErr reports whether a bind error concerns another address than the
// client address the user asked for (which retrying cannot fix).
func isPeerErr(err error, host string, port int) bool {
	return !strings.Contains(err.Error(), net.JoinHostPort(host, strconv.Itoa(port)))
}

// splitListen checks a host:port to listen on.
func splitListen(listen string) (string, int, error) {
	host, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("listen address %q is not host:port", listen)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("listen address %q: port must be a number from 0 to 65535", listen)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil && host != "localhost" {
		return "", 0, fmt.Errorf("listen address %q: host must be an IP address or localhost", listen)
	}
	return host, port, nil
}

// start makes one attempt at starting the server.
func (s *Server) start(ctx context.Context, cfg Config, host string, port int) (*embed.Etcd, error) {
	if port == 0 {
		p, err := freePort(host)
		if err != nil {
			return nil, fmt.Errorf("finding a free port on %s: %w", host, err)
		}
		port = p
	}
	peerPort, err := freePort("127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("finding a free loopback port for etcd's peer listener: %w", err)
	}
	advertise := host
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		advertise = "127.0.0.1"
	}
	s.endpoint = net.JoinHostPort(advertise, strconv.Itoa(port))
	s.url = "etcd://" + s.endpoint + cfg.BasePath

	ec := embed.NewConfig()
	ec.Name = "storks-dev"
	ec.Dir = s.dataDir
	listenURL := url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(port))}
	clientURL := url.URL{Scheme: "http", Host: s.endpoint}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	ec.ListenClientUrls = []url.URL{listenURL}
	ec.AdvertiseClientUrls = []url.URL{clientURL}
	ec.ListenPeerUrls = []url.URL{peerURL}
	ec.AdvertisePeerUrls = []url.URL{peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.InitialClusterToken = "storks-dev"
	// A development registry sees churn, not history: keep one hour.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	// A throwaway directory need not survive a crash of the machine.
	ec.UnsafeNoFsync = s.tempDir
	ec.Metrics = "basic"
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("starting etcd on %s: %w", listenURL.Host, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd on %s failed while starting: %w", listenURL.Host, err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("etcd on %s was not ready within %v", listenURL.Host, cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("starting etcd on %s: %w", listenURL.Host, ctx.Err())
	}
}

// freePort returns a TCP port that was free on host.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Endpoint returns the client address, host:port.
func (s *Server) Endpoint() string { return s.endpoint }

// URL returns the Storks registry URL of the server,
// "etcd://host:port/base-path". registry.Open accepts it once the etcd
// adapter (github.com/storks-rpc/storks/registry/etcd) is linked in.
func (s *Server) URL() string { return s.url }

// DataDir returns the directory that holds the server's data.
func (s *Server) DataDir() string { return s.dataDir }

// TempDataDir reports whether DataDir is a temporary directory that Close
// removes.
func (s *Server) TempDataDir() bool { return s.tempDir }

// Err delivers the error that stopped the server if it fails while running,
// and is closed when the server stops.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops the server (clients see their connections fail) and removes
// its data directory if it is a temporary one. It may be called more than
// once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.e.Close()
		s.closeErr = s.removeTemp()
	})
	return s.closeErr
}

func (s *Server) removeTemp() error {
	if !s.tempDir {
		return nil
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		return fmt.Errorf("removing data directory: %w", err)
	}
	return nil
}
