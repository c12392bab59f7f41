package consul

import (
	"context"
	"log/slog"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/internal/ctxutil"
)

// blockingLoop runs the blocking-query loop of a watch (watch.go: the
// health of a service; rules.go: a KV entry) until ctx ends. It follows
// the rules of Consul's "Blocking Queries" documentation: the index is
// reset to 0 when it goes backwards (and after an error, since the agent
// may have restarted with a new, smaller index), an index below 1 is
// replaced by 1 so that the next query does block, and the loop is
// rate-limited by a token bucket with a burst of 2. Failed queries are
// retried with capped, jittered backoff, logged once when they start
// failing and once when they work again.
type blockingLoop struct {
	r   *Registry
	ctx context.Context
	log *slog.Logger
	// name is the watch in log lines ("watch", "rule watch"), kept what it
	// keeps while failing ("list", "document"), again what it does when
	// the index goes backwards ("listing again").
	name, kept, again string

	// query makes one blocking query from index and keeps its result for
	// apply.
	query func(index uint64) (*api.QueryMeta, error)
	// failed is told each failed query (after the first is logged).
	failed func(err error)
	// reset is told each time the index goes back to 0.
	reset func()
	// apply uses the result of a successful query.
	apply func(meta *api.QueryMeta)
}

func (l *blockingLoop) run() {
	r := l.r
	bucket := tokenBucket{burst: 2, tokens: 2, interval: r.cfg.QueryInterval, last: time.Now()}
	var (
		index   uint64
		failing bool
		attempt int
	)
	for {
		if bucket.take(l.ctx) != nil {
			return
		}
		meta, err := l.query(index)
		if l.ctx.Err() != nil {
			return
		}
		if err != nil {
			attempt++
			if l.failed != nil {
				l.failed(err)
			}
			if !failing {
				failing = true
				l.log.Warn("consul registry: "+l.name+" query failed; keeping the last "+l.kept+" and retrying until it works", "error", err)
			} else {
				l.log.Debug("consul registry: "+l.name+" query failed again", "error", err, "attempt", attempt)
			}
			index = 0
			if l.reset != nil {
				l.reset()
			}
			if !ctxutil.Sleep(l.ctx, backoff(attempt, r.watchRetryCap())) {
				return
			}
			continue
		}
		if failing {
			l.log.Info("consul registry: "+l.name+" resumed", "failed_queries", attempt)
			failing, attempt = false, 0
		}
		if meta.LastIndex < index {
			l.log.Debug("consul registry: the Consul index went backwards; "+l.again, "from", index, "to", meta.LastIndex)
			index = 0
			if l.reset != nil {
				l.reset()
			}
			continue
		}
		index = max(meta.LastIndex, 1)
		l.apply(meta)
	}
}
