package testservers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EtcdTB is the part of testing.TB that StartEtcd uses. *testing.T and
// *testing.B implement it; a program (a demo) can pass its own.
type EtcdTB = TB

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
	opts       EtcdOptions
	tls        *etcdTLSFiles // nil unless opts.TLS or opts.ClientCertAuth

	mu       sync.Mutex
	e        *embed.Etcd // nil while stopped
	closed   bool
	rootPass string // the root user's password once EnableAuth succeeded
}

// EtcdOptions configures a server started with StartEtcdWith. The zero
// value is the plain server of StartEtcd.
type EtcdOptions struct {
	// TLS serves clients over TLS only, with a server certificate (for
	// 127.0.0.1 and localhost) signed by a CA generated for this server;
	// CAFile names the CA's certificate and ClientTLS returns a client
	// configuration that trusts it.
	TLS bool
	// ClientCertAuth makes the server require a client certificate signed
	// by the same CA (it implies TLS). ClientCertFile and ClientKeyFile
	// hold one, which ClientTLS uses.
	ClientCertAuth bool
	// AuthTokenTTL is the lifetime of the server's "simple" authentication
	// tokens once authentication is enabled (EnableAuth); a token unused
	// for this long expires. It is a whole number of seconds; zero means
	// etcd's default, 5 minutes.
	AuthTokenTTL time.Duration
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
	return StartEtcdWith(t, EtcdOptions{})
}

// StartEtcdWith is StartEtcd with options: client TLS, client certificate
// authentication, and the lifetime of authentication tokens.
func StartEtcdWith(t EtcdTB, opts EtcdOptions) *Etcd {
	t.Helper()
	s, err := LaunchEtcdWith(opts)
	if err != nil {
		etcdFailOrSkip(t, "%v", err)
		return nil
	}
	t.Cleanup(s.Close)
	return s
}

// LaunchEtcd starts an embedded etcd server outside of a test. The caller
// must Close it, which also removes its data directory.
func LaunchEtcd() (*Etcd, error) { return LaunchEtcdWith(EtcdOptions{}) }

// LaunchEtcdWith is LaunchEtcd with options; see EtcdOptions.
func LaunchEtcdWith(opts EtcdOptions) (*Etcd, error) {
	if opts.AuthTokenTTL < 0 || opts.AuthTokenTTL%time.Second != 0 {
		return nil, fmt.Errorf("embedded etcd: AuthTokenTTL %v is not a whole number of seconds", opts.AuthTokenTTL)
	}
	dir, err := os.MkdirTemp("", "storks-etcd-")
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: creating a data directory: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded etcd: finding free loopback ports: %w", err)
	}
	s := &Etcd{dir: dir, clientPort: ports[0], peerPort: ports[1], opts: opts}
	if opts.TLS || opts.ClientCertAuth {
		// The data directory holds only etcd's member directory; the
		// certificates live next to it.
		s.tls, err = newEtcdTLSFiles(dir + "-tls")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("embedded etcd: generating test certificates: %w", err)
		}
	}
	if err := s.Start(); err != nil {
		s.removeFiles()
		return nil, err
	}
	return s, nil
}

func (s *Etcd) removeFiles() {
	os.RemoveAll(s.dir)
	if s.tls != nil {
		os.RemoveAll(s.tls.dir)
	}
}

// etcdFailOrSkip fails the test under CI=true and skips it otherwise.
func etcdFailOrSkip(t EtcdTB, format string, args ...any) {
	t.Helper()
	failOrSkip(t, "%s%s", fmt.Sprintf(format, args...),
		" (the etcd server is embedded from the Go module go.etcd.io/etcd/server/v3, which go.mod requires;"+
			" no binary is needed, but two free loopback TCP ports and a writable temp directory are)")
}

