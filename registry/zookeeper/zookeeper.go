package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/internal/ctxutil"
	"github.com/storks-rpc/storks/registry"
)

// Registry is a [registry.Registry] backed by a ZooKeeper ensemble. See the
// package documentation for its guarantees.
type Registry struct {
	cfg     Config
	servers string // for messages
	log     *slog.Logger
	conn    *zk.Conn
	events  <-chan zk.Event
	acl     []zk.ACL

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the registry started

	sessKick chan struct{} // 1-buffered: the session state may have changed
	connects atomic.Uint64 // number of StateHasSession events so far

	diagMu sync.Mutex
	dials  dialState // what is known of the connections to the servers (reach.go)

	// authed is set once the credentials were added to the session (at
	// once without credentials); there is no session for the registry's
	// work until then.
	authed atomic.Bool
	// startedDown: New returned without a session (and said so).
	startedDown bool

	netMu    sync.Mutex
	netConns map[*trackedConn]struct{} // open connections to the servers

	mu       sync.Mutex
	closed   bool
	sid      int64          // the current session, as seen by monitor
	past     map[int64]bool // earlier sessions of this registry
	entries  map[string]*entry
	watchers map[string]map[*watcher]struct{} // by providers node
	// ruleWatchers are the watches of rule documents (rules.go).
	ruleWatchers map[*ruleWatcher]struct{}
	cache        map[registry.ServiceKey][]registry.Instance

	discoverStale atomic.Bool // Discover served a cached list; for logging once
}

var (
	_ registry.Registry = (*Registry)(nil)

	// errNoSession is the transient error of an operation tried while the
	// client has no session.
	errNoSession = errors.New("zookeeper: not connected (no session)")
)

// New returns a registry that uses the ZooKeeper servers of c. It fails at
// once with a *registry.InputError if c is invalid, or with an error naming
// the servers if a server name does not resolve (the ZooKeeper client
// resolves the names once, here, and never again) or if a server answers in
// another protocol than ZooKeeper's; and, naming the servers, if ctx ends
// before it has a session.
//
// Servers that cannot be reached do not fail New: if every server refuses
// the connection (or does not answer within c.DialTimeout), or no session
// is established within c.DialTimeout, New logs one warning naming the
// servers and the cause and returns a registry that keeps connecting in
// the background. Its calls fail fast meanwhile (see Register), its
// watches wait for their first list, and everything works as soon as it
// has a session.
func New(ctx context.Context, c Config) (*Registry, error) {
	c, err := c.normalize()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		cfg:          c,
		servers:      strings.Join(c.Servers, ","),
		log:          c.Logger,
		acl:          nodeACL(c),
		ctx:          rctx,
		cancel:       cancel,
		dials:        dialState{last: make(map[string]error), changed: make(chan struct{})},
		sessKick:     make(chan struct{}, 1),
		netConns:     make(map[*trackedConn]struct{}),
		past:         make(map[int64]bool),
		entries:      make(map[string]*entry),
		watchers:     make(map[string]map[*watcher]struct{}),
		ruleWatchers: make(map[*ruleWatcher]struct{}),
		cache:        make(map[registry.ServiceKey][]registry.Instance),
	}
	r.authed.Store(c.Username == "")
	conn, events, err := zk.Connect(c.Servers, c.SessionTimeout,
		zk.WithLogger(zkLogger{r}),
		zk.WithLogInfo(false),
		zk.WithDialer(r.dial),
		zk.WithEventCallback(r.onEvent),
		zk.WithHostProvider(hostProvider{zk.NewDNSHostProvider(), r}),
	)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("zookeeper: connecting to %s: %w", r.servers, err)
	}
	r.conn, r.events = conn, events

	dctx, dcancel := context.WithTimeout(ctx, c.DialTimeout)
	defer dcancel()
	var down error
