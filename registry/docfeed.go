package registry

import (
	"bytes"
	"context"
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
	feedEnd // End, OnEnd, Done, Stop; its mu guards doc and have

	doc  []byte
	have bool

	// Only Next uses these.
	started bool
	last    []byte
}

var _ RuleWatcher = (*DocFeed)(nil)

// NewDocFeed returns a feed that ends with ctx.Err() when ctx, the context
// given to WatchRule, is done.
func NewDocFeed(ctx context.Context) *DocFeed {
	f := &DocFeed{}
	f.init(ctx, func(err error) error { return err })
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
	f.signal()
}

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
