package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
)

// ServiceKey identifies one exported service: its fully qualified proto
// service name (for example "helloworld.Greeter") plus an optional version and
// group. Consumers only ever see providers whose key matches exactly, so two
// versions or two groups of one service never receive each other's calls.
type ServiceKey struct {
	Service string
	Version string
	Group   string
}

// String renders the key as "group/service:version", leaving out the group
// and version when they are empty. It is the form used in errors and logs.
func (k ServiceKey) String() string {
	var b strings.Builder
	b.Grow(len(k.Group) + len(k.Service) + len(k.Version) + 2)
	if k.Group != "" {
		b.WriteString(k.Group)
		b.WriteByte('/')
	}
	b.WriteString(k.Service)
	if k.Version != "" {
		b.WriteByte(':')
		b.WriteString(k.Version)
	}
	return b.String()
}

// Validate reports whether the key can be registered or watched. The service
// name is required; version and group are optional but may not contain the
// characters that delimit keys in the backends ('/', ':' and whitespace).
func (k ServiceKey) Validate() error {
	if k.Service == "" {
		return &InputError{Field: "service", Reason: "must not be empty"}
	}
	if err := checkName("service", k.Service); err != nil {
		return err
	}
	if err := checkName("version", k.Version); err != nil {
		return err
	}
	return checkName("group", k.Group)
}

func checkName(field, v string) error {
	if len(v) > 255 {
		return &InputError{Field: field, Value: v, Reason: "is longer than 255 bytes"}
	}
	if i := strings.IndexAny(v, "/: \t\r\n"); i >= 0 {
		return &InputError{Field: field, Value: v, Reason: fmt.Sprintf("contains %q", v[i])}
	}
	return nil
}

// DefaultWeight is the weight the Storks runtime registers for an export
// that does not set one (runtime.WithWeight), and the weight registries
// give an entry stored without a weight (written before weight 0 meant
// zero, or by another tool).
const DefaultWeight = 100

// Metadata keys the Storks runtime sets on the instances it registers
// (keys that every registry accepts: letters, digits, '_' and '-').
const (
	// MetadataRegisteredAt is when the provider registered the instance,
	// in Unix milliseconds, for balancers that warm new providers up.
	MetadataRegisteredAt = "registered_at"
	// MetadataLoad is the provider's recently published load (see
	// runtime.WithLoadReport), for balancers and storks registry ls.
	MetadataLoad = "load"
)

// Instance is one provider of one service key. Instances are values: adapters
// copy them in and out, and callers may keep them. Metadata must not be
// modified after the instance has been handed to a registry.
type Instance struct {
	Key ServiceKey
	// ID is unique per process and export. Registering an instance with an ID
	// that is already registered replaces the old entry.
	ID string
	// Addr is the host:port consumers dial.
	Addr string
	// Weight is the relative share of traffic this instance should receive
	// from weighted balancers. Zero means no traffic, unless every instance
	// of the list has weight zero (then all share it equally). Registries
	// store zero as zero; an entry stored without any weight reads back as
	// DefaultWeight.
	Weight int
	// Metadata is free-form provider information (region, zone, build...).
	Metadata map[string]string
}

// Validate reports whether the instance can be registered: a valid key, a
// non-empty ID, a host:port address with a non-zero port and a non-negative
// weight.
func (in Instance) Validate() error {
	if err := in.ValidateRef(); err != nil {
		return err
	}
	if err := validateInstanceAddr(in); err != nil {
		return err
	}
	if in.Weight < 0 {
		return &InputError{Field: "weight", Value: strconv.Itoa(in.Weight), Reason: "must not be negative"}
	}
	return nil
}

// ValidateRef reports whether in identifies an instance, which is all that
// Deregister needs: a valid key and a non-empty ID. The address, weight and
// metadata are not checked.
func (in Instance) ValidateRef() error {
	if err := in.Key.Validate(); err != nil {
		return err
	}
	if in.ID == "" {
		return &InputError{Field: "instance ID", Reason: "must not be empty"}
	}
	return nil
}

// validateInstanceAddr checks in.Addr: a dialable address, except that a
// consumer record (see ConsumerKey), which listens nowhere, may give port 0.
func validateInstanceAddr(in Instance) error {
	if in.Key.IsConsumer() {
		if host, port, err := net.SplitHostPort(in.Addr); err == nil && port == "0" {
			return ValidateAddr(net.JoinHostPort(host, "1"))
		}
	}
	return ValidateAddr(in.Addr)
}

