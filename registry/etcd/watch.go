package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/storks-rpc/storks/internal/ctxutil"
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
	go w.run(rev)
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

	relists atomic.Int64 // how many times the watch listed again (for tests)

	state map[string]registry.Instance // by etcd key; only run uses it
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

// run watches from rev+1 and, whenever the watch breaks, lists again and
// watches from the new revision, until the watch ends. With rev 0 (Watch
// could not list) it lists first.
func (w *watcher) run(rev int64) {
	defer w.r.wg.Done()
	log := w.r.log.With("key", w.key.String())
	bo := w.r.newBackoff()
	failing := false
	var tokenRetry time.Time // when the watch was last retried at once after errStaleToken
	for {
		if rev == 0 {
			for {
				newRev, err := w.relist()
				if err == nil {
					rev = newRev
					break
				}
				if w.ctx.Err() != nil {
					return
				}
				w.Failing(w.r.opErr("watch "+w.key.String(), err))
				if !failing {
					log.Warn("etcd registry: listing for a watch failed; keeping the last list and retrying with backoff", "error", err)
					failing = true
				} else {
					log.Debug("etcd registry: listing for a watch failed again", "error", err)
				}
				if !ctxutil.Sleep(w.ctx, bo.next()) {
					return
				}
			}
			w.relists.Add(1)
			if failing {
				log.Info("etcd registry: watch resumed")
				failing = false
			}
		}
		start := time.Now()
		err := w.watchFrom(rev + 1)
		if w.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errStaleToken) && time.Since(tokenRetry) > w.r.retryCap {
			// Nothing was missed: the watch was refused when it was
			// created. Retry at once, on a new stream with a new token.
			tokenRetry = time.Now()
			log.Debug("etcd registry: the auth token of the watch stream expired; watching on a new stream", "error", err)
			continue
		}
		if time.Since(start) > w.r.retryCap {
			bo.reset()
		}
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			log.Info("etcd registry: watch fell behind a compaction; listing again", "error", err)
		default:
			log.Warn("etcd registry: watch interrupted; keeping the last list and listing again with backoff", "error", err)
			failing = true
		}
		if !ctxutil.Sleep(w.ctx, bo.next()) {
			return
		}
		rev = 0
	}
}

// watchFrom watches the prefix from rev and applies the events to the
// state until the watch breaks, and says why.
func (w *watcher) watchFrom(rev int64) error {
	// WithRequireLeader: a member cut off from the leader cancels the watch
	// (ErrNoLeader) instead of leaving it silently stale.
	ctx := clientv3.WithRequireLeader(w.ctx)
	// The client multiplexes the watches of equal contexts (metadata) on
	// one gRPC stream, which keeps the auth token it was opened with: once
	// that token has expired, the server refuses every new watch on the
	// stream, forever. After such a refusal, watch on a new stream (the
	// client authenticates again when it opens one).
	stream := w.r.watchStream.Load()
	if stream > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, "storks-watch-stream", strconv.FormatInt(stream, 10))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := w.r.cli.Watch(ctx, w.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w (compacted up to revision %d, watching from %d)", rpctypes.ErrCompacted, resp.CompactRevision, rev)
		}
		if err := resp.Err(); err != nil {
			if staleToken(err) {
				w.r.watchStream.CompareAndSwap(stream, stream+1)
				return fmt.Errorf("%w: %w", errStaleToken, err)
			}
			return err
		}
		if resp.Canceled {
			return errors.New("the server canceled the watch")
		}
		changed := false
		for _, ev := range resp.Events {
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
	return errors.New("the watch channel closed")
}

// relist reads the whole prefix again, publishes it and returns its
// revision.
func (w *watcher) relist() (int64, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.r.bgTimeout)
	defer cancel()
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