wait:
	for conn.State() != zk.StateHasSession {
		changed := r.dialChanged()
		if err := r.rejectedErr(); err != nil {
			r.shutdown()
			return nil, fmt.Errorf("zookeeper: no session with %s: %w", r.servers, err)
		}
		if down = r.reachErr(); down != nil {
			break
		}
		select {
		case <-r.sessKick:
		case <-changed:
		case <-dctx.Done():
			r.diagMu.Lock()
			last := r.dials.detail
			r.diagMu.Unlock()
			if last == "" {
				last = "no answer"
			}
			if ctx.Err() != nil {
				r.shutdown()
				return nil, fmt.Errorf("zookeeper: no session with %s (last error: %s): %w", r.servers, last, ctx.Err())
			}
			down = fmt.Errorf("no session within the dial timeout of %v (last error: %s)", c.DialTimeout, last)
			break wait
		}
	}
	if down == nil && c.Username != "" {
		if err := r.addAuth(dctx); err != nil {
			r.shutdown()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("zookeeper: adding the digest credentials of user %q at %s: %w", c.Username, r.servers, err)
		}
		r.authed.Store(true)
	}
	seen := r.connects.Load()
	if down != nil {
		r.startedDown = true
		r.log.Warn("zookeeper: cannot reach the servers; the registry keeps connecting in the background, and its calls fail until it has a session",
			"servers", r.servers, "error", down)
		seen = 0
	} else {
		r.sid = conn.SessionID()
		r.log.Debug("zookeeper: connected", "servers", r.servers, "session", hexID(r.sid), "base", c.BasePath)
	}
	r.wg.Add(1)
	go r.monitor(seen)
	return r, nil
}

func hexID(id int64) string { return fmt.Sprintf("0x%x", id) }

// String returns the registry's URL with the password redacted (see
// Config.String); it is what %v prints.
func (r *Registry) String() string { return r.cfg.String() }

// GoString is like String, so that %#v does not print the password either.
func (r *Registry) GoString() string {
	return "&zookeeper.Registry(" + strconv.Quote(r.cfg.String()) + ")"
}

// nodeACL is the ACL of the znodes the registry creates: with credentials,
// every permission for their digest identity and read permission for
// everyone (unless NoWorldRead); without, every permission for everyone.
func nodeACL(c Config) []zk.ACL {
	if c.Username == "" {
		return zk.WorldACL(zk.PermAll)
	}
	acl := zk.DigestACL(zk.PermAll, c.Username, c.Password)
	if !c.NoWorldRead {
		acl = append(acl, zk.WorldACL(zk.PermRead)...)
	}
	return acl
}

