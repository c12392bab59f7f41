package consul

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/internal/ctxutil"
	"github.com/storks-rpc/storks/registry"
)

func init() {
	registry.RegisterScheme("consul", open)
}

// Defaults and limits of the Config fields.
const (
	DefaultAddress         = "127.0.0.1:8500"
	DefaultTTL             = 10 * time.Second
	MinTTL                 = time.Second
	DefaultDeregisterAfter = time.Minute
	// MinDeregisterAfter is Consul's own minimum for
	// DeregisterCriticalServiceAfter.
	MinDeregisterAfter   = time.Minute
	DefaultDialTimeout   = 5 * time.Second
	DefaultWaitTime      = 5 * time.Minute
	MaxWaitTime          = 10 * time.Minute
	DefaultQueryInterval = time.Second
)

// maxConsulWeight is the largest service weight Consul accepts.
const maxConsulWeight = 65535

// Config configures a Registry; see New. The zero value of every field
// means its default.
type Config struct {
	// Address is the host:port of the HTTP API of the Consul agent to talk
	// to, usually the local one. Default "127.0.0.1:8500".
	Address string
	// Token is the ACL token sent with every request. It never appears in
	// errors or logs. When empty, the Consul API client's defaults apply
	// (the CONSUL_HTTP_TOKEN_FILE and CONSUL_HTTP_TOKEN environment
	// variables).
	Token string
	// TTL is the TTL of the check that keeps each registered instance
	// passing; the adapter passes it every TTL/3. An instance whose
	// provider stops passing it (a crashed or partitioned process) drops
	// out of Discover and Watch after TTL. Default 10s, at least 1s.
	TTL time.Duration
	// DeregisterAfter is the check's DeregisterCriticalServiceAfter: the
	// agent removes an instance that has been critical for that long.
	// Default and minimum (Consul's) 1m.
	DeregisterAfter time.Duration
	// TCPCheck adds a TCP check on the instance address (every TTL, timing
	// out after min(TTL, 5s)), so that an instance whose port does not
	// accept connections is not returned even though its process passes
	// the TTL. A new instance is then returned only once its first TCP
	// check has passed, within TTL of registering.
	TCPCheck bool
	// DialTimeout bounds connecting to the agent, and New's check that the
	// agent answers. Default 5s.
	DialTimeout time.Duration
	// ResyncGrace is how long a watch keeps the instances it knew when it
	// resynchronises after a failure (the agent unreachable or restarted,
	// the Consul index gone backwards): during the grace, instances that
	// appear are delivered at once but the ones missing from the fresh list
	// are only removed once the grace is over, unless every one of them is
	// back earlier. This gives the providers, whose registrations an agent
	// that restarted may have lost, the time to register again (which they
	// do within TTL/3 plus a request) instead of the consumers seeing them
	// all vanish and come back. Default TTL + 2s; negative disables it.
	ResyncGrace time.Duration
	// WaitTime is the longest a blocking query waits for a change before
	// it is made again. Default 5m, at most 10m (Consul's limit).
	WaitTime time.Duration
	// QueryInterval rate-limits the blocking queries of each watch, as
	// Consul recommends: a token bucket with a burst of 2 refilled every
	// QueryInterval, so that changes are delivered at once when they are
	// rare and at most once per QueryInterval when the service churns.
	// Default 1s.
	QueryInterval time.Duration
	// Logger receives the adapter's logs (one line when a watch or a
	// registration starts failing, one when it recovers). Default
	// slog.Default().
	Logger *slog.Logger
}

// Registry is a registry.Registry backed by a Consul agent. See the package
// documentation.
type Registry struct {
	cfg       Config
	client    *api.Client
	transport *http.Transport
	log       *slog.Logger

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	regs     map[string]*regEntry // by Consul service ID
	watchers map[*watcher]struct{}
	// ruleWatchers are the watches of rule documents (rules.go).
	ruleWatchers map[*ruleWatcher]struct{}
	aclFiltered  map[string]bool // Consul service names whose reads the ACLs filtered, logged once
	wg           sync.WaitGroup  // every goroutine the registry started
}

var (
	_ registry.Registry = (*Registry)(nil)
	_ registry.Lister   = (*Registry)(nil)
)

// open implements registry.Open for consul:// URLs.
func open(ctx context.Context, u *url.URL) (registry.Registry, error) {
	cfg, err := ParseURL(u)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg)
}

