package registry

import (
	"context"
	"net/url"
	"sync"
)

// Inproc is a handle onto an in-memory registry. It implements [Registry]
// for providers and consumers that live in the same process, and for tests.
//
// Several handles can share one registry: those returned by [Default] and by
// Open("inproc://") share the process-wide registry, those opened from the
// same "inproc://name" URL share the registry called name, and
// [Inproc.Handle] adds a handle to the registry of an existing one. Every
// handle sees everything registered through any handle of its registry.
//
// Close affects only the handle it is called on: the handle then returns
// ErrClosed from every method and its watchers stop, but nothing is
// deregistered and the other handles keep working. As with every Registry,
// providers should Deregister before they go away. The registries behind
// Default and inproc://name live as long as the process.
//
// Instances are deep-copied on the way in and on the way out. Writers never
// wait for watchers: a change marks the watchers of its key as dirty, and
// each watcher reads the latest list when its Next is called, so a slow
// watcher sees changes coalesced. An Inproc starts no goroutines.
//
// The zero Inproc is not usable; make one with NewInproc, Default or Open.
type Inproc struct {
	st       *inprocState
	done     chan struct{} // closed by Close
	mu       sync.Mutex
	closed   bool
	watchers map[*inprocWatcher]struct{}
	// ruleFeeds are the rule watches of this handle (inproc_rules.go).
	ruleFeeds map[*DocFeed]struct{}
}

// NewInproc returns a handle onto a new, private in-memory registry. More
// handles onto it are made with [Inproc.Handle].
func NewInproc() *Inproc {
	return newInprocHandle(newInprocState())
}

// Default returns a new handle onto the process-wide in-memory registry, the
// one that Open(ctx, "inproc://") also opens. Each call returns a separate
// handle, so closing one does not affect the others.
func Default() *Inproc {
	return newInprocHandle(namedState(""))
}

// Handle returns a new handle onto the registry r is a handle of. It may be
// called on a closed handle; the new handle is open.
func (r *Inproc) Handle() *Inproc {
	return newInprocHandle(r.st)
}

// openInproc opens inproc:// and inproc://name.
func openInproc(_ context.Context, u *url.URL) (Registry, error) {
	if !validInprocName(u.Host) {
		return nil, &InputError{Field: "URL host", Value: u.Host,
			Reason: "is not a valid inproc registry name (letters, digits, '-', '_' and '.')"}
	}
	if err := checkNoPath(u); err != nil {
		return nil, err
	}
	if _, err := queryParams(u); err != nil {
		return nil, err
	}
	return newInprocHandle(namedState(u.Host)), nil
}

func validInprocName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

var (
	namedMu     sync.Mutex
	namedStates = map[string]*inprocState{}
)

// namedState returns the process-wide registry called name, creating it on
// first use; "" is the default one.
func namedState(name string) *inprocState {
	namedMu.Lock()
	defer namedMu.Unlock()
	st := namedStates[name]
	if st == nil {
		st = newInprocState()
		namedStates[name] = st
	}
	return st
}

func newInprocHandle(st *inprocState) *Inproc {
	return &Inproc{st: st, done: make(chan struct{}), watchers: make(map[*inprocWatcher]struct{})}
}

// inprocState is the registry shared by the handles.
type inprocState struct {
	mu       sync.Mutex
	services map[ServiceKey]map[string]Instance
	watchers map[ServiceKey]map[*inprocWatcher]struct{}
	// rules are the rule documents (inproc_rules.go).
	rules        map[ServiceKey][]byte
	ruleRevs     map[ServiceKey]int64 // the revision of each document (RuleRevisions)
	ruleRev      int64                // the last revision given
	ruleWatchers map[ServiceKey]map[*DocFeed]struct{}
}

func newInprocState() *inprocState {
	return &inprocState{
		services:     make(map[ServiceKey]map[string]Instance),
		watchers:     make(map[ServiceKey]map[*inprocWatcher]struct{}),
		rules:        make(map[ServiceKey][]byte),
		ruleRevs:     make(map[ServiceKey]int64),
		ruleWatchers: make(map[ServiceKey]map[*DocFeed]struct{}),
	}
}

// notifyLocked marks every watcher of key as dirty without blocking.
func (st *inprocState) notifyLocked(key ServiceKey) {
	for w := range st.watchers[key] {
		w.changed()
	}
}