// addAuth adds the digest credentials to the session. The client
// remembers them once the server accepted them and sends them again first
// thing on every later connection, in the same session or a new one, before
// any queued request. (The digest scheme accepts any user and password: a
// wrong password is only found out when an ACL does not match it.)
func (r *Registry) addAuth(ctx context.Context) error {
	auth := []byte(r.cfg.Username + ":" + r.cfg.Password)
	for {
		done := make(chan error, 1)
		go func() { done <- r.conn.AddAuth("digest", auth) }()
		var err error
		select {
		case err = <-done:
		case <-ctx.Done():
			// shutdown closes the client, which ends AddAuth.
			return ctx.Err()
		}
		if err == nil || !connectionError(err) {
			return err
		}
		// The connection dropped before the answer: try again.
		t := time.NewTimer(r.cfg.minRetry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// explain adds what an error about permissions means to err.
func (r *Registry) explain(err error) error {
	if !errors.Is(err, zk.ErrNoAuth) {
		return err
	}
	who := "this client, which has no credentials,"
	if r.cfg.Username != "" {
		who = fmt.Sprintf("the digest identity of user %q", r.cfg.Username)
	}
	return fmt.Errorf("%w: the ACL of a znode under %s does not allow %s to do this "+
		"(ZooKeeper's digest scheme accepts any password; a wrong one only fails to match the ACL)", err, r.cfg.BasePath, who)
}

// closeConns closes every connection to the servers.
func (r *Registry) closeConns() {
	r.netMu.Lock()
	conns := make([]*trackedConn, 0, len(r.netConns))
	for c := range r.netConns {
		conns = append(conns, c)
	}
	r.netMu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// zkLogger sends the client library's log lines to the registry's logger at
// Debug level; the registry logs the state changes that matter itself.
type zkLogger struct{ r *Registry }

func (l zkLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(msg, "authentication failed") {
		l.r.diagMu.Lock()
		l.r.dials.detail = msg
		l.r.diagMu.Unlock()
	}
	l.r.log.Debug("zookeeper client: "+msg, "servers", l.r.servers)
}

// onEvent is the client's event callback. It runs on the client's
// goroutines and must not block: it only marks and signals.
func (r *Registry) onEvent(ev zk.Event) {
	if ev.Type == zk.EventSession {
		if ev.State == zk.StateHasSession {
			r.connects.Add(1)
		}
		signal(r.sessKick)
		return
	}
	if ev.Path == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[ev.Path]; e != nil {
		signal(e.kick)
	}
	for w := range r.watchers[ev.Path] {
		w.event(ev.Path)
	}
	if i := strings.LastIndexByte(ev.Path, '/'); i > 0 {
		for w := range r.watchers[ev.Path[:i]] {
			w.event(ev.Path)
		}
	}
}

// monitor follows the session: it logs losing and regaining the
// connection, remembers past sessions, and wakes the registrations and
// watches up when a new session (or a reconnection) needs them to act.
func (r *Registry) monitor(seen uint64) {
	defer r.wg.Done()
	up := !r.startedDown
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.sessKick:
		}
		state, sid := r.conn.State(), r.conn.SessionID()
		connects := r.connects.Load()
		nowUp := state == zk.StateHasSession && sid != 0
		if !nowUp {
			if up {
				r.log.Warn("zookeeper: lost the connection to the servers; keeping registrations and last known lists while reconnecting",
					"servers", r.servers, "session", hexID(sid), "state", state.String())
			}
			up = false
			continue
		}
		if !r.authed.Load() {
			// The first session of a registry that New returned
			// without one: add the credentials before anything else
			// uses it.
			if err := r.addAuth(r.ctx); err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.log.Warn("zookeeper: adding the digest credentials failed; retrying", "servers", r.servers, "user", r.cfg.Username, "error", err)
				signal(r.sessKick)
				if !ctxutil.Sleep(r.ctx, r.cfg.maxRetry) {
					return
				}
				continue
			}
			r.authed.Store(true)
		}
		r.mu.Lock()
		old := r.sid
		newSession := sid != old
		if newSession {
			if old != 0 {
				r.past[old] = true
			}
			r.sid = sid
		}
		entries := make([]*entry, 0, len(r.entries))
		for _, e := range r.entries {
			entries = append(entries, e)
		}
		var watchers []*watcher
		for _, ws := range r.watchers {
			for w := range ws {
				watchers = append(watchers, w)
			}
		}
		ruleWatchers := make([]*ruleWatcher, 0, len(r.ruleWatchers))
		for w := range r.ruleWatchers {
			ruleWatchers = append(ruleWatchers, w)
		}
		r.mu.Unlock()
		if newSession || connects != seen || !up {
			// Rule watches read their node again and re-arm their
			// watch: in a new session the old watches are gone, and
			// after a reconnection the client may not have re-armed
			// them.
			for _, w := range ruleWatchers {
				w.resync()
			}
		}
		switch {
		case newSession && old == 0:
			r.log.Info("zookeeper: connected; the registry works now", "servers", r.servers, "session", hexID(sid))
			for _, e := range entries {
				signal(e.kick)
			}
			for _, w := range watchers {
				w.resync()
			}
		case newSession:
			r.log.Warn("zookeeper: the session expired; recovering in a new session",
				"servers", r.servers, "old_session", hexID(old), "session", hexID(sid),
				"registrations", len(entries), "watches", len(watchers))
			for _, e := range entries {
				signal(e.kick)
			}
			for _, w := range watchers {
				w.resync()
			}
		case connects != seen || !up:
			r.log.Info("zookeeper: reconnected; the session survived", "servers", r.servers, "session", hexID(sid))
			// Ephemeral nodes and watches survive a reconnection;
			// retry what was failing and re-read the lists, in case the
			// client could not re-arm a watch.
			for _, e := range entries {
				if e.pending() {
					signal(e.kick)
				}
			}
			for _, w := range watchers {
				w.resync()
			}
		}
		seen, up = connects, true
	}
}

// session returns the current session ID, or errNoSession.
func (r *Registry) session() (int64, error) {
	sid := r.conn.SessionID()
	if r.conn.State() != zk.StateHasSession || sid == 0 || !r.authed.Load() {
		return 0, errNoSession
	}
	return sid, nil
}

func (r *Registry) isPast(sid int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.past[sid]
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// goTracked runs f on a goroutine that Close waits for. It reports false
// (and does not run f) if the registry is closed.
func (r *Registry) goTracked(f func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
	return true
}

// call runs fn, which talks to ZooKeeper and cannot be interrupted, on a
// tracked goroutine and returns its error, or ctx.Err() if ctx is done
// first, or ErrClosed if the registry is closed first. fn must not touch
// the caller's variables unless the call returned its error.
func (r *Registry) call(ctx context.Context, fn func() error) error {
	done := make(chan error, 1)
	if !r.goTracked(func() { done <- fn() }) {
		return registry.ErrClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return registry.ErrClosed
	}
}

// callContext bounds a call by the dial timeout if ctx has no deadline.
func (r *Registry) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.cfg.DialTimeout)
}