// urlParams are the query parameters of consul:// URLs.
var urlParams = []string{"token", "ttl", "deregister-after", "tcp-check", "dial-timeout", "resync-grace"}

// ParseURL returns the Config a consul:// URL describes; see the package
// documentation for the format. Errors are *registry.InputError values
// naming the bad part; they never include the token.
func ParseURL(u *url.URL) (Config, error) {
	var cfg Config
	if u.Scheme != "consul" {
		return cfg, &registry.InputError{Field: "URL scheme", Value: u.Scheme, Reason: "is not consul"}
	}
	if u.Opaque != "" {
		return cfg, &registry.InputError{Field: "URL", Reason: "must start with consul://"}
	}
	if u.User != nil {
		return cfg, &registry.InputError{Field: "URL user info", Reason: "is not supported by consul:// URLs; pass the ACL token as ?token=..."}
	}
	if u.Path != "" && u.Path != "/" {
		return cfg, &registry.InputError{Field: "URL path", Value: u.Path, Reason: "is not supported by consul:// URLs"}
	}
	if u.Fragment != "" {
		return cfg, &registry.InputError{Field: "URL fragment", Value: u.Fragment, Reason: "is not supported by consul:// URLs"}
	}
	addr, err := parseAddress(u.Host)
	if err != nil {
		return cfg, err
	}
	cfg.Address = addr

	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// The error may quote the token; name the query only.
		return cfg, &registry.InputError{Field: "URL query", Reason: "is malformed (want name=value pairs joined by '&', with % escapes)"}
	}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		if !slices.Contains(urlParams, k) {
			return cfg, &registry.InputError{Field: "URL query parameter", Value: k,
				Reason: "is not supported by consul:// URLs (supported: " + strings.Join(urlParams, ", ") + ")"}
		}
		if len(vals[k]) > 1 {
			return cfg, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		v := vals[k][0]
		switch k {
		case "token":
			cfg.Token = v
		case "tcp-check":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return cfg, &registry.InputError{Field: "URL query parameter", Value: k, Reason: fmt.Sprintf("must be true or false, not %q", v)}
			}
			cfg.TCPCheck = b
		default:
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 && k != "resync-grace" {
				return cfg, &registry.InputError{Field: "URL query parameter", Value: k,
					Reason: fmt.Sprintf("must be a positive duration such as 10s or 1m30s, not %q", v)}
			}
			switch k {
			case "ttl":
				cfg.TTL = d
			case "deregister-after":
				cfg.DeregisterAfter = d
			case "dial-timeout":
				cfg.DialTimeout = d
			case "resync-grace":
				if d == 0 {
					d = -1 // "0" turns it off
				}
				cfg.ResyncGrace = d
			}
		}
	}
	return cfg, nil
}

