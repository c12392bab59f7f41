package consul

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

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
	if r.isClosed() {
		return nil, registry.ErrClosed
	}
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := &watcher{
		r:        r,
		key:      key,
		name:     ServiceName(key.Service),
		watchCtx: ctx,
		notify:   make(chan struct{}, 1),
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.cancel()
		return nil, registry.ErrClosed
	}
	r.watchers[w] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go w.run()
	return w, nil
}

type watcher struct {
	r        *Registry
	key      registry.ServiceKey
	name     string          // the Consul service name
	watchCtx context.Context // the caller's; the watch ends with it
	ctx      context.Context // ends the watch: watchCtx, Stop or Close
	cancel   context.CancelFunc
	notify   chan struct{} // 1-buffered; a value means "the list changed"

	queries atomic.Int64 // health queries made, for tests

	mu   sync.Mutex
	err  error // why the watch was stopped
	have bool  // list holds the result of a successful query
	list []registry.Instance

	// Only used by Next, which is never called concurrently.
	started bool
	last    []registry.Instance
}

func (w *watcher) stop(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.cancel()
}

// Stop ends the watch; Next then returns registry.ErrClosed.
func (w *watcher) Stop() { w.stop(registry.ErrClosed) }

// endErr is the error Next returns once the watch has ended.
func (w *watcher) endErr() error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err == nil {
		err = w.watchCtx.Err()
	}
	if err == nil {
		err = registry.ErrClosed
	}
	return err
}

// Next returns the first list at once (as soon as the first query has
// answered), then blocks until the list differs from the last one it
// returned.
func (w *watcher) Next(ctx context.Context) ([]registry.Instance, error) {
	for {
		if w.ctx.Err() != nil {
			return nil, w.endErr()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w.mu.Lock()
		have, list := w.have, w.list
		w.mu.Unlock()
		if have && (!w.started || !sameList(list, w.last)) {
			w.started = true
			w.last = list // never modified: publish replaces the slice
			return cloneList(list), nil
		}
		select {
		case <-w.ctx.Done():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.notify:
		}
	}
}

// watchRetryCap is the longest pause between two failed queries of a watch.
func (r *Registry) watchRetryCap() time.Duration {
	return min(r.retryCap(), 2*time.Second)
}

// run is the blocking query loop. It follows the rules of Consul's
// "Blocking Queries" documentation: the index is reset to 0 when it goes
// backwards (and after an error, since the agent may have restarted with a
// new, smaller index), an index below 1 is replaced by 1 so that the next
// query does block, and the loop is rate-limited by a token bucket with a
// burst of 2.
func (w *watcher) run() {
	r := w.r
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.watchers, w)
		r.mu.Unlock()
	}()
	log := r.log.With("key", w.key.String(), "consul_service", w.name)
	bucket := tokenBucket{burst: 2, tokens: 2, interval: r.cfg.QueryInterval, last: time.Now()}
	var (
		index      uint64
		failing    bool
		attempt    int
		resync     bool      // the next list starts a resync grace
		graceUntil time.Time // zero when not resyncing
	)
	for {
		if bucket.take(w.ctx) != nil {
			return
		}
		wait := r.cfg.WaitTime
		if !graceUntil.IsZero() {
			// Wake up when the grace ends, to deliver the removals.
			wait = min(wait, max(time.Until(graceUntil), 10*time.Millisecond))
		}
		entries, meta, err := w.query(index, wait)
		if w.ctx.Err() != nil {
			return
		}
		if err != nil {
			attempt++
			if !failing {
				failing = true
				log.Warn("consul registry: watch query failed; keeping the last list and retrying until it works", "error", err)
			} else {
				log.Debug("consul registry: watch query failed again", "error", err, "attempt", attempt)
			}
			index, resync = 0, true
			if sleep(w.ctx, backoff(attempt, r.watchRetryCap())) != nil {
				return
			}
			continue
		}
		if failing {
			log.Info("consul registry: watch resumed", "failed_queries", attempt)
			failing, attempt = false, 0
		}
		if meta.LastIndex < index {
			log.Debug("consul registry: the Consul index went backwards; listing again", "from", index, "to", meta.LastIndex)
			index, resync = 0, true
			continue
		}
		r.noteACLFilter(w.name, meta)
		index = max(meta.LastIndex, 1)
		now := time.Now()
		if resync {
			resync = false
			if r.cfg.ResyncGrace > 0 {
				graceUntil = now.Add(r.cfg.ResyncGrace)
			}
		}
		w.publish(r.decode(entries, w.key), &graceUntil, now)
	}
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
	w.mu.Lock()
	defer w.mu.Unlock()
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
	select {
	case w.notify <- struct{}{}:
	default: // already notified
	}
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

// cloneList deep-copies list; the result is never nil.
func cloneList(list []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(list))
	for i, in := range list {
		out[i] = in.Clone()
	}
	return out
}

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
		if err := sleep(ctx, time.Duration((1-b.tokens)*float64(b.interval))); err != nil {
			return err
		}
		b.refill(time.Now())
	}
	b.tokens--
	return nil
}

// sleep waits for d or returns ctx's error.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
