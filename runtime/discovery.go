package runtime

import (
	"context"
	"errors"
	"sync"

	"github.com/storks-rpc/storks/registry"
)

// What a call does when its reference lists no provider. A call made
// WithWaitForProvider waits (run calls noProvider) until the list changes:
// update closes the changed channel of the state it replaces, so a waiting
// call wakes up without polling, and a call that finds providers costs
// nothing more. A reference made with that option does not wait for the
// registry's first list either: Refer returns at once and the watch starts
// in the background (lazyWatcher).

type waitForProvider struct{}

func (waitForProvider) applyClient(c *clientConfig) { c.resilience.waitForProvider = true }

func (waitForProvider) applyRefer(c *referConfig) { c.resilience.waitForProvider = true }

func (waitForProvider) applyCall(c *callConfig) { c.resilience.waitForProvider = true }

// WithWaitForProvider makes a call that finds no provider wait until one
// appears in the registry, instead of failing at once with ErrNoProvider
// (gRPC's wait-for-ready). The wait is bounded by the call's context: its
// deadline, or the reference's default timeout (WithDefaultTimeout);
// without either it lasts until the context is canceled. A wait that ends
// by the deadline fails with CodeDeadlineExceeded, saying that no provider
// appeared (errors.Is holds for ErrNoProvider and
// context.DeadlineExceeded).
//
// Given to NewClient it applies to every reference, given to Refer to the
// reference's calls, and given to a call to that call. A reference made
// with it, by Refer or by its client's default, does not wait for the
// registry's first answer either: Refer returns at once, even while the
// registry is unreachable, and the reference follows the registry from the
// background.
func WithWaitForProvider() CallPolicyOption { return waitForProvider{} }

// discovery is the part of a Reference that this file keeps.
type discovery struct {
	reg  registry.Registry
	wait bool // the reference's calls wait for a provider
}

// watch starts watching key for Refer. It returns the watcher and the
// registry's first list, waiting for it (bounded by ctx) unless wait is
// set: then the watch starts at the watcher's first Next, and the list is
// nil.
func (c *Client) watch(ctx, wctx context.Context, reg registry.Registry, key ServiceKey, wait bool) (registry.Watcher, []registry.Instance, error) {
	if wait {
		return &lazyWatcher{reg: reg, key: key, ctx: wctx}, nil, nil
	}
	w, err := reg.Watch(wctx, key)
	if err != nil {
		return nil, nil, wrapError(CodeUnavailable, err, "refer %s: watch: %v", key, err)
	}
	list, err := nextList(ctx, wctx, w)
	if err != nil {
		w.Stop()
		return nil, nil, wrapError(CodeOf(err), err, "refer %s: first discovery: %v", key, err)
	}
	return w, list, nil
}

// lazyWatcher is the watcher of a reference that waits for providers: its
// Next starts the watch, and a failure to start it is an error of Next,
// which Reference.follow logs and retries.
type lazyWatcher struct {
	reg registry.Registry
	key ServiceKey
	ctx context.Context // the watch's

	mu      sync.Mutex
	w       registry.Watcher
	stopped bool
}

func (l *lazyWatcher) Next(ctx context.Context) ([]registry.Instance, error) {
	l.mu.Lock()
	w, stopped := l.w, l.stopped
	l.mu.Unlock()
	if stopped {
		return nil, registry.ErrClosed
	}
	if w == nil {
		nw, err := l.reg.Watch(l.ctx, l.key)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			nw.Stop()
			return nil, registry.ErrClosed
		}
		l.w, w = nw, nw
		l.mu.Unlock()
	}
	return w.Next(ctx)
}

func (l *lazyWatcher) Stop() {
	l.mu.Lock()
	w := l.w
	l.stopped = true
	l.mu.Unlock()
	if w != nil {
		w.Stop()
	}
}

// notifyChanged wakes the calls waiting for st to be replaced. c.mu must be
// held.
func (st *refState) notifyChanged() {
	if st.changed != nil {
		close(st.changed)
	}
}

// noProvider is called by run when the reference lists no provider, before
// any attempt. A call that does not wait for a provider gets its error,
// CodeUnavailable and ErrNoProvider. A call that waits gets nil when the
// list has changed (run then looks again), or the error of ctx's end.
func (r *Reference) noProvider(ctx context.Context, cc *callConfig) error {
	if !r.disc.wait && (cc == nil || !cc.resilience.waitForProvider) {
		return r.noProviderError()
	}
	st := r.state.Load()
	if st == nil || st.changed == nil {
		// Never installed by update: Refer has not returned yet, or
		// Close has run (run checks that first).
		return r.noProviderError()
	}
	if len(st.instances) > 0 || r.closed.Load() {
		return nil
	}
	select {
	case <-st.changed:
		return nil
	case <-ctx.Done():
	}
	what := "no provider appeared for " + r.keyStr
	cause := errors.Join(ErrNoProvider, ctx.Err())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return wrapError(CodeDeadlineExceeded, cause, "%s within the deadline", what)
	}
	return wrapError(CodeCanceled, cause, "%s before the call was canceled", what)
}

// awaitProvider waits, for a call that waits for a provider, until the
// reference lists one (or is closed).
func (r *Reference) awaitProvider(ctx context.Context, cc *callConfig) error {
	for {
		if st := r.state.Load(); st != nil && len(st.instances) > 0 || r.closed.Load() {
			return nil
		}
		if err := r.noProvider(ctx, cc); err != nil {
			return err
		}
	}
}

// noProviderError is the error of a call that found no provider.
func (r *Reference) noProviderError() error {
	return wrapError(CodeUnavailable, ErrNoProvider, "no provider for %s", r.keyStr)
}