// parseAddress checks the host[:port] of a URL, defaulting to
// 127.0.0.1:8500 and port 8500.
func parseAddress(hostport string) (string, error) {
	if hostport == "" {
		return DefaultAddress, nil
	}
	host, port := hostport, "8500"
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]") {
		host = hostport[1 : len(hostport)-1]
	} else if strings.Contains(hostport, ":") && !strings.HasPrefix(hostport, "[") {
		return "", &registry.InputError{Field: "URL host", Value: hostport, Reason: "is not host:port"}
	}
	if host == "" {
		return "", &registry.InputError{Field: "URL host", Value: hostport, Reason: "is missing; want consul://host:port"}
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", &registry.InputError{Field: "URL port", Value: port, Reason: "must be a number from 1 to 65535"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// withDefaults fills in the defaults and checks the ranges.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	} else if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return cfg, &registry.InputError{Field: "address", Value: cfg.Address, Reason: "is not host:port"}
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return cfg, &registry.InputError{Field: "ttl", Value: cfg.TTL.String(), Reason: "must be at least " + MinTTL.String()}
	}
	if cfg.DeregisterAfter == 0 {
		cfg.DeregisterAfter = DefaultDeregisterAfter
	}
	if cfg.DeregisterAfter < MinDeregisterAfter {
		return cfg, &registry.InputError{Field: "deregister-after", Value: cfg.DeregisterAfter.String(),
			Reason: "must be at least " + MinDeregisterAfter.String() + " (Consul's minimum for DeregisterCriticalServiceAfter)"}
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.DialTimeout < 0 {
		return cfg, &registry.InputError{Field: "dial-timeout", Value: cfg.DialTimeout.String(), Reason: "must be positive"}
	}
	if cfg.ResyncGrace == 0 {
		cfg.ResyncGrace = cfg.TTL + 2*time.Second
	}
	if cfg.WaitTime == 0 {
		cfg.WaitTime = DefaultWaitTime
	}
	if cfg.WaitTime < 0 || cfg.WaitTime > MaxWaitTime {
		return cfg, &registry.InputError{Field: "wait time", Value: cfg.WaitTime.String(), Reason: "must be positive and at most " + MaxWaitTime.String()}
	}
	if cfg.QueryInterval == 0 {
		cfg.QueryInterval = DefaultQueryInterval
	}
	if cfg.QueryInterval < 0 {
		return cfg, &registry.InputError{Field: "query interval", Value: cfg.QueryInterval.String(), Reason: "must be positive"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// GoString is String, so that %#v does not print the token either.
func (cfg Config) GoString() string { return "consul.Config(" + strconv.Quote(cfg.String()) + ")" }

// LogValue logs the configuration as String does (see slog.LogValuer).
func (cfg Config) LogValue() slog.Value { return slog.StringValue(cfg.String()) }

// String returns the consul:// URL of the registry, with the token (if
// any) replaced by "redacted".
func (cfg Config) String() string {
	q := url.Values{}
	if cfg.Token != "" {
		q.Set("token", "redacted")
	}
	if cfg.TTL != 0 {
		q.Set("ttl", cfg.TTL.String())
	}
	if cfg.DeregisterAfter != 0 {
		q.Set("deregister-after", cfg.DeregisterAfter.String())
	}
	if cfg.TCPCheck {
		q.Set("tcp-check", "true")
	}
	if cfg.DialTimeout != 0 {
		q.Set("dial-timeout", cfg.DialTimeout.String())
	}
	if cfg.ResyncGrace != 0 {
		q.Set("resync-grace", max(cfg.ResyncGrace, 0).String())
	}
	u := url.URL{Scheme: "consul", Host: cfg.Address, RawQuery: q.Encode()}
	return u.String()
}

// New returns a registry that uses the Consul agent of cfg. It fails at
// once with a *registry.InputError if cfg is invalid, and before ctx is done
// or within cfg.DialTimeout with an error naming the address if the agent
// answers but rejects the client (an ACL token it does not know) or does
// not answer as a Consul agent (another protocol on the port, an HTTP
// server that is not Consul).
//
// An agent that cannot be reached does not fail New: if the connection is
// refused, or nothing answers within cfg.DialTimeout, New logs one warning
// naming the address and the cause and returns a registry that works as
// soon as the agent answers. Its calls fail meanwhile with that cause (a
// refused connection in milliseconds), its watches wait for their first
// list, and a goroutine logs when the agent answers (and checks the token
// then). The caller must Close the registry.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64, // a watch holds a connection for its blocking query
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		ExpectContinueTimeout: time.Second,
	}
	client, err := api.NewClient(&api.Config{
		Address:   cfg.Address,
		Scheme:    "http",
		Token:     cfg.Token,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("consul: client for the agent at %s: %w", cfg.Address, err)
	}
	hasToken := cfg.Token != "" || os.Getenv(api.HTTPTokenEnvName) != "" || os.Getenv(api.HTTPTokenFileEnvName) != ""
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	down := ping(pctx, client)
	switch {
	case ctx.Err() != nil:
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("consul: checking the agent at %s: %w", cfg.Address, ctx.Err())
	case down != nil && !unreachable(down):
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("consul: the agent at %s does not answer as a Consul agent (is it the agent's HTTP address, usually port 8500?): %w", cfg.Address, down)
	case down == nil:
		if err := checkToken(pctx, client, hasToken); err != nil {
			tr.CloseIdleConnections()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("consul: checking the ACL token with the agent at %s: %w", cfg.Address, ctx.Err())
			}
			return nil, fmt.Errorf("consul: the agent at %s: %w", cfg.Address, err)
		}
	}
	r := &Registry{
		cfg:          cfg,
		client:       client,
		transport:    tr,
		log:          cfg.Logger.With("registry", "consul", "agent", cfg.Address),
		regs:         make(map[string]*regEntry),
		watchers:     make(map[*watcher]struct{}),
		ruleWatchers: make(map[*ruleWatcher]struct{}),
		aclFiltered:  make(map[string]bool),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if down != nil {
		r.log.Warn("consul registry: cannot reach the agent; the registry works as soon as it answers, and its calls fail until then",
			"error", down)
		r.wg.Add(1)
		go r.awaitAgent(hasToken)
	}
	return r, nil
}

// ping asks the agent who the leader is, which any agent answers without
// permissions, and returns the error.
func ping(ctx context.Context, client *api.Client) error {
	_, err := client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	return err
}

// unreachable reports whether err, of a request to the agent, says that it
// cannot be reached: the connection failed or was closed before an answer,
// nothing answered in time, or a proxy in front of it answered that it is
// unavailable. Other errors (an answer that is not HTTP, an HTTP error that
// is not 5xx) come from a server that answered.
func unreachable(err error) bool {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// awaitAgent is the goroutine of a registry that New could not check: it
// asks the agent until it answers, then checks the ACL token and logs the
// outcome.
func (r *Registry) awaitAgent(hasToken bool) {
	defer r.wg.Done()
	for attempt := 1; ; attempt++ {
		if !ctxutil.Sleep(r.ctx, backoff(attempt, r.retryCap())) {
			return
		}
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.DialTimeout)
		err := ping(ctx, r.client)
		if err == nil {
			err = checkToken(ctx, r.client, hasToken)
			cancel()
			if r.ctx.Err() != nil {
				return
			}
			if err != nil {
				r.log.Error("consul registry: the agent answers now, but "+err.Error(), "error", err)
			} else {
				r.log.Info("consul registry: the agent answers now")
			}
			return
		}
		cancel()
		r.log.Debug("consul registry: the agent still cannot be reached", "error", err, "attempt", attempt)
	}
}

// checkToken asks the agent about the client's ACL token (Config.Token or
// the environment's), so that a token the agent does not know fails New
// rather than every later request. Reading one's own token needs no
// permission. Without a token (the anonymous token may be all a client
// needs) it does nothing; ACLs being disabled, or any other failure of the
// check itself, is not an error: the requests will tell.
func checkToken(ctx context.Context, client *api.Client, hasToken bool) error {
	if !hasToken {
		return nil
	}
	_, _, err := client.ACL().TokenReadSelf((&api.QueryOptions{}).WithContext(ctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusForbidden && strings.Contains(se.Body, "ACL not found") {
		// The body names no token; the token is not repeated either.
		return errors.New("the agent does not know the ACL token (ACL not found): check ?token=, Config.Token or CONSUL_HTTP_TOKEN(_FILE)")
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// String returns the registry's URL with the token redacted.
func (r *Registry) String() string { return r.cfg.String() }

// GoString is like String, so that %#v does not print the token either.
func (r *Registry) GoString() string {
	return "&consul.Registry(" + strconv.Quote(r.cfg.String()) + ")"
}

// Client returns the Consul API client the registry uses.
func (r *Registry) Client() *api.Client { return r.client }

func (r *Registry) isClosed() bool { return r.ctx.Err() != nil }

// opCtx returns ctx, also canceled when the registry is closed.
func (r *Registry) opCtx(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// callErr wraps the error of a call to the agent, or returns ErrClosed if
// the registry was closed meanwhile, or the caller's context error.
func (r *Registry) callErr(ctx context.Context, what string, err error) error {
	if r.isClosed() {
		return registry.ErrClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return fmt.Errorf("consul: %s at agent %s: %w", what, r.cfg.Address, err)
}

// registration validates in and builds its agent registration.
func (r *Registry) registration(in registry.Instance) (*api.AgentServiceRegistration, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	host, portStr, _ := net.SplitHostPort(in.Addr) // in is valid
	port, _ := strconv.Atoi(portStr)
	meta, err := encodeMeta(in)
	if err != nil {
		return nil, err
	}
	sid := ServiceID(in.Key, in.ID)
	dereg := r.cfg.DeregisterAfter.String()
	checks := api.AgentServiceChecks{{
		CheckID:                        ttlCheckID(sid),
		Name:                           "Storks provider TTL",
		Notes:                          "passed by the provider process every " + (r.cfg.TTL / 3).String(),
		TTL:                            r.cfg.TTL.String(),
		Status:                         api.HealthPassing,
		DeregisterCriticalServiceAfter: dereg,
	}}
	// A consumer record (port 0 allowed) listens nowhere: no TCP check.
	if r.cfg.TCPCheck && !in.Key.IsConsumer() {
		checks = append(checks, &api.AgentServiceCheck{
			CheckID:                        tcpCheckID(sid),
			Name:                           "Storks provider TCP " + in.Addr,
			TCP:                            in.Addr,
			Interval:                       r.cfg.TTL.String(),
			Timeout:                        min(r.cfg.TTL, 5*time.Second).String(),
			DeregisterCriticalServiceAfter: dereg,
		})
	}
	return &api.AgentServiceRegistration{
		ID:      sid,
		Name:    ServiceName(in.Key.Service),
		Tags:    tags(in.Key),
		Address: host,
		Port:    port,
		Meta:    meta,
		// Consul's DNS weights go from 1 to 65535; the exact weight (0
		// included, which Consul refuses here) is in the meta.
		Weights: &api.AgentWeights{Passing: min(max(in.EffectiveWeight(), 1), maxConsulWeight), Warning: 1},
		Checks:  checks,
	}, nil
}

// Register registers in with the agent, replacing the instance with the same
// key and ID, and keeps it registered until Deregister or Close: it passes
// the TTL check every TTL/3 and registers the instance again whenever that
// fails (the agent restarted and lost it, an operator removed it), retrying
// with capped, jittered backoff for as long as it takes.
//
// Register returns once the agent has accepted the registration; Discover
// and Watch see it as soon as the agent has synced it to the catalog,
// usually within milliseconds. If the agent rejects it or cannot be reached,
// Register returns the error and nothing is kept (a previous registration of
// the same instance stays as it was).
func (r *Registry) Register(ctx context.Context, in registry.Instance) error {
	reg, err := r.registration(in)
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	what := fmt.Sprintf("registering %v instance %q (service ID %s)", in.Key, in.ID, reg.ID)
	for {
		e, err := r.entry(reg.ID)
		if err != nil {
			return err
		}
		if err := e.lock(ctx); err != nil {
			return r.callErr(ctx, what, err)
		}
		if e.dead {
			e.unlock()
			continue // deregistered meanwhile; start afresh
		}
		if err := r.agentRegister(ctx, reg); err != nil {
			if !e.active {
				r.dropEntry(e)
			}
			e.unlock()
			return r.callErr(ctx, what, err)
		}
		e.reg = reg
		e.key, e.id = in.Key, in.ID
		if !e.active {
			if err := r.startKeeper(e); err != nil {
				r.dropEntry(e)
				e.unlock()
				return err
			}
		}
		e.unlock()
		return nil
	}
}

func (r *Registry) agentRegister(ctx context.Context, reg *api.AgentServiceRegistration) error {
	return r.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
}

// Deregister removes the instance with in.Key and in.ID from the agent and
// stops keeping it alive. It is synchronous: when it returns nil, the agent
// no longer has the instance (the catalog follows within milliseconds).
// Removing an unknown instance is not an error. If the agent cannot be
// reached, Deregister returns the error; the instance is then no longer
// kept alive either, so it turns critical after the TTL and the agent
// removes it after deregister-after.
//
// Only instances registered with the agent this client talks to can be
// removed; Consul does not let one agent remove another agent's services.
func (r *Registry) Deregister(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.ValidateRef()); err != nil {
		return err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	sid := ServiceID(in.Key, in.ID)
	what := fmt.Sprintf("deregistering %v instance %q (service ID %s)", in.Key, in.ID, sid)
	r.mu.Lock()
	e := r.regs[sid]
	r.mu.Unlock()
	if e != nil {
		if err := e.lock(ctx); err != nil {
			return r.callErr(ctx, what, err)
		}
		defer e.unlock()
		if !e.dead {
			r.stopKeeper(e)
			r.dropEntry(e)
		}
	}
	err := r.client.Agent().ServiceDeregisterOpts(sid, (&api.QueryOptions{}).WithContext(ctx))
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusNotFound {
		err = nil // not registered: nothing to do
	}
	if err != nil {
		return r.callErr(ctx, what, err)
	}
	return nil
}

// Discover returns the passing instances of key, sorted by ID, read from the
// health endpoint of the agent (which forwards the read to the Consul
// leader).
func (r *Registry) Discover(ctx context.Context, key registry.ServiceKey) ([]registry.Instance, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	name := ServiceName(key.Service)
	entries, meta, err := r.client.Health().Service(name, "", true, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, r.callErr(ctx, "discovering "+key.String(), err)
	}
	r.noteACLFilter(name, meta)
	return r.decode(entries, key), nil
}

// noteACLFilter logs, once per Consul service, that the agent left entries
// out of a read because the ACL token may not see them: with ACLs whose
// default policy is "deny", a consumer without the right token silently
// gets an empty list otherwise.
func (r *Registry) noteACLFilter(name string, meta *api.QueryMeta) {
	if meta == nil || !meta.ResultsFilteredByACLs {
		return
	}
	r.mu.Lock()
	first := !r.aclFiltered[name] && !r.closed
	if first {
		if len(r.aclFiltered) >= 1024 {
			clear(r.aclFiltered)
		}
		r.aclFiltered[name] = true
	}
	r.mu.Unlock()
	if first {
		r.log.Warn("consul registry: the agent left out instances that the ACL token may not read; "+
			"the token (?token=, Config.Token or CONSUL_HTTP_TOKEN) needs service:read on the service and node:read on the nodes of its instances",
			"consul_service", name)
	}
}

// Services lists the service keys with at least one passing instance,
// sorted by service, version, then group (see registry.Lister). It reads
// the catalog's service list and then the passing instances of every
// Consul service tagged "storks", so it costs one request per such service.
func (r *Registry) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	opts := (&api.QueryOptions{}).WithContext(ctx)
	services, _, err := r.client.Catalog().Services(opts)
	if err != nil {
		return nil, r.callErr(ctx, "listing services", err)
	}
	seen := make(map[registry.ServiceKey]struct{})
	for _, name := range slices.Sorted(maps.Keys(services)) {
		if !slices.Contains(services[name], tagStorks) {
			continue
		}
		entries, _, err := r.client.Health().Service(name, tagStorks, true, opts)
		if err != nil {
			return nil, r.callErr(ctx, "listing the instances of Consul service "+name, err)
		}
		for _, e := range entries {
			if e == nil || e.Service == nil {
				continue
			}
			m := e.Service.Meta
			key := registry.ServiceKey{Service: m[metaService], Version: m[metaVersion], Group: m[metaGroup]}
			if _, ok := m[metaID]; ok && key.Validate() == nil {
				seen[key] = struct{}{}
			}
		}
	}
	keys := slices.Collect(maps.Keys(seen))
	registry.SortKeys(keys)
	return keys, nil
}

// decode returns the instances of key among entries, sorted by ID. If two
// entries (two agents) hold the same ID, the one modified last wins.
func (r *Registry) decode(entries []*api.ServiceEntry, key registry.ServiceKey) []registry.Instance {
	type found struct {
		in    registry.Instance
		index uint64
		node  string
	}
	byID := make(map[string]found, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil || !matches(e.Service.Meta, key) {
			continue
		}
		in, err := decodeService(e.Service, key)
		if err != nil {
			r.log.Debug("consul registry: skipping an unreadable service entry", "key", key.String(), "error", err)
			continue
		}
		node := ""
		if e.Node != nil {
			node = e.Node.Node
		}
		f := found{in: in, index: e.Service.ModifyIndex, node: node}
		if prev, ok := byID[in.ID]; ok && (prev.index > f.index || prev.index == f.index && prev.node < f.node) {
			continue
		}
		byID[in.ID] = f
	}
	list := make([]registry.Instance, 0, len(byID))
	for _, f := range byID {
		list = append(list, f.in)
	}
	sortByID(list)
	return list
}

// Close stops keeping the registered instances alive (without deregistering
// them: they turn critical after the TTL, drop out of every Discover and
// Watch, and the agent removes them after deregister-after), ends every
// watch, waits for every goroutine of the registry to return and closes its
// idle connections. Closing a closed registry returns ErrClosed.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	r.closed = true
	ws, rws := r.watchers, r.ruleWatchers
	r.watchers, r.ruleWatchers = nil, nil
	r.mu.Unlock()
	r.cancel()
	for w := range ws {
		w.End(registry.ErrClosed)
	}
	for w := range rws {
		w.End(registry.ErrClosed)
	}
	r.wg.Wait()
	r.transport.CloseIdleConnections()
	return nil
}

func sortByID(list []registry.Instance) {
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
}
