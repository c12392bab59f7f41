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