// permanent reports whether err will not go away by retrying the same
// operation.
func permanent(err error) bool {
	var ie *registry.InputError
	return errors.As(err, &ie) ||
		errors.Is(err, zk.ErrNoAuth) || errors.Is(err, zk.ErrAuthFailed) ||
		errors.Is(err, zk.ErrInvalidACL) || errors.Is(err, zk.ErrInvalidPath) ||
		errors.Is(err, zk.ErrBadArguments) || errors.Is(err, zk.ErrInvalidFlags) ||
		errors.Is(err, zk.ErrNoChildrenForEphemerals) ||
		errors.Is(err, registry.ErrRuleChanged)
}

// connectionError reports whether err only says that the servers are not
// reachable right now, which the monitor already logs.
func connectionError(err error) bool {
	return errors.Is(err, errNoSession) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrSessionExpired) ||
		errors.Is(err, zk.ErrClosing) || errors.Is(err, zk.ErrSessionMoved)
}

// lastKnown returns the list this registry last saw for key.
func (r *Registry) lastKnown(key registry.ServiceKey) ([]registry.Instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list, ok := r.cache[key]
	return list, ok
}

func (r *Registry) remember(key registry.ServiceKey, list []registry.Instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.cache[key] = list
	}
}

// Register announces in as an ephemeral znode of this registry's session
// and keeps it there, re-creating it in every new session, until Deregister
// or Close. Registering an ID again replaces its data, also when another
// session (an earlier run of the provider) still holds the node. If Register
// fails, the previous state is restored. It fails at once, changing
// nothing, if the registry has no session and no server accepts a
// connection.
func (r *Registry) Register(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.Validate()); err != nil {
		return err
	}
	data, err := encode(in)
	if err != nil {
		return err
	}
	if err := r.reachErr(); err != nil {
		// Nothing is asked of the keeper: a registration that failed
		// is not made later behind the caller's back.
		return fmt.Errorf("zookeeper: register %v instance %q at %s: %w", in.Key, in.ID, r.servers, err)
	}
	path := r.nodePath(in.Key, in.ID)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	e := r.entries[path]
	if e == nil {
		e = newEntry(r, path, in)
		r.entries[path] = e
		r.wg.Add(1)
		go e.run()
	}
	prev, gen := e.want(data, true)
	r.mu.Unlock()

	wctx, cancel := r.callContext(ctx)
	defer cancel()
	if err := e.wait(wctx, gen); err != nil {
		e.restore(gen, prev)
		if errors.Is(err, registry.ErrClosed) {
			return err
		}
		return fmt.Errorf("zookeeper: register %v instance %q at %s: %w", in.Key, in.ID, r.servers, r.explain(err))
	}
	return nil
}

// Deregister deletes the znode of in.Key and in.ID, whoever created it, and
// stops keeping it alive. Deleting an instance that does not exist is not an
// error. If the servers cannot be reached in time (at once if no server
// accepts a connection) it returns an error and keeps trying in the
// background until Close.
func (r *Registry) Deregister(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.ValidateRef()); err != nil {
		return err
	}
	path := r.nodePath(in.Key, in.ID)
	wctx, cancel := r.callContext(ctx)
	defer cancel()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	e := r.entries[path]
	var gen uint64
	if e != nil {
		_, gen = e.want(nil, true)
	}
	r.mu.Unlock()

	var err error
	if e != nil {
		err = e.wait(wctx, gen)
	} else {
		err = r.retry(wctx, func() error { return r.deleteNode(path) })
	}
	if err != nil {
		if errors.Is(err, registry.ErrClosed) {
			return err
		}
		return fmt.Errorf("zookeeper: deregister %v instance %q at %s: %w", in.Key, in.ID, r.servers, r.explain(err))
	}
	return nil
}

