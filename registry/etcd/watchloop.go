package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/storks-rpc/storks/internal/ctxutil"
)

// watchLoop keeps one etcd watch going for as long as its context lives:
// the instance watch of a prefix (watch.go) and the rule watch of one key
// (rules.go) differ only in what they read and how they apply events. It
// watches from a revision; whenever the watch breaks (an error, a
// server-side cancellation, a compaction, a lost leader) it keeps what it
// last published, reads everything again with backoff and watches from the
// new revision.
type watchLoop struct {
	r    *Registry
	ctx  context.Context // ends the loop
	log  *slog.Logger
	key  string              // what is watched
	opts []clientv3.OpOption // its watch options (WithPrefix for a prefix)

	// read reads what is watched again, publishes it and returns the
	// revision it read at.
	read func(ctx context.Context) (int64, error)
	// failed, if set, is told each failed read.
	failed func(err error)
	// apply applies the events of one watch response.
	apply func(events []*clientv3.Event)

	// The words of the log lines: the watch ("watch", "rule watch"),
	// reading it ("listing for a watch") and what is kept ("list").
	name, reading, kept string

	reads atomic.Int64 // how many times it read again (for tests)
}

// run watches from rev+1 (with rev 0 it reads first) until l.ctx ends.
func (l *watchLoop) run(rev int64) {
	defer l.r.wg.Done()
	bo := l.r.newBackoff()
	failing := false
	var tokenRetry time.Time // when the watch was last retried at once after errStaleToken
	for {
		if rev == 0 {
			for {
				ctx, cancel := context.WithTimeout(l.ctx, l.r.bgTimeout)
				newRev, err := l.read(ctx)
				cancel()
				if err == nil {
					rev = newRev
					break
				}
				if l.ctx.Err() != nil {
					return
				}
				if l.failed != nil {
					l.failed(err)
				}
				if !failing {
					l.log.Warn("etcd registry: "+l.reading+" failed; keeping the last "+l.kept+" and retrying with backoff", "error", err)
					failing = true
				} else {
					l.log.Debug("etcd registry: "+l.reading+" failed again", "error", err)
				}
				if !ctxutil.Sleep(l.ctx, bo.next()) {
					return
				}
			}
			l.reads.Add(1)
			if failing {
				l.log.Info("etcd registry: " + l.name + " resumed")
				failing = false
			}
		}
		start := time.Now()
		err := l.watchFrom(rev + 1)
		if l.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errStaleToken) && time.Since(tokenRetry) > l.r.retryCap {
			// Nothing was missed: the watch was refused when it was
			// created. Retry at once, on a new stream with a new token.
			tokenRetry = time.Now()
			l.log.Debug("etcd registry: the auth token of the "+l.name+" stream expired; watching on a new stream", "error", err)
			continue
		}
		if time.Since(start) > l.r.retryCap {
			bo.reset()
		}
		if errors.Is(err, rpctypes.ErrCompacted) {
			l.log.Info("etcd registry: "+l.name+" fell behind a compaction; reading again", "error", err)
		} else {
			l.log.Warn("etcd registry: "+l.name+" interrupted; keeping the last "+l.kept+" and reading again with backoff", "error", err)
			failing = true
		}
		if !ctxutil.Sleep(l.ctx, bo.next()) {
			return
		}
		rev = 0
	}
}

// watchFrom watches from rev and applies the events until the watch
// breaks, and says why.
func (l *watchLoop) watchFrom(rev int64) error {
	// WithRequireLeader: a member cut off from the leader cancels the watch
	// (ErrNoLeader) instead of leaving it silently stale.
	ctx := clientv3.WithRequireLeader(l.ctx)
	// The client multiplexes the watches of equal contexts (metadata) on
	// one gRPC stream, which keeps the auth token it was opened with: once
	// that token has expired, the server refuses every new watch on the
	// stream, forever. After such a refusal, watch on a new stream (the
	// client authenticates again when it opens one).
	stream := l.r.watchStream.Load()
	if stream > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, "storks-watch-stream", strconv.FormatInt(stream, 10))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for resp := range l.r.cli.Watch(ctx, l.key, append([]clientv3.OpOption{clientv3.WithRev(rev)}, l.opts...)...) {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w (compacted up to revision %d, watching from %d)", rpctypes.ErrCompacted, resp.CompactRevision, rev)
		}
		if err := resp.Err(); err != nil {
			if staleToken(err) {
				l.r.watchStream.CompareAndSwap(stream, stream+1)
				return fmt.Errorf("%w: %w", errStaleToken, err)
			}
			return err
		}
		if resp.Canceled {
			return errors.New("the server canceled the watch")
		}
		l.apply(resp.Events)
	}
	return errors.New("the watch channel closed")
}
