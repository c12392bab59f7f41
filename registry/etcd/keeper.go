package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/storks-rpc/storks/internal/ctxutil"
)

// errLeaseGone reports that the server no longer has the lease.
var errLeaseGone = errors.New("the lease is gone")

// keep is the keeper goroutine: it keeps the lease alive, grants a new one
// when it is lost, and puts back every registration the server lost, with
// capped, jittered backoff, for as long as the registry is open. It never
// gives up (compare kratos#3883 and rpcx#420, whose keepers return).
func (r *Registry) keep() {
	defer r.wg.Done()
	bo := r.newBackoff()
	for {
		if r.ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		lease, n := r.lease, len(r.regs)
		r.mu.Unlock()
		if lease == 0 {
			if n == 0 {
				// Nothing to keep: wait for a Register.
				select {
				case <-r.kick:
				case <-r.ctx.Done():
					return
				}
				continue
			}
			err := r.withOps(func(ctx context.Context) error {
				_, err := r.leaseLocked(ctx)
				return err
			})
			if err != nil {
				if r.ctx.Err() != nil {
					return
				}
				r.fail("granting a lease", err)
				if !ctxutil.Sleep(r.ctx, bo.next()) {
					return
				}
				continue
			}
			r.recovered()
			continue
		}
		start := time.Now()
		r.holdLease(lease)
		if time.Since(start) > r.cfg.TTL {
			// The lease lived a while: this is a new problem, not the
			// next failure of a streak.
			bo.reset()
		}
		// Never re-grant in a tight loop, even if leases are revoked as
		// fast as they are granted.
		if !ctxutil.Sleep(r.ctx, bo.next()) {
			return
		}
	}
}

// holdLease keeps lease alive and the registrations put under it, until the
// lease is lost or replaced, or the registry is closed.
func (r *Registry) holdLease(lease clientv3.LeaseID) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	// The channel closes when the lease expires or is revoked (a keepalive
	// answer with TTL <= 0), when no answer came for a whole TTL (the
	// server is unreachable: the lease is as good as expired), or when the
	// client closes. Each of these means: grant a new lease and put
	// everything again (see client/v3 lease.go).
	ka, err := r.cli.KeepAlive(ctx, lease)
	if err != nil {
		if r.ctx.Err() == nil {
			r.leaseLost(lease, "the client could not keep it alive: "+err.Error())
		}
		return
	}
	verify := time.NewTimer(jitter(r.verifyEvery()))
	defer verify.Stop()
	var retry <-chan time.Time
	syncBo := r.newBackoff()
	needSync := true
	for {
		if needSync {
			needSync = false
			err := r.syncRegs(lease)
			switch {
			case err == nil:
				syncBo.reset()
			case errors.Is(err, errLeaseGone):
				r.leaseLost(lease, "the server no longer knows it")
				return
			case r.ctx.Err() != nil:
				return
			default:
				r.fail("registering the instances again", err)
				retry = time.After(syncBo.next())
			}
		}
		select {
		case <-r.ctx.Done():
			return
		case _, ok := <-ka:
			if !ok {
				if r.ctx.Err() == nil {
					r.leaseLost(lease, "its keepalive stopped: it expired or was revoked, or the server was unreachable for a TTL")
				}
				return
			}
		case <-r.kick:
			if r.leaseID() != lease {
				return
			}
			needSync = true
		case <-retry:
			retry = nil
			needSync = true
		case <-verify.C:
			switch missing, err := r.verify(lease); {
			case errors.Is(err, errLeaseGone):
				r.leaseLost(lease, "the server no longer knows it")
				return
			case err != nil:
				if r.ctx.Err() != nil {
					return
				}
				r.fail("checking the lease", err)
			default:
				needSync = needSync || missing
			}
			verify.Reset(jitter(r.verifyEvery()))
		}
	}
}

// maxVerifyEvery bounds the interval of the check for deleted keys when the
// TTL is long.
const maxVerifyEvery = 30 * time.Second

// verifyEvery is how often the keeper checks that its keys are still there.
func (r *Registry) verifyEvery() time.Duration { return min(r.cfg.TTL, maxVerifyEvery) }

// syncRegs puts every registration that is not known to be under lease.
func (r *Registry) syncRegs(lease clientv3.LeaseID) error {
	r.mu.Lock()
	var todo []*registration
	for _, reg := range r.regs {
		if reg.lease != lease {
			todo = append(todo, reg)
		}
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	put := 0
	for _, reg := range todo {
		err := r.withOps(func(ctx context.Context) error {
			r.mu.Lock()
			// Deregistered, replaced or already done meanwhile?
			stale := r.regs[reg.key] != reg || reg.lease == lease || r.lease != lease
			r.mu.Unlock()
			if stale {
				return nil
			}
			if _, err := r.cli.Put(ctx, reg.key, reg.val, clientv3.WithLease(lease)); err != nil {
				return err
			}
			r.mu.Lock()
			reg.lease = lease
			r.mu.Unlock()
			put++
			return nil
		})
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return errLeaseGone
		}
		if err != nil {
			return fmt.Errorf("putting %s: %w", reg.key, err)
		}
	}
	r.recovered()
	if put > 0 {
		r.log.Info("etcd registry: instances registered again", "instances", put,
			"lease", fmt.Sprintf("%x", int64(lease)))
	}
	return nil
}

// verify asks the server which keys are attached to lease, and marks the
// registrations whose key is missing (deleted behind our back while the
// lease lives) for a put. It reports whether any was.
func (r *Registry) verify(lease clientv3.LeaseID) (bool, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.bgTimeout)
	defer cancel()
	resp, err := r.cli.TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || err == nil && resp.TTL <= 0 {
		return false, errLeaseGone
	}
	if err != nil {
		return false, err
	}
	r.recovered()
	attached := make(map[string]bool, len(resp.Keys))
	for _, k := range resp.Keys {
		attached[string(k)] = true
	}
	var missing []string
	r.mu.Lock()
	for _, reg := range r.regs {
		if reg.lease == lease && !attached[reg.key] {
			reg.lease = 0
			missing = append(missing, reg.key)
		}
	}
	r.mu.Unlock()
	if len(missing) > 0 {
		r.log.Warn("etcd registry: instance keys were deleted or replaced behind this client's back; putting them back",
			"keys", missing)
	}
	return len(missing) > 0, nil
}
