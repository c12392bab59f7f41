package etcd

import (
	"context"
	"errors"
	"net"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/storks-rpc/storks/registry"
)

// How the registry knows that no member can be reached, and says so at once
// instead of after a timeout: the gRPC client connects through dial, which
// records the result of every attempt to open a TCP connection to an
// endpoint. The client retries on its own, with a backoff capped at
// retryCap; a call made while it has no connection (connectErr) fails at
// once if the last attempt to connect to every endpoint failed, and waits
// otherwise. A refused connection fails in a few milliseconds, a host that
// drops the packets within the dial timeout. (gRPC's ResetConnectBackoff,
// which would make the client try again at once, iterates over its
// connections without holding its lock, a data race.)

// dialTracker records the last attempt to connect to each endpoint.
type dialTracker struct {
	mu      sync.Mutex
	seq     uint64                // number of attempts that ended
	last    map[string]dialResult // by endpoint
	changed chan struct{}         // closed and replaced when an attempt ends
}

type dialResult struct {
	seq uint64 // when it ended
	err error  // nil: connected
}

func newDialTracker() *dialTracker {
	return &dialTracker{last: make(map[string]dialResult), changed: make(chan struct{})}
}

func (d *dialTracker) record(addr string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	d.last[addr] = dialResult{seq: d.seq, err: err}
	close(d.changed)
	d.changed = make(chan struct{})
}

// now returns the number of attempts that ended so far and a channel that
// is closed when the next one ends.
func (d *dialTracker) now() (uint64, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seq, d.changed
}

// failedSince returns a *registry.UnreachableError if the last attempt to connect to
// every endpoint of eps ended after attempt number since and failed, and nil
// otherwise.
func (d *dialTracker) failedSince(since uint64, eps []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	errs := make([]error, 0, len(eps))
	for _, ep := range eps {
		res, ok := d.last[ep]
		if !ok || res.seq <= since || res.err == nil {
			return nil
		}
		errs = append(errs, res.err)
	}
	return &registry.UnreachableError{Errs: errs}
}

// dial is the gRPC client's dialer: a plain TCP connection (TLS is added by
// gRPC), whose result it records.
func (r *Registry) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil || !errors.Is(ctx.Err(), context.Canceled) {
		// An attempt that gRPC canceled (it changes balancers, or
		// closes) says nothing about the endpoint.
		r.dials.record(addr, err)
	}
	return conn, err
}

// connectErr returns nil as soon as the client has a connection that is
// ready, and a *registry.UnreachableError as soon as the last attempt to connect to
// every endpoint failed, or ctx's error if ctx ends first (a host that does
// not answer at all takes the dial timeout to fail; one that accepts the
// connection but does not speak gRPC, or TLS as configured, takes until ctx
// ends). Right after the server came back, it may fail until the client
// tried again (within retryCap).
func (r *Registry) connectErr(ctx context.Context) error {
	conn := r.cli.ActiveConnection()
	if conn.GetState() == connectivity.Ready {
		return nil
	}
	conn.Connect() // if it is idle
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	go func() {
		for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
			if !conn.WaitForStateChange(wctx, st) {
				return
			}
		}
		close(ready)
	}()
	for {
		_, changed := r.dials.now()
		if err := r.dials.failedSince(0, r.cfg.Endpoints); err != nil {
			return err
		}
		select {
		case <-ready:
			return nil
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// authenticateMethod is the gRPC method clientv3 gets its token with.
const authenticateMethod = "/etcdserverpb.Auth/Authenticate"

// deferToken is a unary interceptor of clients with credentials. clientv3.New
// authenticates before it returns, waiting up to the dial timeout for a
// member to answer. While New runs (r.booting) and once it decided that no
// endpoint can be reached (r.giveUp is closed), it ends that request and
// answers it as a server without authentication would: the client then
// starts without a token and gets one with its first request that a member
// answers, which the member refuses with "user name is empty" (clientv3
// authenticates and retries on that answer, as it does whenever its token is
// cleared). Every other request goes through untouched.
func (r *Registry) deferToken(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method != authenticateMethod || !r.booting.Load() {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-r.giveUp:
			cancel()
		case <-stop:
		}
	}()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil && isClosed(r.giveUp) {
		return rpctypes.ErrGRPCAuthNotEnabled
	}
	return err
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// isUnreachable reports whether err says that no endpoint could be
// connected to.
func isUnreachable(err error) bool {
	var ue *registry.UnreachableError
	return errors.As(err, &ue)
}
