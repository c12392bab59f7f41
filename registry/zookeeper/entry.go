package zookeeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/registry"
)

// entry is one registration: the state that Register and Deregister ask
// for (data, or nil for "removed"), and a keeper goroutine that makes the
// znode match it and keeps it so, as long as the entry is in r.entries.
//
// Every request gets a generation number; the keeper reports the last
// generation it applied, and the callers wait for theirs.
type entry struct {
	r    *Registry
	path string
	key  registry.ServiceKey
	id   string
	kick chan struct{} // 1-buffered: look at the znode again

	mu       sync.Mutex
	data     []byte // wanted znode data; nil: remove the znode
	gen      uint64 // generation of data
	takeover bool   // an explicit Register or Deregister: replace or delete a node of another session
	applied  uint64 // last generation applied
	failGen  uint64 // generation that failed for good, with failErr
	failErr  error
	lastErr  error         // last transient error, for error messages
	notify   chan struct{} // closed and replaced when the above change

	// Used by the keeper goroutine only.
	confirmed int64      // session in which the znode was last seen ours and up to date
	failing   bool       // a failure was logged and no success since
	failLevel slog.Level // the level it was logged at
}

func newEntry(r *Registry, path string, in registry.Instance) *entry {
	return &entry{
		r:      r,
		path:   path,
		key:    in.Key,
		id:     in.ID,
		kick:   make(chan struct{}, 1),
		notify: make(chan struct{}),
	}
}

// want asks for data (nil: removal) and returns the data asked for before
// and the new generation.
func (e *entry) want(data []byte, takeover bool) (prev []byte, gen uint64) {
	e.mu.Lock()
	prev = e.data
	e.data, e.takeover = data, takeover
	e.gen++
	gen = e.gen
	e.mu.Unlock()
	signal(e.kick)
	return prev, gen
}

// restore asks for prev again after the request of generation gen failed,
// unless a later request superseded it.
func (e *entry) restore(gen uint64, prev []byte) {
	e.mu.Lock()
	if e.gen == gen {
		e.data, e.takeover = prev, false
		e.gen++
	}
	e.mu.Unlock()
	signal(e.kick)
}

// pending reports whether the keeper has something left to do.
func (e *entry) pending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.applied < e.gen || e.lastErr != nil
}

// wait waits until generation gen (or a later one) was applied, it failed
// for good, the servers cannot be reached (see Registry.reachErr), ctx is
// done or the registry is closed.
func (e *entry) wait(ctx context.Context, gen uint64) error {
	for {
		e.mu.Lock()
		applied, failGen, failErr, ch := e.applied, e.failGen, e.failErr, e.notify
		e.mu.Unlock()
		dialed := e.r.dialChanged()
		switch {
		case applied >= gen:
			return nil
		case failGen == gen && failErr != nil:
			return failErr
		}
		if err := e.r.reachErr(); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-dialed:
		case <-ctx.Done():
			e.mu.Lock()
			last := e.lastErr
			e.mu.Unlock()
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-e.r.ctx.Done():
			return registry.ErrClosed
		}
	}
}

// broadcastLocked wakes the waiters up; e.mu must be held.
func (e *entry) broadcastLocked() {
	close(e.notify)
	e.notify = make(chan struct{})
}

// run is the keeper goroutine.
func (e *entry) run() {
	r := e.r
	defer r.wg.Done()
	b := backoff{min: r.cfg.minRetry, max: r.cfg.maxRetry}
	var timer *time.Timer
	var retry <-chan time.Time
	for {
		select {
		case <-e.kick:
		case <-retry:
		case <-r.ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		}
		if timer != nil {
			timer.Stop()
			timer, retry = nil, nil
		}
		e.mu.Lock()
		data, gen, takeover := e.data, e.gen, e.takeover
		e.mu.Unlock()
		var (
			err     error
			dropped bool
		)
		if data == nil {
			err = e.remove(takeover)
		} else {
			dropped, err = e.ensure(data, takeover)
		}
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			e.failed(gen, err)
			if data == nil && permanent(err) && e.abandon(gen) {
				// Retrying cannot help a removal the server refuses
				// (ACLs); the waiting Deregister gets the error.
				return
			}
			timer = time.NewTimer(b.next())
			retry = timer.C
			continue
		}
		b.reset()
		if e.finish(gen, dropped) {
			return
		}
	}
}

// failed records the error of an attempt at generation gen and logs it if
// it is the first of a series.
func (e *entry) failed(gen uint64, err error) {
	e.mu.Lock()
	e.lastErr = err
	if permanent(err) && gen == e.gen {
		e.failGen, e.failErr = gen, err
	}
	removing := e.data == nil
	e.broadcastLocked()
	e.mu.Unlock()
	if !e.failing {
		level := slog.LevelWarn
		if connectionError(err) {
			level = slog.LevelDebug // the monitor logs the connection state
		}
		e.failing, e.failLevel = true, level
		what := "keeping the instance registered fails; retrying"
		if removing {
			what = "deleting the instance fails; retrying"
		}
		e.r.log.Log(context.Background(), level, "zookeeper: "+what,
			"servers", e.r.servers, "key", e.key.String(), "id", e.id, "error", e.r.explain(err))
	}
}

