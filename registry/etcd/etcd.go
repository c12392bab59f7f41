package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"

	"github.com/storks-rpc/storks/registry"
)

func init() {
	registry.RegisterScheme("etcd", open)
}

// open is the registry.Open entry point for etcd:// URLs.
func open(ctx context.Context, u *url.URL) (registry.Registry, error) {
	cfg, err := configFromURL(u)
	if err != nil {
		return nil, err
	}
	r, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Registry is a [registry.Registry] backed by etcd. Create it with [New] or
// with registry.Open and an etcd:// URL; see the package documentation.
type Registry struct {
	cfg Config
	cli *clientv3.Client
	log *slog.Logger
	eps string // the endpoints, for error messages

	// dials records the attempts to connect to the endpoints (reach.go).
	dials *dialTracker
	// booting is set while New makes the client, and giveUp is closed when
	// New found that no endpoint can be reached (see deferToken).
	booting atomic.Bool
	giveUp  chan struct{}
	// startedDown: New could not reach the cluster (and said so).
	startedDown bool

	// bgTimeout bounds each call the background goroutines make, and
	// retryCap their backoff between attempts.
	bgTimeout time.Duration
	retryCap  time.Duration

	ctx    context.Context // canceled by Close; every goroutine ends with it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// ops is a 1-slot semaphore that serializes every write of
	// registrations (Register, Deregister and the keeper's re-puts) and
	// lease grants, so that a re-put never resurrects an instance that
	// Deregister is removing. It is taken with a context, unlike a mutex.
	ops chan struct{}
	// kick wakes the keeper (1-buffered; a value means "look again").
	kick chan struct{}
	// watchStream numbers the gRPC stream new watches use; see
	// watcher.watchFrom.
	watchStream atomic.Int64

	mu       sync.Mutex
	closed   bool
	lease    clientv3.LeaseID         // the lease of the registrations; 0 while there is none
	regs     map[string]*registration // by etcd key
	watchers map[*watcher]struct{}
	// ruleWatchers are the watches of rule documents (rules.go).
	ruleWatchers map[*ruleWatcher]struct{}
	failing      bool             // the keeper's last background call failed
	badLogged    map[string]int64 // invalid keys already logged, with their revision
}

// registration is one instance this client keeps registered.
type registration struct {
	in  registry.Instance
	key string // etcd key
	val string // JSON value
	// lease is the lease the key was last put with (guarded by
	// Registry.mu). The keeper puts the key again when it is not the
	// current lease: after the lease was lost, or when the key was found
	// missing (it then sets it to 0).
	lease clientv3.LeaseID
}

// New returns a registry that uses the etcd cluster of cfg.Endpoints. It
// fails at once with a *registry.InputError if cfg is invalid, and before
// ctx is done or within cfg.DialTimeout with an error naming the endpoints
// if a member answers but rejects the client: wrong credentials or
// permissions, TLS that does not match the server's, a server that does
// not speak etcd's protocol.
//
// A cluster that cannot be reached does not fail New: if no endpoint
// accepts a connection (refused at once, or no answer within
// cfg.DialTimeout), or none answers a read within cfg.DialTimeout without
// anything being found wrong, New logs one warning naming the endpoints and
// the cause and returns a registry that keeps connecting in the
// background. Its calls fail fast with that cause until a member can be
// reached (a refused connection in milliseconds), its watches wait and
// deliver their first list once it can, and everything works from then
// on. ctx bounds only New itself.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	eps := strings.Join(cfg.Endpoints, ",")
	retryCap := min(max(cfg.TTL/3, 200*time.Millisecond), 5*time.Second)
	r := &Registry{
		cfg:          cfg,
		log:          cfg.Logger.With("registry", "etcd", "endpoints", eps),
		eps:          eps,
		bgTimeout:    min(max(cfg.TTL/2, time.Second), cfg.RequestTimeout),
		retryCap:     retryCap,
		dials:        newDialTracker(),
		giveUp:       make(chan struct{}),
		ops:          make(chan struct{}, 1),
		kick:         make(chan struct{}, 1),
		regs:         make(map[string]*registration),
		watchers:     make(map[*watcher]struct{}),
		ruleWatchers: make(map[*ruleWatcher]struct{}),
		badLogged:    make(map[string]int64),
	}
	dialOpts := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		// gRPC's default reconnect backoff grows to 2 minutes: after a
		// long outage the client would notice the server is back far
		// later than one TTL. Keep it as short as our own retries.
		Backoff: grpcbackoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   retryCap,
		},
		MinConnectTimeout: cfg.DialTimeout,
	}), grpc.WithContextDialer(r.dial)}
	if cfg.TLS != nil && cfg.TLS.ServerName != "" {
		// gRPC checks the server's certificate against the authority,
		// the endpoint's host by default, and ignores TLS.ServerName.
		dialOpts = append(dialOpts, grpc.WithAuthority(cfg.TLS.ServerName))
	}
	if cfg.Username != "" {
		dialOpts = append(dialOpts, grpc.WithChainUnaryInterceptor(r.deferToken))
	}
	ccfg := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// The adapter logs what matters through Config.Logger, once per
		// state change; the client would log every retry.
		Logger:      zap.NewNop(),
		DialOptions: dialOpts,
	}
	down, err := r.newClient(ctx, ccfg)
	if err != nil {
		return nil, err
	}
	if down == nil {
		if down, err = r.ping(ctx); err != nil {
			r.cli.Close()
			return nil, err
		}
	}
	if down != nil {
		r.startedDown = true
		r.log.Warn("etcd registry: cannot reach etcd; the registry keeps connecting in the background, and its calls fail until it can",
			"error", down)
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(2)
	go r.keep()
	go r.monitorConn()
	return r, nil
}