// retry calls op until it succeeds, fails permanently, or ctx is done, and
// returns the last error of op when ctx ends.
func (r *Registry) retry(ctx context.Context, op func() error) error {
	b := backoff{min: r.cfg.minRetry, max: r.cfg.maxRetry}
	var last error
	for {
		err := r.call(ctx, op)
		if err == nil || permanent(err) || errors.Is(err, registry.ErrClosed) {
			return err
		}
		if connectionError(err) {
			if rerr := r.reachErr(); rerr != nil {
				return rerr
			}
		}
		if ctx.Err() != nil {
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return err
		}
		last = err
		t := time.NewTimer(b.next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-r.ctx.Done():
			t.Stop()
			return registry.ErrClosed
		}
	}
}

// deleteNode deletes path, any version; a missing node is no error.
func (r *Registry) deleteNode(path string) error {
	if _, err := r.session(); err != nil {
		return err
	}
	err := r.conn.Delete(path, -1)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	return err
}

// staleGrace is how long Discover waits for unreachable servers before it
// serves the last known list of the key.
const staleGrace = time.Second

// Discover returns the instances of key, sorted by ID. If the servers
// cannot be reached and this registry has seen the key before (an earlier
// Discover or a watch), it returns that last known list after waiting up to
// a second (less if ctx expires earlier, not at all if no server accepts a
// connection) for them; otherwise it keeps trying until ctx is done (or the
// dial timeout passed, when ctx has no deadline), and fails at once if no
// server accepts a connection.
func (r *Registry) Discover(ctx context.Context, key registry.ServiceKey) ([]registry.Instance, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	wctx, cancel := r.callContext(ctx)
	defer cancel()
	_, haveCache := r.lastKnown(key)
	if haveCache {
		// Leave time to answer from the cache before ctx expires.
		grace := staleGrace
		if dl, ok := ctx.Deadline(); ok {
			grace = min(grace, time.Until(dl)*3/4)
		}
		wctx, cancel = context.WithTimeout(wctx, grace)
		defer cancel()
	}
	var list []registry.Instance
	err := r.retry(wctx, func() error {
		l, err := r.readList(key)
		if err == nil {
			list = l
		}
		return err
	})
	if err == nil {
		r.remember(key, list)
		if r.discoverStale.CompareAndSwap(true, false) {
			r.log.Info("zookeeper: Discover reads the servers again", "servers", r.servers)
		}
		return cloneList(list), nil
	}
	if errors.Is(err, registry.ErrClosed) || errors.Is(ctx.Err(), context.Canceled) {
		return nil, err
	}
	if permanent(err) {
		return nil, fmt.Errorf("zookeeper: discover %v at %s: %w", key, r.servers, r.explain(err))
	}
	if cached, ok := r.lastKnown(key); ok {
		if !r.discoverStale.Swap(true) {
			r.log.Warn("zookeeper: the servers cannot be reached; Discover returns the last known lists",
				"servers", r.servers, "key", key.String(), "error", err)
		}
		return cloneList(cached), nil
	}
	return nil, fmt.Errorf("zookeeper: discover %v at %s: %w", key, r.servers, err)
}

// readList reads the instances of key without setting watches.
func (r *Registry) readList(key registry.ServiceKey) ([]registry.Instance, error) {
	if _, err := r.session(); err != nil {
		return nil, err
	}
	dir := r.providersDir(key)
	names, _, err := r.conn.Children(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return []registry.Instance{}, nil
	}
	if err != nil {
		return nil, err
	}
	list := make([]registry.Instance, 0, len(names))
	for _, name := range names {
		data, _, err := r.conn.Get(dir + "/" + name)
		if errors.Is(err, zk.ErrNoNode) {
			continue // deregistered since the listing
		}
		if err != nil {
			return nil, err
		}
		in, err := decode(key, name, data)
		if err != nil {
			r.log.Debug("zookeeper: skipping a znode that is not a Storks instance", "path", dir+"/"+name, "error", err)
			continue
		}
		list = append(list, in)
	}
	sortByID(list)
	return list, nil
}