// finish records that generation gen was applied. It reports true if the
// entry is done (removed, or dropped because someone else removed or took
// over the node) and the keeper must exit.
func (e *entry) finish(gen uint64, dropped bool) bool {
	r := e.r
	if e.failing {
		e.failing = false
		level := slog.LevelInfo
		if e.failLevel < slog.LevelWarn {
			level = slog.LevelDebug
		}
		r.log.Log(context.Background(), level, "zookeeper: the registration works again",
			"servers", r.servers, "key", e.key.String(), "id", e.id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen != gen {
		// A newer request came in meanwhile; apply it.
		signal(e.kick)
		return false
	}
	e.applied, e.lastErr, e.failErr, e.takeover = gen, nil, nil, false
	if dropped {
		e.data = nil
	}
	e.broadcastLocked()
	if e.data != nil {
		return false
	}
	if r.entries[e.path] == e {
		delete(r.entries, e.path)
	}
	return true
}

// abandon ends the entry after its removal of generation gen failed for
// good, unless a newer request came in. It reports whether it did.
func (e *entry) abandon(gen uint64) bool {
	r := e.r
	r.mu.Lock()
	defer r.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen != gen {
		return false
	}
	if r.entries[e.path] == e {
		delete(r.entries, e.path)
	}
	return true
}

// ensure makes the znode hold data and belong to the current session, and
// leaves a watch on it. It reports dropped if the node was deleted or taken
// over by another client while this session owned it: then the
// registration ends.
func (e *entry) ensure(data []byte, takeover bool) (dropped bool, err error) {
	r := e.r
	for range 8 {
		sid, err := r.session()
		if err != nil {
			return false, err
		}
		cur, stat, _, err := r.conn.GetW(e.path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			if e.confirmed == sid && !takeover {
				r.log.Warn("zookeeper: the instance was deleted by another client; no longer keeping it registered",
					"servers", r.servers, "key", e.key.String(), "id", e.id)
				return true, nil
			}
			if err := e.create(data); err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return false, err
			}
		case err != nil:
			return false, err
		case stat.EphemeralOwner == sid:
			if bytes.Equal(cur, data) {
				if e.confirmed != 0 && e.confirmed != sid {
					r.log.Debug("zookeeper: re-registered the instance in the new session",
						"key", e.key.String(), "id", e.id, "session", hexID(sid))
				}
				e.confirmed = sid
				return false, nil
			}
			if _, err := r.conn.Set(e.path, data, stat.Version); err != nil &&
				!errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) {
				return false, err
			}
		case takeover || stat.EphemeralOwner == 0 || r.isPast(stat.EphemeralOwner):
			r.log.Info("zookeeper: replacing the node of the instance left by another session",
				"key", e.key.String(), "id", e.id, "owner", hexID(stat.EphemeralOwner), "session", hexID(sid))
			if err := e.replace(data, stat.Version); err != nil {
				return false, err
			}
		default:
			r.log.Warn("zookeeper: another session registered the same instance ID; no longer keeping this registration",
				"servers", r.servers, "key", e.key.String(), "id", e.id, "owner", hexID(stat.EphemeralOwner))
			return true, nil
		}
	}
	return false, errors.New("zookeeper: the node of the instance keeps changing")
}

// remove deletes the znode. With force (an explicit Deregister) it deletes
// it whoever owns it; otherwise (undoing a failed Register) only if it
// belongs to this registry, so that it never deletes the registration of
// another provider with the same ID.
func (e *entry) remove(force bool) error {
	r := e.r
	if force {
		return r.deleteNode(e.path)
	}
	for range 8 {
		sid, err := r.session()
		if err != nil {
			return err
		}
		ok, stat, err := r.conn.Exists(e.path)
		if err != nil {
			return err
		}
		if !ok || stat.EphemeralOwner != sid && !r.isPast(stat.EphemeralOwner) {
			return nil
		}
		err = r.conn.Delete(e.path, stat.Version)
		if err == nil || errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if !errors.Is(err, zk.ErrBadVersion) {
			return err
		}
	}
	return errors.New("zookeeper: the node of the instance keeps changing")
}

// create creates the ephemeral znode, and its parents if they are missing.
func (e *entry) create(data []byte) error {
	r := e.r
	_, err := r.conn.Create(e.path, data, zk.FlagEphemeral, r.acl)
	if !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	for _, p := range r.parents(e.path[:strings.LastIndexByte(e.path, '/')]) {
		if _, err := r.conn.Create(p, nil, zk.FlagPersistent, r.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("creating %s: %w", p, err)
		}
	}
	_, err = r.conn.Create(e.path, data, zk.FlagEphemeral, r.acl)
	return err
}

// replace swaps the node of version for one of this session in a single
// transaction. Losing a race to another client is no error: ensure looks
// again.
func (e *entry) replace(data []byte, version int32) error {
	r := e.r
	_, err := r.conn.Multi(
		&zk.DeleteRequest{Path: e.path, Version: version},
		&zk.CreateRequest{Path: e.path, Data: data, Acl: r.acl, Flags: zk.FlagEphemeral},
	)
	if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) {
		return nil
	}
	return err
}