// newClient makes r.cli. Without credentials clientv3.New returns at once
// (the client connects when it is first used). With credentials it
// authenticates first, which New stops waiting for (see deferToken) as soon
// as no endpoint accepts a connection; it then returns why as down. It
// returns an error if a member rejected the credentials, or answered but
// not as etcd, or if ctx ended.
func (r *Registry) newClient(ctx context.Context, ccfg clientv3.Config) (down, err error) {
	cfg := r.cfg
	r.booting.Store(true)
	defer r.booting.Store(false)
	type result struct {
		cli *clientv3.Client
		err error
	}
	start := func() <-chan result {
		ch := make(chan result, 1)
		go func() {
			cli, err := clientv3.New(ccfg)
			ch <- result{cli, err}
		}()
		return ch
	}
	giveUp := func(why error) {
		if down == nil {
			down = why
			close(r.giveUp)
		}
	}
	ch := start()
	var res result
wait:
	for {
		_, changed := r.dials.now()
		if uerr := r.dials.failedSince(0, cfg.Endpoints); uerr != nil {
			giveUp(uerr)
		}
		select {
		case res = <-ch:
			break wait
		case <-changed:
		case <-ctx.Done():
			giveUp(ctx.Err())
			if res = <-ch; res.err == nil {
				res.cli.Close()
			}
			return nil, fmt.Errorf("registry: connecting to etcd at %s: %w", r.eps, ctx.Err())
		}
	}
	if res.err != nil && errors.Is(res.err, context.DeadlineExceeded) && down == nil {
		// With credentials: no member answered the authentication
		// within the dial timeout. Find out why; unless the members
		// rejected the connection, they are down: start without a token.
		reason, rejected := diagnose(ctx, cfg)
		if rejected {
			return nil, unreachable(cfg, r.eps, reason, res.err)
		}
		if reason == "" {
			reason = fmt.Sprintf("no member answered within the dial timeout (%v)", cfg.DialTimeout)
		}
		giveUp(errors.New(reason))
		res = <-start()
	}
	if res.err != nil {
		// Its errors never hold the password.
		if reason := authProblem(cfg, res.err); reason != "" {
			return nil, fmt.Errorf("registry: etcd at %s: %s: %w", r.eps, reason, res.err)
		}
		return nil, fmt.Errorf("registry: etcd client for %s: %w", r.eps, res.err)
	}
	r.cli = res.cli
	return down, nil
}

