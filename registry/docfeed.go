package registry

import (
	"bytes"
	"context"
	"sync"
)

// DocFeed is the consumer half of a [RuleWatcher], for adapter authors, as
// [Feed] is for a Watcher: the adapter publishes the current document as it
// learns it (Publish, nil for "no document") and ends the watch with an
// error (End); the DocFeed implements Next and Stop: the first Next returns
// the first published document (waiting for it), later calls return only
// when the latest document differs from the one returned last, each a copy.
//
// Publish, End, OnEnd and Stop are safe for concurrent use; Next may be
// called from one goroutine at a time. Make one with NewDocFeed; it starts
// no goroutine.
type DocFeed struct {
	ctx  context.Context
	wake chan struct{} // 1-buffered
	done chan struct{} // closed when the feed ends

	mu      sync.Mutex
	doc     []byte
	have    bool
	err     error
	onEnd   []func()
	stopCtx func() bool

	// Only Next uses these.
	started bool
	last    []byte
}

var _ RuleWatcher = (*DocFeed)(nil)

// NewDocFeed returns a feed that ends with ctx.Err() when ctx, the context
// given to WatchRule, is done.
func NewDocFeed(ctx context.Context) *DocFeed {
	f := &DocFeed{ctx: ctx, wake: make(chan struct{}, 1), done: make(chan struct{})}
	f.stopCtx = context.AfterFunc(ctx, func() { f.End(ctx.Err()) })
	return f
}

// Publish makes doc (nil: the key has no document) the current document.
// The feed keeps doc: the caller must not modify it afterwards.
func (f *DocFeed) Publish(doc []byte) {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return
	}
	f.doc, f.have = doc, true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// End ends the feed: Next returns err from now on (ErrClosed if err is
// nil). Only the first End counts; the functions given to OnEnd run once,
// after it.
func (f *DocFeed) End(err error) {
	if err == nil {
		err = ErrClosed
	}
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return
	}
	f.err = err
	fns := f.onEnd
	f.onEnd = nil
	close(f.done)
	f.mu.Unlock()
	if f.stopCtx != nil {
		f.stopCtx()
	}
	for _, fn := range fns {
		fn()
	}
}

// OnEnd registers fn to run once when the feed ends (at once if it has).
func (f *DocFeed) OnEnd(fn func()) {
	f.mu.Lock()
	if f.err == nil {
		f.onEnd = append(f.onEnd, fn)
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	fn()
}

// Done is closed when the feed has ended; adapters' goroutines select on
// it to stop.
func (f *DocFeed) Done() <-chan struct{} { return f.done }

// Stop ends the feed with ErrClosed.
func (f *DocFeed) Stop() { f.End(ErrClosed) }

// Next implements [RuleWatcher].
func (f *DocFeed) Next(ctx context.Context) ([]byte, error) {
	if ctx == nil {
		return nil, &InputError{Field: "context", Reason: "is nil"}
	}
	for {
		f.mu.Lock()
		err, doc, have := f.err, f.doc, f.have
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if have && (!f.started || !sameDoc(doc, f.last)) {
			f.started, f.last = true, doc
			if doc == nil {
				return nil, nil
			}
			return bytes.Clone(doc), nil
		}
		select {
		case <-f.wake:
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func sameDoc(a, b []byte) bool {
	return (a == nil) == (b == nil) && bytes.Equal(a, b)
}
