package zookeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/registry"
)

// watcher follows the providers node of one key with a goroutine (run) that
// keeps a child watch on the providers node (or an exists watch while it is
// missing) and a data watch on every instance node, each re-armed after it
// fired, and publishes the list to its registry.Feed, which implements
// registry.Watcher. The first Next waits for the first list.
//
// The client's event callback only records which paths changed (event) and
// wakes the goroutine, which re-reads exactly those, or everything after a
// reconnection or in a new session.
type watcher struct {
	*registry.Feed
	r    *Registry
	key  registry.ServiceKey
	dir  string
	kick chan struct{} // 1-buffered

	mu      sync.Mutex
	dirty   map[string]struct{} // paths with events since the last sync
	refresh bool                // re-read everything, without re-arming what is armed

	// Used by the run goroutine only.
	ready    bool                // a list was published
	list     []registry.Instance // the list published last
	dirArmed int64               // session of the armed watch on dir; 0: none
	kids     map[string]*kid
	failing  bool
}

// kid is one child of the providers node.
type kid struct {
	in    *registry.Instance // nil if the node is not a valid instance
	armed int64              // session of the armed data watch; 0: none
}

func newWatcher(r *Registry, ctx context.Context, key registry.ServiceKey) *watcher {
	w := &watcher{
		Feed:  registry.NewFeed(ctx),
		r:     r,
		key:   key,
		dir:   r.providersDir(key),
		kick:  make(chan struct{}, 1),
		dirty: make(map[string]struct{}),
		kids:  make(map[string]*kid),
	}
	w.kick <- struct{}{}
	return w
}

// event records a change of path; called from the client's callback.
func (w *watcher) event(path string) {
	w.mu.Lock()
	w.dirty[path] = struct{}{}
	w.mu.Unlock()
	signal(w.kick)
}

// resync asks for everything to be read again.
func (w *watcher) resync() {
	w.mu.Lock()
	w.refresh = true
	w.mu.Unlock()
	signal(w.kick)
}

func (w *watcher) run() {
	r := w.r
	defer r.wg.Done()
	defer r.removeWatcher(w)
	b := backoff{min: r.cfg.minRetry, max: r.cfg.maxRetry}
	var timer *time.Timer
	var retry <-chan time.Time
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-w.kick:
		case <-retry:
		case <-w.Done(): // Stop, Close or the end of the Watch context
			return
		case <-r.ctx.Done():
			w.End(registry.ErrClosed)
			return
		}
		if timer != nil {
			timer.Stop()
			timer, retry = nil, nil
		}
		w.mu.Lock()
		dirty, refresh := w.dirty, w.refresh
		w.dirty, w.refresh = make(map[string]struct{}), false
		w.mu.Unlock()

		err := w.sync(dirty, refresh)
		if err != nil {
			if r.ctx.Err() != nil {
				continue // the select ends the watch
			}
			// Keep what is left to do for the next attempt.
			w.mu.Lock()
			for p := range dirty {
				w.dirty[p] = struct{}{}
			}
			w.refresh = w.refresh || refresh
			w.mu.Unlock()
			w.failed(err)
			timer = time.NewTimer(b.next())
			retry = timer.C
			continue
		}
		b.reset()
		if w.failing {
			w.failing = false
			r.log.Debug("zookeeper: the watch reads the servers again", "servers", r.servers, "key", w.key.String())
		}
		list := make([]registry.Instance, 0, len(w.kids))
		for _, k := range w.kids {
			if k.in != nil {
				list = append(list, *k.in)
			}
		}
		sortByID(list)
		w.publish(list)
		r.remember(w.key, list)
	}
}

// failed logs the first failure of a series and, if the watch has no list
// yet, publishes the last list the registry saw for the key.
func (w *watcher) failed(err error) {
	r := w.r
	cause := err
	if connectionError(err) {
		if rerr := r.reachErr(); rerr != nil {
			cause = rerr
		}
	}
	w.Failing(fmt.Errorf("zookeeper: watching %v at %s: %w", w.key, r.servers, r.explain(cause)))
	if !w.failing {
		w.failing = true
		level := slog.LevelWarn
		if connectionError(err) {
			level = slog.LevelDebug // the monitor logs the connection state
		}
		r.log.Log(context.Background(), level, "zookeeper: the watch cannot read the servers; keeping the last known list and retrying",
			"servers", r.servers, "key", w.key.String(), "error", r.explain(err))
	}
	if !w.ready {
		if cached, ok := r.lastKnown(w.key); ok {
			w.publish(cached)
		}
	}
}

// publish hands list to the feed unless it is the list published last.
func (w *watcher) publish(list []registry.Instance) {
	if w.ready && sameList(list, w.list) {
		return
	}
	w.ready, w.list = true, list
	w.Publish(list)
}

// sync reads what changed (dirty), everything if refresh, and arms the
// watches that are not armed in the current session.
func (w *watcher) sync(dirty map[string]struct{}, refresh bool) error {
	r := w.r
	sid, err := r.session()
	if err != nil {
		return err
	}
	_, dirEvent := dirty[w.dir]
	if w.dirArmed != sid || dirEvent || refresh {
		names, err := w.listDir(sid, refresh && w.dirArmed == sid && !dirEvent)
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(names))
		for _, name := range names {
			seen[name] = true
			if w.kids[name] == nil {
				w.kids[name] = &kid{}
			}
		}
		for name := range w.kids {
			if !seen[name] {
				delete(w.kids, name)
			}
		}
	}
	for name, k := range w.kids {
		p := w.dir + "/" + name
		_, ev := dirty[p]
		armed := k.armed == sid && !ev
		if armed && !refresh {
			continue
		}
		var data []byte
		if armed {
			data, _, err = r.conn.Get(p)
		} else {
			k.armed = 0
			data, _, _, err = r.conn.GetW(p)
			if err == nil {
				k.armed = sid
			}
		}
		if errors.Is(err, zk.ErrNoNode) {
			// Deleted since the listing; the child watch fires too.
			delete(w.kids, name)
			continue
		}
		if err != nil {
			return err
		}
		in, err := decode(w.key, name, data)
		if err != nil {
			r.log.Debug("zookeeper: skipping a znode that is not a Storks instance", "path", p, "error", err)
			k.in = nil
			continue
		}
		k.in = &in
	}
	return nil
}

// listDir lists the providers node and leaves a child watch on it, or an
// exists watch if it does not exist (then the list is empty). With plain,
// the watch is known to be armed and is not set again.
func (w *watcher) listDir(sid int64, plain bool) ([]string, error) {
	r := w.r
	if plain {
		names, _, err := r.conn.Children(w.dir)
		if errors.Is(err, zk.ErrNoNode) {
			return nil, nil // the exists watch is armed
		}
		return names, err
	}
	w.dirArmed = 0
	for range 8 {
		names, _, _, err := r.conn.ChildrenW(w.dir)
		if err == nil {
			w.dirArmed = sid
			return names, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, err
		}
		ok, _, _, err := r.conn.ExistsW(w.dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			w.dirArmed = sid
			return nil, nil
		}
		// Created in between: list it.
	}
	return nil, errors.New("zookeeper: the providers node keeps appearing and disappearing")
}
