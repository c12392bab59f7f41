package consul

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/internal/ctxutil"
	"github.com/storks-rpc/storks/registry"
)

// Watch starts watching key with blocking queries on the agent's health
// endpoint (passing instances only). The watch never gives up: while the
// agent cannot be reached, Next keeps returning nothing new (the last list
// stays valid); the watch retries with capped, jittered backoff, logs once
// when it starts failing and once when it recovers, and delivers the
// resynchronised list if it differs (see Config.ResyncGrace). The first Next
// returns the list of the first successful query, normally at once.
func (r *Registry) Watch(ctx context.Context, key registry.ServiceKey) (registry.Watcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	w := &watcher{
		Feed: registry.NewFeed(ctx),
		r:    r,
		key:  key,
		name: ServiceName(key.Service),
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.OnEnd(w.cancel)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	r.watchers[w] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go w.run()
	return w, nil
}

// watcher implements registry.Watcher with a registry.Feed, to which its
// goroutine (run) publishes the list of every successful query. The first
// Next waits for the first list.
type watcher struct {
	*registry.Feed
	r      *Registry
	key    registry.ServiceKey
	name   string          // the Consul service name
	ctx    context.Context // ends the query loop: the Watch context, Stop or Close
	cancel context.CancelFunc

	queries atomic.Int64 // health queries made, for tests

	// Only run uses these.
	have bool // list holds the result of a successful query
	list []registry.Instance
}

// watchRetryCap is the longest pause between two failed queries of a watch.
func (r *Registry) watchRetryCap() time.Duration {
	return min(r.retryCap(), 2*time.Second)
}

// run is the watch's blocking-query loop (see blockingLoop). After an
// error or a reset of the index, the next list starts a resync grace
// (Config.ResyncGrace), and the queries end early to deliver the removals
// when the grace is over.
func (w *watcher) run() {
	r := w.r
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.watchers, w)
		r.mu.Unlock()
	}()
	var (
		entries    []*api.ServiceEntry
		resync     bool      // the next list starts a resync grace
		graceUntil time.Time // zero when not resyncing
	)
	l := blockingLoop{
		r: r, ctx: w.ctx, log: r.log.With("key", w.key.String(), "consul_service", w.name),
		name: "watch", kept: "list", again: "listing again",
		query: func(index uint64) (*api.QueryMeta, error) {
			wait := r.cfg.WaitTime
			if !graceUntil.IsZero() {
				// Wake up when the grace ends, to deliver the removals.
				wait = min(wait, max(time.Until(graceUntil), 10*time.Millisecond))
			}
			var meta *api.QueryMeta
			var err error
			entries, meta, err = w.query(index, wait)
			return meta, err
		},
		failed: func(err error) {
			w.Failing(fmt.Errorf("consul: watching %v at agent %s: %w", w.key, r.cfg.Address, err))
		},
		reset: func() { resync = true },
		apply: func(meta *api.QueryMeta) {
			r.noteACLFilter(w.name, meta)
			now := time.Now()
			if resync {
				resync = false
				if r.cfg.ResyncGrace > 0 {
					graceUntil = now.Add(r.cfg.ResyncGrace)
				}
			}
			w.publish(r.decode(entries, w.key), &graceUntil, now)
		},
	}
	l.run()
}

func (w *watcher) query(index uint64, wait time.Duration) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	w.queries.Add(1)
	// Consul adds up to wait/16 to the wait; past that, the connection is
	// presumed dead.
	ctx, cancel := context.WithTimeout(w.ctx, wait+wait/16+w.r.cfg.DialTimeout+5*time.Second)
	defer cancel()
	opts := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	return w.r.client.Health().Service(w.name, "", true, opts)
}

// publish makes fresh the watch's list and wakes Next if it changed. During
// a resync grace, instances missing from fresh are kept, until they are all
// back or the grace is over.
func (w *watcher) publish(fresh []registry.Instance, graceUntil *time.Time, now time.Time) {
	list := fresh
	if !graceUntil.IsZero() {
		if now.Before(*graceUntil) && w.have && !hasAllIDs(fresh, w.list) {
			list = merge(w.list, fresh)
		} else {
			*graceUntil = time.Time{}
		}
	}
	if w.have && sameList(list, w.list) {
		return
	}
	w.list, w.have = list, true
	w.Publish(list)
}

// hasAllIDs reports whether every ID of old is in list (both sorted by ID).
func hasAllIDs(list, old []registry.Instance) bool {
	for _, in := range old {
		if _, ok := slices.BinarySearchFunc(list, in.ID, func(e registry.Instance, id string) int {
			switch {
			case e.ID < id:
				return -1
			case e.ID > id:
				return 1
			}
			return 0
		}); !ok {
			return false
		}
	}
	return true
}

// merge returns fresh plus the instances of old whose ID is not in fresh,
// sorted by ID.
func merge(old, fresh []registry.Instance) []registry.Instance {
	byID := make(map[string]registry.Instance, len(old)+len(fresh))
	for _, in := range old {
		byID[in.ID] = in
	}
	for _, in := range fresh {
		byID[in.ID] = in
	}
	list := slices.Collect(maps.Values(byID))
	sortByID(list)
	return list
}

func sameInstance(a, b registry.Instance) bool {
	return a.Key == b.Key && a.ID == b.ID && a.Addr == b.Addr && a.Weight == b.Weight && maps.Equal(a.Metadata, b.Metadata)
}

func sameList(a, b []registry.Instance) bool { return slices.EqualFunc(a, b, sameInstance) }

// tokenBucket rate-limits a loop: burst calls to take go through at once,
// then one per interval.
type tokenBucket struct {
	burst    float64
	tokens   float64
	interval time.Duration
	last     time.Time
}

func (b *tokenBucket) refill(now time.Time) {
	b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.interval))
	b.last = now
}

// take waits for a token, or returns ctx's error.
func (b *tokenBucket) take(ctx context.Context) error {
	b.refill(time.Now())
	if b.tokens < 1 {
		if !ctxutil.Sleep(ctx, time.Duration((1-b.tokens)*float64(b.interval))) {
			return ctx.Err()
		}
		b.refill(time.Now())
	}
	b.tokens--
	return nil
}