// ping reads from the cluster, so that a wrong address, wrong credentials
// or a server that is not etcd are reported by New rather than by the first
// Register. It returns down, why the cluster cannot be reached, if no
// endpoint accepts a connection or no member answers within the dial
// timeout and nothing is found wrong; and an error if a member rejected the
// client or ctx ended.
func (r *Registry) ping(ctx context.Context) (down, err error) {
	cfg := r.cfg
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	err = r.connectErr(pctx)
	if err == nil {
		_, err = r.cli.Get(pctx, cfg.BasePath+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	}
	switch {
	case err == nil:
		return nil, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("registry: connecting to etcd at %s: %w", r.eps, ctx.Err())
	case isUnreachable(err):
		return err, nil
	}
	if reason := authProblem(cfg, err); reason != "" {
		return nil, fmt.Errorf("registry: etcd at %s: %s: %w", r.eps, reason, err)
	}
	reason, rejected := diagnose(ctx, cfg)
	if rejected {
		return nil, unreachable(cfg, r.eps, reason, err)
	}
	if reason != "" {
		return fmt.Errorf("%s: %w", reason, err), nil
	}
	return fmt.Errorf("no member answered within the dial timeout (%v): %w", cfg.DialTimeout, err), nil
}

// unreachable is the error of New when a member rejected the client, with
// what diagnose found out.
func unreachable(cfg Config, eps, reason string, err error) error {
	return fmt.Errorf("registry: etcd at %s: %s (no etcd answer within the dial timeout of %v): %w", eps, reason, cfg.DialTimeout, err)
}

// authProblem explains an error of the server that is about credentials or
// permissions, or returns "" for any other error.
func authProblem(cfg Config, err error) string {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Sprintf("authentication as user %q failed (wrong user name or password)", cfg.Username)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		if cfg.Username == "" {
			return "the server requires authentication: give etcd://user:password@host:port/... or Config.Username and Config.Password"
		}
		return fmt.Sprintf("the server did not accept the token of user %q", cfg.Username)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		who := "this client (no user; with a client certificate, etcd takes its common name as the user)"
		if cfg.Username != "" {
			who = fmt.Sprintf("user %q", cfg.Username)
		}
		return fmt.Sprintf("%s may not read the keys under %s/ (grant it a role with readwrite permission on that prefix)", who, cfg.BasePath)
	case errors.Is(err, rpctypes.ErrAuthNotEnabled):
		return "the server has authentication disabled"
	}
	return ""
}

// monitorConn logs when the connection to the cluster is lost and when it is
// back, once per change: watches cannot tell, since the client resumes them
// by itself.
func (r *Registry) monitorConn() {
	defer r.wg.Done()
	conn := r.cli.ActiveConnection()
	lost := r.startedDown // New logged it
	again := ""
	if !r.startedDown {
		again = " again"
	}
	state := conn.GetState()
	for conn.WaitForStateChange(r.ctx, state) {
		state = conn.GetState()
		switch {
		case state == connectivity.TransientFailure && !lost:
			lost = true
			r.log.Warn("etcd registry: lost the connection to etcd; watches keep their last lists and registrations are restored when it is back")
		case state == connectivity.Ready && lost:
			lost = false
			r.log.Info("etcd registry: connected to etcd" + again)
			again = " again"
		}
	}
}

// Config returns the configuration of r, with the defaults filled in.
func (r *Registry) Config() Config { return r.cfg }

// String returns the registry's URL with the password redacted (see
// Config.String); it is what %v prints.
func (r *Registry) String() string { return r.cfg.String() }

// GoString is like String, so that %#v does not print the password either.
func (r *Registry) GoString() string { return "&etcd.Registry(" + strconv.Quote(r.cfg.String()) + ")" }

func (r *Registry) newBackoff() *backoff {
	return &backoff{base: min(100*time.Millisecond, r.retryCap), max: r.retryCap}
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// opContext bounds a caller's call by RequestTimeout when ctx has no
// deadline.
func (r *Registry) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.cfg.RequestTimeout)
}

// opErr turns the error of a call into the one returned to the caller.
func (r *Registry) opErr(what string, err error) error {
	if r.isClosed() || errors.Is(err, registry.ErrClosed) {
		return registry.ErrClosed
	}
	if errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrUserEmpty) {
		// New could not check the credentials if the cluster was down.
		return fmt.Errorf("registry: etcd at %s: %s: %s: %w", r.eps, what, authProblem(r.cfg, err), err)
	}
	return fmt.Errorf("registry: etcd at %s: %s: %w", r.eps, what, err)
}

