package registry

import (
	"context"
	"fmt"
)

// Feed is the consumer half of a [Watcher], for adapter authors: the adapter
// publishes complete instance lists as it learns them (Publish) and ends the
// watch with an error (End), and the Feed implements Next and Stop with the
// semantics the Watcher contract requires: the first Next returns the first
// published list (waiting for it if nothing was published yet), later calls
// return only the latest list and only if it differs from the one returned
// last, and each returns a copy. A *Feed is a Watcher: adapters return it, or
// a type that embeds it. See "Writing an adapter" in the package
// documentation for the rules.
//
// Publish, End, OnEnd, Done and Stop are safe for concurrent use; Next may be
// called from one goroutine at a time. The zero Feed is not usable; make one
// with NewFeed.
type Feed struct {
	feedEnd                 // End, OnEnd, Done, Stop; its mu guards the fields below
	ctx     context.Context // the Watch context; the feed ends with it

	list  []Instance // the current list; never modified, only replaced
	have  bool       // a list was published
	cause error      // why nothing was published yet; see Failing

	// A pull feed (see newPullFeed) has a source instead of a publisher.
	source func() []Instance
	stale  bool // guarded by mu: source must be read again

	// Only Next uses these; it is not called concurrently.
	started bool
	last    []Instance
}

var _ Watcher = (*Feed)(nil)

// NewFeed returns a feed that ends with ctx.Err() when ctx, the context
// given to Watch, is done. ctx must not be nil (Check rejects a nil one).
// Until then it starts no goroutine: it uses [context.AfterFunc], and Next
// also checks ctx, so that once ctx's cancel function has returned, Next
// returns ctx.Err() (unless the feed had ended before).
func NewFeed(ctx context.Context) *Feed {
	return newPullFeed(ctx, nil)
}

// newPullFeed returns a feed that nothing publishes to: Next reads the list
// from source (whose lists follow the rules of Publish) the first time and
// after each call of changed, so that writers do O(1) work however long the
// list is. The in-process registry uses it. With a nil source, it returns a
// feed that is published to, as NewFeed does.
func newPullFeed(ctx context.Context, source func() []Instance) *Feed {
	f := &Feed{ctx: ctx, source: source, stale: source != nil}
	f.init(ctx, f.waitErr)
	return f
}

// Publish makes list the current list and wakes Next. list must be complete
// and sorted by ID, and neither it nor the Metadata maps of its instances may
// be modified afterwards: the feed keeps it as it is and copies it only in
// Next (the same list may be published to several feeds). A nil list is an
// empty list. Publish never blocks and does not compare lists: publishing an
// unchanged list only wakes Next, which returns nothing new. Publishing after
// the feed has ended does nothing visible.
func (f *Feed) Publish(list []Instance) {
	f.mu.Lock()
	f.list, f.have = list, true
	f.mu.Unlock()
	f.signal()
}

// Failing records why the adapter has no first list yet: the error of its
// last attempt to read one (nil once it works again), which should name the
// server and the cause, as in "etcd at 10.0.0.1:2379: ... connection
// refused". It matters only until the first Publish: a first Next whose
// context ends, or a feed whose Watch context ends, before any list was
// published then returns an error that wraps both the context's error and
// cause, so that a consumer that gives up waiting for its first list learns
// why. Failing never ends the feed nor wakes Next.
func (f *Feed) Failing(cause error) {
	f.mu.Lock()
	f.cause = cause
	f.mu.Unlock()
}

// changed tells a pull feed that the list of its source has changed, and
// wakes Next. It never blocks.
func (f *Feed) changed() {
	f.mu.Lock()
	f.stale = true
	f.mu.Unlock()
	f.signal()
}

// Next implements [Watcher]: it returns a copy of the first published list
// (waiting for it if need be), then blocks until the current list differs
// from the one it returned last. It returns the feed's end error once the
// feed has ended, ctx.Err() when ctx is done (wrapped with the cause given
// to Failing, if nothing was published yet), and an [*InputError] if ctx is
// nil.
func (f *Feed) Next(ctx context.Context) ([]Instance, error) {
	if ctx == nil {
		return nil, Check(ctx, false, nil)
	}
	for {
		if err := f.ctx.Err(); err != nil {
			// The AfterFunc may not have run yet; end the feed now so
			// that Next is deterministic once the cancel func returned.
			f.End(f.waitErr(err))
		}
		f.mu.Lock()
		err, have, list := f.err, f.have, f.list
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, f.waitErr(err)
		}
		if f.source != nil && f.takeStale() {
			list, have = f.source(), true
		}
		if have && (!f.started || !sameList(list, f.last)) {
			f.started, f.last = true, list
			return cloneList(list), nil
		}
		select {
		case <-f.wake:
		case <-f.done:
		case <-f.ctx.Done():
			// Loop: end the feed and return its error.
		case <-ctx.Done():
			return nil, f.waitErr(ctx.Err())
		}
	}
}

// waitErr is the error of a Next whose context ended with err: err, and why
// there is no list if nothing was published yet.
func (f *Feed) waitErr(err error) error {
	f.mu.Lock()
	cause, have := f.cause, f.have
	f.mu.Unlock()
	if have || cause == nil {
		return err
	}
	return fmt.Errorf("%w (no list yet: %w)", err, cause)
}

// takeStale reports whether a pull feed must read its source again, and
// clears the mark.
func (f *Feed) takeStale() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	stale := f.stale
	f.stale = false
	return stale
}