// ValidateAddr reports whether addr is a dialable host:port with a port in
// 1..65535.
func ValidateAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &InputError{Field: "address", Value: addr, Reason: "is not host:port"}
	}
	if host == "" {
		return &InputError{Field: "address", Value: addr, Reason: "has no host"}
	}
	if i := strings.IndexAny(host, "/ \t\r\n@?#"); i >= 0 {
		return &InputError{Field: "address", Value: addr, Reason: fmt.Sprintf("host contains %q", host[i])}
	}
	if _, ok := ParsePort(port); !ok {
		return &InputError{Field: "address", Value: addr, Reason: "port must be 1-65535"}
	}
	return nil
}

// EffectiveWeight returns the weight balancers use: Weight, or 0 if it is
// negative (which Validate rejects). Zero is a real weight, not "unset":
// an instance with weight 0 takes no traffic while another has a weight.
func (in Instance) EffectiveWeight() int {
	return max(in.Weight, 0)
}

// Clone returns a copy of the instance that shares no memory with it.
func (in Instance) Clone() Instance {
	in.Metadata = maps.Clone(in.Metadata)
	return in
}

// Registry is the contract between Storks and a service registry.
//
// All methods are safe for concurrent use. Every method that talks to a
// backend takes a context and returns when it is done; none blocks forever.
// After Close, every method returns ErrClosed.
type Registry interface {
	// Register announces the instance. Registering the same instance ID
	// again replaces the previous entry. Adapters with leases or sessions keep
	// the registration alive until Deregister or Close, re-creating it if the
	// backend loses it.
	Register(ctx context.Context, in Instance) error
	// Deregister removes the instance with in.Key and in.ID. Removing an
	// instance that is not registered is not an error.
	Deregister(ctx context.Context, in Instance) error
	// Discover returns the instances currently registered for key, sorted by
	// ID. An unknown key yields an empty list and no error.
	Discover(ctx context.Context, key ServiceKey) ([]Instance, error)
	// Watch starts watching key. The watch lives until Stop, Close or the
	// cancellation of ctx, whichever comes first.
	Watch(ctx context.Context, key ServiceKey) (Watcher, error)
	// Close deregisters nothing by itself, but stops every goroutine the
	// registry started and releases its connections.
	Close() error
}

// Watcher delivers the instance list of one service key as it changes.
//
// Next may be called from one goroutine at a time; Stop may be called from any
// goroutine, any number of times.
type Watcher interface {
	// Next blocks until the list differs from the one it last returned and
	// then returns the complete current list, sorted by ID. The first call
	// returns the current list at once (which may be empty). Changes that
	// happen between two calls are coalesced: only the latest list is
	// returned. Next returns ctx.Err() when ctx is done and ErrClosed after
	// Stop or after the registry is closed.
	Next(ctx context.Context) ([]Instance, error)
	// Stop ends the watch and releases its resources.
	Stop()
}

// ErrClosed is returned by a registry or watcher after it was closed.
var ErrClosed = errors.New("registry: closed")

// InputError reports a bad argument or configuration value, naming the field.
type InputError struct {
	Field  string
	Value  string
	Reason string
}

func (e *InputError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("registry: %s %q %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("registry: %s %s", e.Field, e.Reason)
}

// UnreachableError reports that no server of a registry accepted a
// connection; Errs holds the dial error of each address tried. Adapters
// return it (wrapped) from calls made while their server is unreachable, so
// that callers can tell an outage, which passes, from a rejection, which
// does not: errors.As(err, new(*UnreachableError)). Unwrap returns Errs, so
// errors.Is(err, syscall.ECONNREFUSED) works too.
type UnreachableError struct{ Errs []error }

func (e *UnreachableError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "cannot connect: " + strings.Join(msgs, "; ")
}

func (e *UnreachableError) Unwrap() []error { return e.Errs }

// Check is the preflight of every [Registry] method that takes a context.
// It returns, in this order: an [*InputError] naming "context" if ctx is
// nil, [ErrClosed] if closed (the registry was closed), validation if it is
// not nil (the result of validating the method's arguments, such as
// key.Validate()), and ctx.Err() otherwise. Adapters call it first, so that
// every registry reports a bad call the same way and none panics on a nil
// context.
func Check(ctx context.Context, closed bool, validation error) error {
	if ctx == nil {
		return &InputError{Field: "context", Reason: "is nil"}
	}
	if closed {
		return ErrClosed
	}
	if validation != nil {
		return validation
	}
	return ctx.Err()
}

// Lister is implemented by registries that can enumerate the service keys
// that have at least one registered instance. It is optional: consumers never
// need it, tools such as `storks registry ls` do. Fixed address lists
// (direct://, static://) do not implement it, since they hold no keys.
type Lister interface {
	// Services returns every service key with at least one instance,
	// sorted by service, version, then group.
	Services(ctx context.Context) ([]ServiceKey, error)
}

// SortKeys sorts keys by service, version, then group.
func SortKeys(keys []ServiceKey) {
	slices.SortFunc(keys, func(a, b ServiceKey) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Version, b.Version), cmp.Compare(a.Group, b.Group))
	})
}