func (s *Etcd) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = "storks-test"
	cfg.Dir = s.dir
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       s.tls.serverCert,
			KeyFile:        s.tls.serverKey,
			ClientCertAuth: s.opts.ClientCertAuth,
		}
		if s.opts.ClientCertAuth {
			cfg.ClientTLSInfo.TrustedCAFile = s.tls.ca
		}
	}
	if s.opts.AuthTokenTTL > 0 {
		cfg.AuthTokenTTL = uint(s.opts.AuthTokenTTL / time.Second)
	}
	// bcrypt's minimum cost: every authentication hashes the password,
	// which at the default cost takes a second or more under the race
	// detector, in this process.
	cfg.BcryptCost = 4
	curl := url.URL{Scheme: scheme, Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.clientPort))}
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
		s.removeFiles()
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
//
// Once EnableAuth has been called the client authenticates as root; on a
// TLS server it uses ClientTLS.
func (s *Etcd) Client(t EtcdTB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(s.adminConfig(5 * time.Second))
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
	cli, err := clientv3.New(s.adminConfig(timeout))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = cli.Get(ctx, "ping")
	return err
}

// adminConfig is the client configuration of Client and Ping: root's
// credentials once auth is enabled, and the test CA on a TLS server.
func (s *Etcd) adminConfig(dialTimeout time.Duration) clientv3.Config {
	s.mu.Lock()
	pass := s.rootPass
	s.mu.Unlock()
	cfg := clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
		TLS:         s.ClientTLS(),
	}
	if pass != "" {
		cfg.Username, cfg.Password = "root", pass
	}
	return cfg
}

// EnableAuth turns etcd's authentication on: it creates the user "root"
// with rootPassword and the role "root", and enables auth. From then on
// every request needs a user (or, with ClientCertAuth, a client
// certificate whose common name names one); Client and Ping authenticate
// as root. The setting survives Stop and Start.
func (s *Etcd) EnableAuth(ctx context.Context, rootPassword string) error {
	if rootPassword == "" {
		return errors.New("embedded etcd: EnableAuth needs a root password")
	}
	cli, err := clientv3.New(s.adminConfig(5 * time.Second))
	if err != nil {
		return fmt.Errorf("embedded etcd: client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, "root", rootPassword); err != nil {
		return fmt.Errorf("embedded etcd: adding the root user: %w", err)
	}
	if _, err := cli.RoleAdd(ctx, "root"); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("embedded etcd: adding the root role: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("embedded etcd: granting root the root role: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("embedded etcd: enabling auth: %w", err)
	}
	s.mu.Lock()
	s.rootPass = rootPassword
	s.mu.Unlock()
	return nil
}

// AddUser creates user with password and a role of the same name that may
// read and write every key under prefix (and only those). Call it after
// EnableAuth.
func (s *Etcd) AddUser(ctx context.Context, user, password, prefix string) error {
	cli, err := clientv3.New(s.adminConfig(5 * time.Second))
	if err != nil {
		return fmt.Errorf("embedded etcd: client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, user, password); err != nil {
		return fmt.Errorf("embedded etcd: adding user %q: %w", user, err)
	}
	if _, err := cli.RoleAdd(ctx, user); err != nil {
		return fmt.Errorf("embedded etcd: adding role %q: %w", user, err)
	}
	if _, err := cli.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		return fmt.Errorf("embedded etcd: granting role %q readwrite on %s: %w", user, prefix, err)
	}
	if _, err := cli.UserGrantRole(ctx, user, user); err != nil {
		return fmt.Errorf("embedded etcd: granting user %q its role: %w", user, err)
	}
	return nil
}

// CAFile returns the PEM file of the CA that signed the server's (and the
// client's) certificate, "" unless the server serves TLS.
func (s *Etcd) CAFile() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.ca
}

// ClientCertFile returns the PEM file of a client certificate signed by the
// server's CA (common name "storks-client"), "" unless the server serves TLS.
func (s *Etcd) ClientCertFile() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.clientCert
}

// ClientKeyFile returns the PEM file of the private key of the ClientCertFile
// certificate, "" unless the server serves TLS.
func (s *Etcd) ClientKeyFile() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.clientKey
}

// ClientTLS returns a client TLS configuration that trusts the server's CA
// and presents the client certificate, or nil unless the server serves
// TLS.
func (s *Etcd) ClientTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.clientConfig()
}
