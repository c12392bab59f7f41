package etcd

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/storks-rpc/storks/registry"
)

// Watch lists the instances of key and then watches their prefix from the
// next revision. The first list is normally read before Watch returns
// (bounded by ctx and RequestTimeout), so the first Next returns it at once.
// If the cluster cannot be reached, Watch returns all the same and the
// watch lists the prefix as soon as it can: the first Next waits for that
// list, and if its context ends first it returns the context's error
// together with why there is no list. Watch fails only if the cluster
// rejects the read (credentials, permissions). From then on the watch never
// gives up: on any watch error, server-side cancellation, compaction or lost
// leader it keeps the last list, lists again with backoff and resumes
// watching from the new list's revision. It lives until Stop, Close or the
// end of ctx.
func (r *Registry) Watch(ctx context.Context, key registry.ServiceKey) (registry.Watcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	prefix := servicePrefix(r.cfg.BasePath, key)
	what := "watch " + key.String()
	w := &watcher{
		Feed:   registry.NewFeed(ctx),
		r:      r,
		key:    key,
		prefix: prefix,
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	err := r.connectErr(lctx)
	var resp *clientv3.GetResponse
	if err == nil {
		resp, err = r.cli.Get(lctx, prefix, clientv3.WithPrefix())
	}
	cancel()
	var rev int64
	switch {
	case err == nil:
		w.state = r.decodeAll(resp.Kvs, prefix, key)
		w.publish() // the first Next returns it at once
		rev = resp.Header.Revision
	case ctx.Err() != nil || r.isClosed() || authProblem(r.cfg, err) != "":
		w.End(registry.ErrClosed)
		return nil, r.opErr(what, err)
	default:
		// The run goroutine lists as soon as it can.
		w.Failing(r.opErr(what, err))
	}
	w.ctx, w.cancel = context.WithCancel(r.ctx)
	w.loop = &watchLoop{
		r: r, ctx: w.ctx, log: r.log.With("key", key.String()),
		key: prefix, opts: []clientv3.OpOption{clientv3.WithPrefix()},
		read:   w.relist,
		failed: func(err error) { w.Failing(r.opErr(what, err)) },
		apply:  w.apply,
		name:   "watch", reading: "listing for a watch", kept: "list",
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.cancel()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	r.watchers[w] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go w.loop.run(rev)
	w.OnEnd(w.unregister)
	return w, nil
}

// watcher implements registry.Watcher with a registry.Feed. Its goroutine
// (run) owns state and publishes each new list to the feed.
type watcher struct {
	*registry.Feed
	r      *Registry
	key    registry.ServiceKey
	prefix string

	ctx    context.Context // the goroutine's; canceled when the feed ends
	cancel context.CancelFunc
	loop   *watchLoop // the goroutine

	state map[string]registry.Instance // by etcd key; only the goroutine uses it
}

// unregister stops the goroutine and forgets the watch once it has ended.
func (w *watcher) unregister() {
	w.cancel()
	w.r.mu.Lock()
	delete(w.r.watchers, w)
	w.r.mu.Unlock()
}

// publish makes the current state the list Next returns.
func (w *watcher) publish() { w.Publish(sortedList(w.state)) }

// apply applies the events of a watch response to the state and publishes
// it if it changed.
func (w *watcher) apply(events []*clientv3.Event) {
	changed := false
	for _, ev := range events {
		k := string(ev.Kv.Key)
		if notInstanceKey(k, w.prefix) {
			continue // a rule key, under the prefix of a service called "rules"
		}
		if ev.Type == clientv3.EventTypePut {
			in, err := decode(k, ev.Kv.Value, w.prefix, w.key)
			if err == nil {
				w.state[k] = in
				changed = true
				continue
			}
			w.r.logBad(k, ev.Kv.ModRevision, err)
		}
		if _, had := w.state[k]; had {
			delete(w.state, k)
			changed = true
		}
	}
	if changed {
		w.publish()
	}
}

// relist reads the whole prefix again, publishes it and returns its
// revision.
func (w *watcher) relist(ctx context.Context) (int64, error) {
	if err := w.r.connectErr(ctx); err != nil {
		return 0, err
	}
	resp, err := w.r.cli.Get(ctx, w.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	w.state = w.r.decodeAll(resp.Kvs, w.prefix, w.key)
	w.publish()
	return resp.Header.Revision, nil
}

// errStaleToken marks a watch the server refused because the auth token of
// its stream expired.
var errStaleToken = errors.New("the auth token of the watch stream is no longer valid")

// staleToken reports whether err says that the token a request carried is
// no longer valid. The errors of canceled watches are made from the
// server's text, so the text is compared too.
func staleToken(err error) bool {
	if errors.Is(err, rpctypes.ErrInvalidAuthToken) || errors.Is(err, rpctypes.ErrAuthOldRevision) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, rpctypes.ErrInvalidAuthToken.Error()) || strings.Contains(msg, rpctypes.ErrAuthOldRevision.Error())
}
