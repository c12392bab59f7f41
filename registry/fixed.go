package registry

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// NewStatic returns a registry that knows a fixed list of provider addresses,
// like a static:// URL: it is the programmatic form of
// Open(ctx, "static://"+strings.Join(addrs, ",")), without URL syntax to get
// right (IPv6 addresses need brackets all the same, as in "[::1]:8080").
//
// See [Open] for the behaviour of direct:// and static:// registries.
func NewStatic(addrs ...string) (Registry, error) {
	if len(addrs) == 0 {
		return nil, &InputError{Field: "address list", Reason: "is empty"}
	}
	list := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if err := ValidateAddr(a); err != nil {
			return nil, err
		}
		list = append(list, a)
	}
	return newFixed("static", "address", list, 0)
}

// openDirect opens direct://host:port[?weight=N].
func openDirect(_ context.Context, u *url.URL) (Registry, error) {
	if strings.Contains(u.Host, ",") {
		return nil, &InputError{Field: "URL host", Value: u.Host,
			Reason: "is a list; direct:// takes one host:port, use static:// for several"}
	}
	addr, err := parseHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	if err := checkNoPath(u); err != nil {
		return nil, err
	}
	q, err := queryParams(u, "weight")
	if err != nil {
		return nil, err
	}
	weight := 0
	if s, ok := q["weight"]; ok {
		w, err := strconv.Atoi(s)
		if err != nil || w < 0 {
			return nil, &InputError{Field: "URL query parameter weight", Value: s, Reason: "must be a non-negative integer"}
		}
		weight = w
	}
	return newFixed("direct", "URL host", []string{addr}, weight)
}

// openStatic opens static://h1:p1,h2:p2,...
func openStatic(_ context.Context, u *url.URL) (Registry, error) {
	if u.Host == "" {
		return nil, &InputError{Field: "URL host list", Reason: "is empty; want static://host1:port1,host2:port2"}
	}
	parts := strings.Split(u.Host, ",")
	addrs := make([]string, 0, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, &InputError{Field: "URL host list", Value: u.Host,
				Reason: "has an empty entry at position " + strconv.Itoa(i+1)}
		}
		a, err := parseHostPort(p)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	if err := checkNoPath(u); err != nil {
		return nil, err
	}
	if _, err := queryParams(u); err != nil {
		return nil, err
	}
	return newFixed("static", "URL host", addrs, 0)
}

// fixedRegistry serves direct:// and static:// URLs: a fixed list of
// addresses that is the provider list of every service key. It starts no
// goroutines.
type fixedRegistry struct {
	scheme    string
	addrs     []string // sorted, unique
	weight    int
	closeOnce sync.Once
	closed    chan struct{}
}

// newFixed sorts addrs and rejects duplicates, naming field in the error.
func newFixed(scheme, field string, addrs []string, weight int) (Registry, error) {
	addrs = slices.Clone(addrs)
	slices.Sort(addrs)
	for i := 1; i < len(addrs); i++ {
		if addrs[i] == addrs[i-1] {
			return nil, &InputError{Field: field, Value: addrs[i], Reason: "is listed more than once"}
		}
	}
	return &fixedRegistry{scheme: scheme, addrs: addrs, weight: weight, closed: make(chan struct{})}, nil
}

func (r *fixedRegistry) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// Register validates in and does nothing else: consumers of a fixed registry
// already know every provider address.
func (r *fixedRegistry) Register(ctx context.Context, in Instance) error {
	if r.isClosed() {
		return ErrClosed
	}
	if err := in.Validate(); err != nil {
		return err
	}
	return ctx.Err()
}

// Deregister validates in and does nothing else.
func (r *fixedRegistry) Deregister(ctx context.Context, in Instance) error {
	if r.isClosed() {
		return ErrClosed
	}
	if err := validateRef(in); err != nil {
		return err
	}
	return ctx.Err()
}

func (r *fixedRegistry) list(key ServiceKey) []Instance {
	list := make([]Instance, len(r.addrs))
	for i, a := range r.addrs {
		list[i] = Instance{Key: key, ID: a, Addr: a, Weight: r.weight}
	}
	return list
}

// Discover returns one instance per address, whatever the key.
func (r *fixedRegistry) Discover(ctx context.Context, key ServiceKey) ([]Instance, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.list(key), nil
}

// Watch returns a watcher whose first Next returns the same list as Discover
// and whose later calls block until the watch ends: the list never changes.
func (r *fixedRegistry) Watch(ctx context.Context, key ServiceKey) (Watcher, error) {
	if r.isClosed() {
		return nil, ErrClosed
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &fixedWatcher{r: r, key: key, ctx: ctx, stopped: make(chan struct{})}, nil
}

// Close makes every method and every watcher return ErrClosed. Closing a
// closed registry returns ErrClosed.
func (r *fixedRegistry) Close() error {
	err := ErrClosed
	r.closeOnce.Do(func() {
		close(r.closed)
		err = nil
	})
	return err
}

func (r *fixedRegistry) String() string {
	return r.scheme + "://" + strings.Join(r.addrs, ",")
}

type fixedWatcher struct {
	r        *fixedRegistry
	key      ServiceKey
	ctx      context.Context // the Watch context; the watch ends with it
	sent     bool            // the list was returned once
	stopOnce sync.Once
	stopped  chan struct{}
}

func (w *fixedWatcher) Next(ctx context.Context) ([]Instance, error) {
	select {
	case <-w.stopped:
		return nil, ErrClosed
	case <-w.r.closed:
		return nil, ErrClosed
	default:
	}
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !w.sent {
		w.sent = true
		return w.r.list(w.key), nil
	}
	select {
	case <-w.stopped:
		return nil, ErrClosed
	case <-w.r.closed:
		return nil, ErrClosed
	case <-w.ctx.Done():
		return nil, w.ctx.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (w *fixedWatcher) Stop() {
	w.stopOnce.Do(func() { close(w.stopped) })
}
