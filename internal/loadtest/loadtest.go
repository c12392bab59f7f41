// Package loadtest drives concurrent calls for tests that change something
// (shut a provider down, stop a registry) under load and then check that no
// call failed.
package loadtest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Load is a running set of callers; Stop ends it.
type Load struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	calls    atomic.Int64
	failed   atomic.Int64
	firstErr atomic.Pointer[error]
}

// Result counts what the callers did.
type Result struct {
	Calls, Failed int64
	// FirstErr is the first failure, nil if none.
	FirstErr error
}

// Start runs callers goroutines that call call in a loop, each call with its
// own timeout, pausing pause between calls (0: none), until Stop.
func Start(callers int, timeout, pause time.Duration, call func(ctx context.Context) error) *Load {
	l := &Load{stop: make(chan struct{})}
	for range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := call(ctx)
				cancel()
				l.calls.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, &err)
				}
				if pause > 0 {
					select {
					case <-l.stop:
						return
					case <-time.After(pause):
					}
				}
			}
		}()
	}
	return l
}

// Stop ends the callers, waits for their last calls and returns the counts.
func (l *Load) Stop() Result {
	close(l.stop)
	l.wg.Wait()
	r := Result{Calls: l.calls.Load(), Failed: l.failed.Load()}
	if e := l.firstErr.Load(); e != nil {
		r.FirstErr = *e
	}
	return r
}

// Call is one call of a Log: when it started, who answered it (what the
// call function returned) and its error.
type Call struct {
	Start time.Time
	By    string
	Err   error
}

// Log is a Load that records its calls, for tests that ask which provider
// answered when (a provider disabled, enabled, killed under load).
type Log struct {
	*Load
	mu    sync.Mutex
	calls []Call
}

// StartLog is Start for a call function that returns who answered (a
// provider's name); every call is recorded.
func StartLog(callers int, timeout, pause time.Duration, call func(ctx context.Context) (by string, err error)) *Log {
	l := &Log{}
	l.Load = Start(callers, timeout, pause, func(ctx context.Context) error {
		start := time.Now()
		by, err := call(ctx)
		l.mu.Lock()
		l.calls = append(l.calls, Call{Start: start, By: by, Err: err})
		l.mu.Unlock()
		return err
	})
	return l
}

// Answered looks at the calls that started in [from, to) and succeeded:
// all is how many there were, n how many of them by answered, and first
// and last the starts of the first and last of those n (zero if n is 0).
func (l *Log) Answered(by string, from, to time.Time) (n, all int, first, last time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.calls {
		if c.Err != nil || c.Start.Before(from) || !c.Start.Before(to) {
			continue
		}
		all++
		if c.By != by {
			continue
		}
		n++
		if first.IsZero() || c.Start.Before(first) {
			first = c.Start
		}
		if c.Start.After(last) {
			last = c.Start
		}
	}
	return n, all, first, last
}