func (r *Registry) lockOps(ctx context.Context) error {
	select {
	case r.ops <- struct{}{}:
		if r.isClosed() {
			<-r.ops
			return registry.ErrClosed
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return registry.ErrClosed
	}
}

func (r *Registry) unlockOps() { <-r.ops }

// withOps runs f holding the ops semaphore, with a context bounded by
// bgTimeout; it is how the keeper writes.
func (r *Registry) withOps(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(r.ctx, r.bgTimeout)
	defer cancel()
	if err := r.lockOps(ctx); err != nil {
		return err
	}
	defer r.unlockOps()
	return f(ctx)
}

func (r *Registry) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// leaseID returns the current lease, 0 if there is none.
func (r *Registry) leaseID() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// leaseLocked returns the current lease, granting one if there is none.
// The caller holds ops.
func (r *Registry) leaseLocked(ctx context.Context) (clientv3.LeaseID, error) {
	if lease := r.leaseID(); lease != 0 {
		return lease, nil
	}
	resp, err := r.cli.Grant(ctx, int64(r.cfg.TTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("granting a lease: %w", err)
	}
	r.mu.Lock()
	r.lease = resp.ID
	r.mu.Unlock()
	r.wake() // the keeper starts keeping it alive
	return resp.ID, nil
}

// leaseLost forgets lease if it is still the current one, so that the next
// write grants a new lease and the keeper puts every registration again.
func (r *Registry) leaseLost(lease clientv3.LeaseID, reason string) {
	r.mu.Lock()
	lost := r.lease == lease && lease != 0
	if lost {
		r.lease = 0
	}
	closed, n := r.closed, len(r.regs)
	r.mu.Unlock()
	if lost && !closed {
		r.log.Warn("etcd registry: lease lost; registering the instances again under a new lease",
			"lease", fmt.Sprintf("%x", int64(lease)), "reason", reason, "instances", n)
	}
	r.wake()
}

// putLocked puts reg under the current lease (granting one if needed, and
// once more if the server no longer knows the current one) and returns that
// lease. The caller holds ops.
func (r *Registry) putLocked(ctx context.Context, reg *registration) (clientv3.LeaseID, error) {
	for attempt := 0; ; attempt++ {
		lease, err := r.leaseLocked(ctx)
		if err != nil {
			return 0, err
		}
		_, err = r.cli.Put(ctx, reg.key, reg.val, clientv3.WithLease(lease))
		if err == nil {
			return lease, nil
		}
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			r.leaseLost(lease, "the server no longer knows it")
			continue
		}
		return 0, err
	}
}

// Register puts the instance under BasePath, attached to this client's
// lease, and keeps it there until Deregister or Close: if the lease is lost
// or the key deleted, the keeper puts it back. Registering an ID again
// replaces the instance.
func (r *Registry) Register(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.Validate()); err != nil {
		return err
	}
	in = in.Clone()
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	what := fmt.Sprintf("register %s instance %q", in.Key, in.ID)
	if err := r.connectErr(ctx); err != nil {
		return r.opErr(what, err)
	}
	if err := r.lockOps(ctx); err != nil {
		return r.opErr(what, err)
	}
	defer r.unlockOps()
	reg := &registration{
		in:  in,
		key: instanceKey(r.cfg.BasePath, in.Key, in.ID),
		val: encode(in, time.Now()),
	}
	lease, err := r.putLocked(ctx, reg)
	if err != nil {
		return r.opErr(what, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	reg.lease = lease
	r.regs[reg.key] = reg
	r.mu.Unlock()
	r.wake()
	return nil
}

// Deregister deletes the instance's key, whichever client registered it,
// and stops keeping it registered. If the delete fails, the registration
// is kept as it was and the error returned.
func (r *Registry) Deregister(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.ValidateRef()); err != nil {
		return err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	what := fmt.Sprintf("deregister %s instance %q", in.Key, in.ID)
	if err := r.connectErr(ctx); err != nil {
		return r.opErr(what, err)
	}
	if err := r.lockOps(ctx); err != nil {
		return r.opErr(what, err)
	}
	defer r.unlockOps()
	key := instanceKey(r.cfg.BasePath, in.Key, in.ID)
	r.mu.Lock()
	reg := r.regs[key]
	delete(r.regs, key)
	r.mu.Unlock()
	if _, err := r.cli.Delete(ctx, key); err != nil {
		if reg != nil {
			r.mu.Lock()
			if _, again := r.regs[key]; !again && !r.closed {
				r.regs[key] = reg
			}
			r.mu.Unlock()
		}
		return r.opErr(what, err)
	}
	return nil
}

// Discover lists the instances of key with one linearizable read.
func (r *Registry) Discover(ctx context.Context, key registry.ServiceKey) ([]registry.Instance, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	prefix := servicePrefix(r.cfg.BasePath, key)
	err := r.connectErr(ctx)
	var resp *clientv3.GetResponse
	if err == nil {
		resp, err = r.cli.Get(ctx, prefix, clientv3.WithPrefix())
	}
	if err != nil {
		return nil, r.opErr("discover "+key.String(), err)
	}
	return sortedList(r.decodeAll(resp.Kvs, prefix, key)), nil
}

// Services lists the service keys with at least one instance, sorted; see
// [registry.Lister]. It reads only the keys under BasePath, not their values.
func (r *Registry) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	prefix := r.cfg.BasePath + "/"
	err := r.connectErr(ctx)
	var resp *clientv3.GetResponse
	if err == nil {
		resp, err = r.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	}
	if err != nil {
		return nil, r.opErr("list services", err)
	}
	seen := make(map[registry.ServiceKey]bool)
	keys := []registry.ServiceKey{}
	for _, kv := range resp.Kvs {
		seg, id, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), prefix), "/")
		if !ok || id == "" || strings.Contains(id, "/") {
			continue
		}
		k, ok := parseServiceKey(seg)
		if ok && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	registry.SortKeys(keys)
	return keys, nil
}