// list returns the instances of key, sorted by ID. They share their
// metadata maps with the registry, which never modifies them.
func (st *inprocState) list(key ServiceKey) []Instance {
	st.mu.Lock()
	m := st.services[key]
	list := make([]Instance, 0, len(m))
	for _, in := range m {
		list = append(list, in)
	}
	st.mu.Unlock()
	sortByID(list)
	return list
}

func (r *Inproc) isClosed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Register adds in to the registry, replacing the instance with the same key
// and ID if there is one.
func (r *Inproc) Register(ctx context.Context, in Instance) error {
	if err := Check(ctx, r.isClosed(), in.Validate()); err != nil {
		return err
	}
	in = in.Clone()
	st := r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.services[in.Key]
	if m == nil {
		m = make(map[string]Instance)
		st.services[in.Key] = m
	}
	old, had := m[in.ID]
	m[in.ID] = in
	if !had || !sameInstance(old, in) {
		st.notifyLocked(in.Key)
	}
	return nil
}

// Deregister removes the instance with in.Key and in.ID; the other fields of
// in are ignored.
func (r *Inproc) Deregister(ctx context.Context, in Instance) error {
	if err := Check(ctx, r.isClosed(), in.ValidateRef()); err != nil {
		return err
	}
	st := r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	m := st.services[in.Key]
	if _, ok := m[in.ID]; !ok {
		return nil
	}
	delete(m, in.ID)
	if len(m) == 0 {
		delete(st.services, in.Key)
	}
	st.notifyLocked(in.Key)
	return nil
}

// Discover returns the instances registered for key, sorted by ID.
func (r *Inproc) Discover(ctx context.Context, key ServiceKey) ([]Instance, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	return cloneList(r.st.list(key)), nil
}

// Services lists the keys with at least one instance; see [Lister].
func (r *Inproc) Services(ctx context.Context) ([]ServiceKey, error) {
	if err := Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	r.st.mu.Lock()
	keys := make([]ServiceKey, 0, len(r.st.services))
	for k, m := range r.st.services {
		if len(m) > 0 {
			keys = append(keys, k)
		}
	}
	r.st.mu.Unlock()
	SortKeys(keys)
	return keys, nil
}

// Watch starts watching key; see [Watcher]. When ctx is done, Next returns
// ctx.Err() from then on.
func (r *Inproc) Watch(ctx context.Context, key ServiceKey) (Watcher, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	st := r.st
	w := &inprocWatcher{Feed: newPullFeed(ctx, func() []Instance { return st.list(key) }), h: r, key: key}
	// Adding w to both sets under r.mu means Close either sees w or has
	// already refused it.
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(ErrClosed)
		return nil, ErrClosed
	}
	r.watchers[w] = struct{}{}
	r.st.mu.Lock()
	ws := r.st.watchers[key]
	if ws == nil {
		ws = make(map[*inprocWatcher]struct{})
		r.st.watchers[key] = ws
	}
	ws[w] = struct{}{}
	r.st.mu.Unlock()
	r.mu.Unlock()
	w.OnEnd(w.unregister)
	return w, nil
}

// Close closes this handle: from now on its methods return ErrClosed and its
// watchers are stopped. The registry itself, the instances registered through
// this handle and the other handles are not affected. Closing a closed handle
// returns ErrClosed.
func (r *Inproc) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	close(r.done)
	ws := r.watchers
	r.watchers = nil
	rfs := r.ruleFeeds
	r.ruleFeeds = nil
	r.mu.Unlock()
	for w := range ws {
		w.End(ErrClosed)
	}
	for f := range rfs {
		f.End(ErrClosed)
	}
	return nil
}

// inprocWatcher is a pull Feed, which the writers of its key mark as changed.
type inprocWatcher struct {
	*Feed
	h   *Inproc
	key ServiceKey
}

// unregister removes w from the sets of its handle and registry once the
// watch has ended, so that it is not notified any more.
func (w *inprocWatcher) unregister() {
	h, st := w.h, w.h.st
	h.mu.Lock()
	delete(h.watchers, w)
	h.mu.Unlock()
	st.mu.Lock()
	if ws := st.watchers[w.key]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(st.watchers, w.key)
		}
	}
	st.mu.Unlock()
}
