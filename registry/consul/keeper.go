package consul

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/registry"
)

// regEntry is an instance this client keeps registered, under its Consul
// service ID.
type regEntry struct {
	sid string
	// sem is held (a value in it) by whoever writes the service to the
	// agent: Register, Deregister and the keeper when it registers again.
	// It is a channel so that waiting for it can be canceled.
	sem chan struct{}

	// Guarded by sem.
	reg    *api.AgentServiceRegistration // what to register again
	key    registry.ServiceKey
	id     string
	dead   bool // removed from Registry.regs: callers must make a new entry
	active bool // the keeper runs
	cancel context.CancelFunc
	done   chan struct{} // closed when the keeper has returned
}

func (e *regEntry) lock(ctx context.Context) error {
	select {
	case e.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *regEntry) unlock() { <-e.sem }

// entry returns the entry of service ID sid, making it if needed.
func (r *Registry) entry(sid string) (*regEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, registry.ErrClosed
	}
	e := r.regs[sid]
	if e == nil {
		e = &regEntry{sid: sid, sem: make(chan struct{}, 1)}
		r.regs[sid] = e
	}
	return e, nil
}

// dropEntry marks e dead and forgets it. The caller holds e's lock.
func (r *Registry) dropEntry(e *regEntry) {
	e.dead = true
	r.mu.Lock()
	if r.regs[e.sid] == e {
		delete(r.regs, e.sid)
	}
	r.mu.Unlock()
}

// startKeeper starts the goroutine that keeps e registered. The caller
// holds e's lock.
func (r *Registry) startKeeper(e *regEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return registry.ErrClosed
	}
	ctx, cancel := context.WithCancel(r.ctx)
	e.cancel, e.done, e.active = cancel, make(chan struct{}), true
	r.wg.Add(1)
	go r.keep(ctx, e, r.log.With("service_id", e.sid, "key", e.key.String(), "instance", e.id))
	return nil
}

// stopKeeper stops e's keeper and waits for it to return. The caller holds
// e's lock; the keeper never waits for it without watching its context.
func (r *Registry) stopKeeper(e *regEntry) {
	if !e.active {
		return
	}
	e.cancel()
	<-e.done
	e.active = false
}

// keepTimeout bounds each request of a keeper.
func (r *Registry) keepTimeout() time.Duration {
	return min(max(r.cfg.TTL/2, 2*time.Second), 10*time.Second)
}

// retryCap is the longest pause between two attempts to register an
// instance again, so that an instance is back within TTL/3 (plus a
// request) of the agent answering again.
func (r *Registry) retryCap() time.Duration {
	return min(max(r.cfg.TTL/3, 200*time.Millisecond), 10*time.Second)
}

// keep passes e's TTL check every TTL/3. When that fails, whatever the
// reason (the agent restarted and lost the service, an operator removed
// it, the agent is unreachable), it registers the instance again, and
// keeps trying with capped, jittered backoff until that works, for as long
// as the registration lives. It logs once when it starts failing and once
// when it recovers.
func (r *Registry) keep(ctx context.Context, e *regEntry, log *slog.Logger) {
	defer r.wg.Done()
	defer close(e.done)
	interval := r.cfg.TTL / 3
	timer := time.NewTimer(interval)
	defer timer.Stop()
	failing := false
	attempt := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var passErr, err error
		if !failing {
			passErr = r.passTTL(ctx, e)
		}
		if failing || passErr != nil {
			err = r.registerAgain(ctx, e)
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			attempt++
			if !failing {
				failing = true
				log.Warn("consul registry: cannot keep the instance registered; retrying until it works",
					"error", err, "ttl_update_error", passErr)
			} else {
				log.Debug("consul registry: registering the instance again failed", "error", err, "attempt", attempt)
			}
			timer.Reset(backoff(attempt, r.retryCap()))
			continue
		case failing:
			log.Info("consul registry: the instance is registered again", "attempts", attempt)
			failing, attempt = false, 0
		case passErr != nil:
			log.Info("consul registry: registered again an instance the agent had lost", "ttl_update_error", passErr)
		}
		timer.Reset(interval)
	}
}

func (r *Registry) passTTL(ctx context.Context, e *regEntry) error {
	ctx, cancel := context.WithTimeout(ctx, r.keepTimeout())
	defer cancel()
	// The output is constant so that a pass changes nothing the agent
	// would sync to the catalog.
	return r.client.Agent().UpdateTTLOpts(ttlCheckID(e.sid), "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx))
}

func (r *Registry) registerAgain(ctx context.Context, e *regEntry) error {
	if err := e.lock(ctx); err != nil {
		return err
	}
	defer e.unlock()
	if e.dead || ctx.Err() != nil {
		return errors.New("deregistered")
	}
	ctx, cancel := context.WithTimeout(ctx, r.keepTimeout())
	defer cancel()
	return r.agentRegister(ctx, e.reg)
}

// backoff returns the pause before retry number attempt (1, 2, ...): 100ms
// doubling each time up to limit, with full jitter on its upper half.
func backoff(attempt int, limit time.Duration) time.Duration {
	d := limit
	if attempt < 30 {
		d = min(100*time.Millisecond<<(attempt-1), limit)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
