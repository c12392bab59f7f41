package registry

import (
	"context"
	"sync"
)

// feedEnd is what Feed and DocFeed share: the wake-up of Next, the end of
// the feed (once, with an error), the functions to run then, and the Watch
// context that ends it. mu also guards the fields of the feed that embeds
// it.
type feedEnd struct {
	wake chan struct{} // 1-buffered; a value means "look again"
	done chan struct{} // closed when the feed ends

	mu      sync.Mutex
	err     error       // why the feed ended; set before done is closed
	stopCtx func() bool // unregisters the context.AfterFunc
	onEnd   func()
}

// init makes the channels and ends the feed with endErr(ctx.Err()) when ctx
// is done, even if it already is.
func (f *feedEnd) init(ctx context.Context, endErr func(error) error) {
	f.wake, f.done = make(chan struct{}, 1), make(chan struct{})
	stop := context.AfterFunc(ctx, func() { f.End(endErr(ctx.Err())) })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		stop() // ctx was done already and the feed has ended
	} else {
		f.stopCtx = stop
	}
}

// signal wakes Next. It never blocks.
func (f *feedEnd) signal() {
	select {
	case f.wake <- struct{}{}:
	default: // already woken
	}
}

// End ends the feed with err (ErrClosed if err is nil): Next returns err from
// then on. Only the first call has an effect; it releases the waiting Next,
// unregisters the feed from the Watch context and then calls the functions
// registered with OnEnd, outside any lock of the feed.
func (f *feedEnd) End(err error) {
	if err == nil {
		err = ErrClosed
	}
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		return
	}
	f.err = err
	close(f.done)
	stop, onEnd := f.stopCtx, f.onEnd
	f.stopCtx, f.onEnd = nil, nil
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	if onEnd != nil {
		onEnd()
	}
}

// OnEnd arranges for fn to be called when the feed ends, by the End call
// that ends it (so before Stop, or an End called from Close, returns), or at
// once if the feed has already ended. It is meant for releasing what the
// watch holds: unregistering it, canceling its goroutine. Register it once
// the watch is registered wherever fn undoes that, so that an End that comes
// in between is not missed. Functions registered by several calls run in
// the order of the calls.
func (f *feedEnd) OnEnd(fn func()) {
	f.mu.Lock()
	if f.err != nil {
		f.mu.Unlock()
		fn()
		return
	}
	if prev := f.onEnd; prev != nil {
		f.onEnd = func() { prev(); fn() }
	} else {
		f.onEnd = fn
	}
	f.mu.Unlock()
}

// Done returns a channel that is closed when the feed has ended.
func (f *feedEnd) Done() <-chan struct{} { return f.done }

// Stop ends the feed with ErrClosed, unless it has ended already.
func (f *feedEnd) Stop() { f.End(ErrClosed) }
