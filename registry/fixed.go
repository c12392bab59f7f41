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
	return newFixed("static", "address", list, DefaultWeight)
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
	weight := DefaultWeight
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
	return newFixed("static", "URL host", addrs, DefaultWeight)
}

// fixedRegistry serves direct:// and static:// URLs: a fixed list of
// addresses that is the provider list of every service key. It starts no
// goroutines.
type fixedRegistry struct {
	scheme string
	addrs  []string // sorted, unique
	weight int

	mu       sync.Mutex
	closed   bool
	watchers map[*Feed]struct{} // ended by Close
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
	return &fixedRegistry{scheme: scheme, addrs: addrs, weight: weight, watchers: make(map[*Feed]struct{})}, nil
}

func (r *fixedRegistry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Register validates in and does nothing else: consumers of a fixed registry
// already know every provider address.
func (r *fixedRegistry) Register(ctx context.Context, in Instance) error {
	return Check(ctx, r.isClosed(), in.Validate())
}

// Deregister validates in and does nothing else.
func (r *fixedRegistry) Deregister(ctx context.Context, in Instance) error {
	return Check(ctx, r.isClosed(), in.ValidateRef())
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
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	return r.list(key), nil
}

// Watch returns a watcher whose first Next returns the same list as Discover
// and whose later calls block until the watch ends: the list never changes.
func (r *fixedRegistry) Watch(ctx context.Context, key ServiceKey) (Watcher, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	f := NewFeed(ctx)
	f.Publish(r.list(key))
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		f.End(ErrClosed)
		return nil, ErrClosed
	}
	r.watchers[f] = struct{}{}
	r.mu.Unlock()
	f.OnEnd(func() {
		r.mu.Lock()
		delete(r.watchers, f)
		r.mu.Unlock()
	})
	return f, nil
}

// Close makes every method and every watcher return ErrClosed. Closing a
// closed registry returns ErrClosed.
func (r *fixedRegistry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	r.closed = true
	ws := r.watchers
	r.watchers = nil
	r.mu.Unlock()
	for f := range ws {
		f.End(ErrClosed)
	}
	return nil
}

func (r *fixedRegistry) String() string {
	return r.scheme + "://" + strings.Join(r.addrs, ",")
}
