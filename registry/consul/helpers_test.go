package consul

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// testTTL is the TTL of the tests: short, so that expiries are quick.
const testTTL = 2 * time.Second

// syncBuffer is a bytes.Buffer safe for concurrent use, for capturing logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// count returns how many log lines contain every one of subs.
func (b *syncBuffer) count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// newTestRegistry opens a registry on agent with the test TTL, logging to
// logs (if not nil) and to the test log, and closes it when t ends.
func newTestRegistry(t *testing.T, agent *testservers.Consul, logs *syncBuffer, mod ...func(*Config)) *Registry {
	t.Helper()
	handler := slog.Handler(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if logs != nil {
		handler = teeHandler{handler, slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})}
	}
	cfg := Config{Address: agent.Addr(), TTL: testTTL, Logger: slog.New(handler)}
	for _, m := range mod {
		m(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New(%v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil && !errors.Is(err, registry.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// teeHandler sends every record to two handlers.
type teeHandler struct{ a, b slog.Handler }

func (h teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.a.Enabled(ctx, l) || h.b.Enabled(ctx, l)
}

func (h teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.a.Enabled(ctx, r.Level) {
		_ = h.a.Handle(ctx, r.Clone())
	}
	if h.b.Enabled(ctx, r.Level) {
		_ = h.b.Handle(ctx, r)
	}
	return nil
}

func (h teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{h.a.WithAttrs(as), h.b.WithAttrs(as)}
}

func (h teeHandler) WithGroup(n string) slog.Handler {
	return teeHandler{h.a.WithGroup(n), h.b.WithGroup(n)}
}

func register(t *testing.T, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.Register(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Register(%v %q): %v", in.Key, in.ID, err)
		}
	}
}

func inst(key registry.ServiceKey, id, addr string) registry.Instance {
	return registry.Instance{Key: key, ID: id, Addr: addr}
}

// watchRecord is one result of Next.
type watchRecord struct {
	at   time.Time
	list []registry.Instance
	err  error
}

// watchLog calls Next in a loop in the background and records every result,
// until the watch ends.
type watchLog struct {
	mu      sync.Mutex
	records []watchRecord
	changed chan struct{}
	done    chan struct{}
}

func recordWatch(t *testing.T, w registry.Watcher) *watchLog {
	t.Helper()
	l := &watchLog{changed: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			list, err := w.Next(context.Background())
			l.mu.Lock()
			l.records = append(l.records, watchRecord{at: time.Now(), list: list, err: err})
			l.mu.Unlock()
			select {
			case l.changed <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-l.done
	})
	return l
}

func (l *watchLog) snapshot() []watchRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]watchRecord(nil), l.records...)
}

// waitFor waits until the last recorded list satisfies want, and returns
// when it was recorded.
func (l *watchLog) waitFor(t *testing.T, timeout time.Duration, what string, want func([]registry.Instance) bool) time.Time {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		recs := l.snapshot()
		if n := len(recs); n > 0 {
			last := recs[n-1]
			if last.err != nil {
				t.Fatalf("waiting for %s: Next returned %v", what, last.err)
			}
			if want(last.list) {
				return last.at
			}
		}
		select {
		case <-l.changed:
		case <-deadline.C:
			var last []registry.Instance
			if n := len(recs); n > 0 {
				last = recs[n-1].list
			}
			t.Fatalf("the watch did not deliver %s within %v; last list %s", what, timeout, registrytest.Format(last))
		}
	}
}