// decodeAll decodes the instances of key among kvs, logging (once per key
// and revision) and skipping the values that are not valid instances.
func (r *Registry) decodeAll(kvs []*mvccpb.KeyValue, prefix string, key registry.ServiceKey) map[string]registry.Instance {
	m := make(map[string]registry.Instance, len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key)
		if notInstanceKey(k, prefix) {
			continue // a rule key, under the prefix of a service called "rules"
		}
		in, err := decode(k, kv.Value, prefix, key)
		if err != nil {
			r.logBad(k, kv.ModRevision, err)
			continue
		}
		m[k] = in
	}
	return m
}

func (r *Registry) logBad(key string, rev int64, err error) {
	r.mu.Lock()
	if r.badLogged[key] == rev {
		r.mu.Unlock()
		return
	}
	if len(r.badLogged) >= 1024 {
		clear(r.badLogged)
	}
	r.badLogged[key] = rev
	r.mu.Unlock()
	r.log.Warn("etcd registry: ignoring a key that does not hold a valid instance", "key", key, "error", err)
}

// Close stops the keeper and every watch, waits for their goroutines and
// closes the connection. It deregisters nothing and revokes nothing: the
// lease is no longer kept alive, so the server deletes this client's
// instances one TTL later. Closing twice returns ErrClosed.
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
	if err := r.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("registry: closing the etcd client of %s: %w", r.eps, err)
	}
	return nil
}

// fail logs that a background operation failed, unless the previous one
// failed too.
func (r *Registry) fail(what string, err error) {
	r.mu.Lock()
	first := !r.failing && !r.closed
	r.failing = true
	r.mu.Unlock()
	if first {
		r.log.Warn("etcd registry: "+what+" failed; retrying with backoff until it works", "error", err)
	} else {
		r.log.Debug("etcd registry: "+what+" failed again", "error", err)
	}
}

// recovered logs that background operations work again after a failure.
func (r *Registry) recovered() {
	r.mu.Lock()
	was := r.failing
	r.failing = false
	r.mu.Unlock()
	if was {
		r.log.Info("etcd registry: the server answers again")
	}
}