// Watch starts watching key. The first Next returns the current list as
// soon as it has been read (or, if the servers cannot be reached, the last
// list this registry saw for key).
func (r *Registry) Watch(ctx context.Context, key registry.ServiceKey) (registry.Watcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	w := newWatcher(r, ctx, key)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	ws := r.watchers[w.dir]
	if ws == nil {
		ws = make(map[*watcher]struct{})
		r.watchers[w.dir] = ws
	}
	ws[w] = struct{}{}
	r.wg.Add(1)
	go w.run()
	r.mu.Unlock()
	return w, nil
}

func (r *Registry) removeWatcher(w *watcher) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws := r.watchers[w.dir]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(r.watchers, w.dir)
		}
	}
}

// Close ends the session (the servers then delete this registry's
// instances), stops every goroutine of the registry and its client, and
// makes every method return ErrClosed. Closing twice returns ErrClosed.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	r.closed = true
	var watchers []*watcher
	for _, ws := range r.watchers {
		for w := range ws {
			watchers = append(watchers, w)
		}
	}
	ruleWatchers := make([]*ruleWatcher, 0, len(r.ruleWatchers))
	for w := range r.ruleWatchers {
		ruleWatchers = append(ruleWatchers, w)
	}
	r.mu.Unlock()
	for _, w := range watchers {
		w.End(registry.ErrClosed)
	}
	for _, w := range ruleWatchers {
		w.End(registry.ErrClosed)
	}
	r.shutdown()
	return nil
}

// shutdown stops the goroutines and the client and waits for them.
func (r *Registry) shutdown() {
	r.cancel()
	// Close sends closeSession (so the servers delete the ephemeral nodes at
	// once) and waits up to a second for the answer; then no connection is
	// needed any more.
	r.conn.Close()
	r.closeConns()
	// The client closes its event channel when its last goroutine is done.
	// Close connections it may still open meanwhile (it can dial another
	// server before it notices the Close).
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
drain:
	for {
		select {
		case _, ok := <-r.events:
			if !ok {
				break drain
			}
		case <-tick.C:
			r.closeConns()
		case <-deadline.C:
			r.log.Warn("zookeeper: the client did not stop within 10s", "servers", r.servers)
			break drain
		}
	}
	r.wg.Wait()
}

var _ registry.Lister = (*Registry)(nil)

// Services returns every service key with at least one instance node,
// sorted by service, version, then group ([registry.Lister]).
func (r *Registry) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	wctx, cancel := r.callContext(ctx)
	defer cancel()
	var keys []registry.ServiceKey
	err := r.retry(wctx, func() error {
		k, err := r.listServices()
		if err == nil {
			keys = k
		}
		return err
	})
	if err != nil {
		if errors.Is(err, registry.ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("zookeeper: listing the services at %s: %w", r.servers, r.explain(err))
	}
	return keys, nil
}

func (r *Registry) listServices() ([]registry.ServiceKey, error) {
	return r.listKeys(func(key registry.ServiceKey) (bool, error) {
		ok, stat, err := r.conn.Exists(r.providersDir(key))
		return ok && stat.NumChildren > 0, err
	})
}

// listKeys returns, sorted, the service keys of the children of the base
// node that keep says to keep.
func (r *Registry) listKeys(keep func(registry.ServiceKey) (bool, error)) ([]registry.ServiceKey, error) {
	if _, err := r.session(); err != nil {
		return nil, err
	}
	names, _, err := r.conn.Children(r.cfg.BasePath)
	if errors.Is(err, zk.ErrNoNode) {
		return []registry.ServiceKey{}, nil
	}
	if err != nil {
		return nil, err
	}
	keys := make([]registry.ServiceKey, 0, len(names))
	for _, name := range names {
		key, ok := parseKeyName(name)
		if !ok {
			continue
		}
		ok, err := keep(key)
		if err != nil {
			return nil, err
		}
		if ok {
			keys = append(keys, key)
		}
	}
	registry.SortKeys(keys)
	return keys, nil
}
