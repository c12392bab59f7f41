package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// What a call does when its reference lists no provider, and how the
// error says why. A call made WithWaitForProvider waits (run calls
// noProvider) until the list changes: update closes the changed channel of
// the state it replaces, so a waiting call wakes up without polling, and a
// call that finds providers costs nothing more. A reference made with that
// option does not wait for the registry's first list either: Refer returns
// at once and the watch starts in the background (lazyWatcher).
//
// A call that finds no provider looks, when the registry is a
// registry.Lister, for the other versions and groups of the service (hint),
// so that a version or group mismatch says which ones exist. The query is
// bounded by hintTimeout and its answer kept for hintTTL per reference. The
// server's counterpart is notExported: the error of a request for a key the
// server does not export names the keys of the same service it does export.

const (
	// hintTimeout bounds the registry query of a failing call.
	hintTimeout = 250 * time.Millisecond
	// hintTTL is how long a reference reuses the answer.
	hintTTL = time.Second
	// maxHintKeys is how many other keys an error names.
	maxHintKeys = 5
)

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

	mu      sync.Mutex
	hint    string        // the last answer of the registry query
	at      time.Time     // when it came; zero: never
	query   chan struct{} // closed when the running query ends; nil if none
	queryAt time.Time     // when the running query started
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
// any attempt. A call that does not wait for a provider gets its error:
// CodeUnavailable, ErrNoProvider, and what the registry has for other
// versions and groups of the service. A call that waits gets nil when the
// list has changed (run then looks again), or the error of ctx's end.
func (r *Reference) noProvider(ctx context.Context, cc *callConfig) error {
	if !r.disc.wait && (cc == nil || !cc.resilience.waitForProvider) {
		return r.noProviderError(ctx)
	}
	st := r.state.Load()
	if st == nil || st.changed == nil {
		// Never installed by update: Refer has not returned yet, or
		// Close has run (run checks that first).
		return r.noProviderError(ctx)
	}
	if len(st.instances) > 0 || r.closed.Load() {
		return nil
	}
	start := time.Now()
	r.prefetchHint()
	select {
	case <-st.changed:
		return nil
	case <-ctx.Done():
	}
	hint := r.hint(nil, time.Since(start)+hintTTL)
	what := "no provider appeared for " + r.keyStr + r.keyDetail(hint)
	cause := errors.Join(ErrNoProvider, ctx.Err())
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return wrapError(CodeDeadlineExceeded, cause, "%s within the deadline%s", what, hintSuffix(hint))
	}
	return wrapError(CodeCanceled, cause, "%s before the call was canceled%s", what, hintSuffix(hint))
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
func (r *Reference) noProviderError(ctx context.Context) error {
	if st := r.state.Load(); st != nil && st.disabled > 0 {
		return wrapError(CodeUnavailable, ErrNoProvider, "no provider for %s: the rules disable all %s (see storks rule get)", r.keyStr, plural(st.disabled, "provider"))
	}
	hint := r.hint(ctx.Done(), hintTTL)
	return wrapError(CodeUnavailable, ErrNoProvider, "no provider for %s%s%s", r.keyStr, r.keyDetail(hint), hintSuffix(hint))
}

// keyDetail spells out the reference's version and group when a hint
// names other ones.
func (r *Reference) keyDetail(hint string) string {
	if hint == "" {
		return ""
	}
	return fmt.Sprintf(" (version %q, group %q)", r.key.Version, r.key.Group)
}

func hintSuffix(hint string) string {
	if hint == "" {
		return ""
	}
	return "; " + hint
}

// hint returns what the registry has for the other versions and groups of
// the reference's service, for example `the registry has
// hello.v1.Greeter:v1 with 2 providers; refer with WithVersion("v1")`, or
// "" if it has none, does not say (it is not a registry.Lister) or did not
// answer within hintTimeout. An answer younger than maxAge is reused;
// otherwise the registry is queried (by one call at a time: the others wait
// for its answer). hint returns "" at once when stop is closed.
func (r *Reference) hint(stop <-chan struct{}, maxAge time.Duration) string {
	d := &r.disc
	if _, ok := d.reg.(registry.Lister); !ok {
		return ""
	}
	d.mu.Lock()
	if !d.at.IsZero() && time.Since(d.at) < maxAge {
		h := d.hint
		d.mu.Unlock()
		return h
	}
	q := r.queryLocked()
	deadline := d.queryAt.Add(hintTimeout)
	d.mu.Unlock()
	if q == nil {
		return ""
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-q:
	case <-t.C:
		return ""
	case <-stop:
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hint
}

// prefetchHint starts a registry query unless an answer younger than
// hintTTL is at hand, so that a waiting call that ends by its deadline
// has one.
func (r *Reference) prefetchHint() {
	d := &r.disc
	if _, ok := d.reg.(registry.Lister); !ok {
		return
	}
	d.mu.Lock()
	if d.at.IsZero() || time.Since(d.at) >= hintTTL {
		r.queryLocked()
	}
	d.mu.Unlock()
}

// queryLocked returns the channel of the running registry query, starting
// one if none runs; nil if the client is closed. r.disc.mu must be held.
func (r *Reference) queryLocked() chan struct{} {
	d := &r.disc
	if d.query != nil {
		return d.query
	}
	c := r.cl
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.bg.Add(1)
	c.mu.Unlock()
	q := make(chan struct{})
	d.query, d.queryAt = q, time.Now()
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, hintTimeout)
		h := otherKeys(ctx, d.reg, r.key)
		cancel()
		d.mu.Lock()
		d.hint, d.at, d.query = h, time.Now(), nil
		d.mu.Unlock()
		close(q)
	}()
	return q
}

// otherKeys asks reg, a registry.Lister, for the keys of key's service
// other than key and the number of providers of each, and says how to
// refer to them; "" if there are none or reg fails.
func otherKeys(ctx context.Context, reg registry.Registry, key ServiceKey) string {
	keys, err := reg.(registry.Lister).Services(ctx)
	if err != nil {
		return ""
	}
	var has, how []string
	more := 0
	for _, k := range keys {
		if k.Service != key.Service || k == key {
			continue
		}
		if len(has) == maxHintKeys {
			more++
			continue
		}
		list, err := reg.Discover(ctx, k)
		switch {
		case err != nil:
			has = append(has, k.String())
		case len(list) == 0:
			continue // gone since Services answered
		default:
			has = append(has, k.String()+" with "+plural(len(list), "provider"))
		}
		how = append(how, referOptions(key, k))
	}
	if len(has) == 0 {
		return ""
	}
	if more > 0 {
		has = append(has, fmt.Sprintf("%d more", more))
	}
	return "the registry has " + strings.Join(has, ", ") + "; refer with " + strings.Join(how, " or ")
}

// referOptions returns the options that make a reference to want refer to
// have instead.
func referOptions(want, have ServiceKey) string {
	var opts []string
	if have.Version != want.Version {
		opts = append(opts, fmt.Sprintf("WithVersion(%q)", have.Version))
	}
	if have.Group != want.Group {
		opts = append(opts, fmt.Sprintf("WithGroup(%q)", have.Group))
	}
	return strings.Join(opts, " and ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// notExported is the error of a request for key, a canonical service key,
// that the server does not export: CodeUnimplemented, naming the keys of
// the same service the server does export, if any.
func (s *Server) notExported(key []byte) *Error {
	want := parseKey(string(key))
	var others []string
	s.mu.RLock()
	addr := s.addr
	for k, e := range s.exports {
		if e.key.Service == want.Service && k != string(key) {
			others = append(others, k)
		}
	}
	s.mu.RUnlock()
	if len(others) == 0 {
		return Errorf(CodeUnimplemented, "service %s is not exported by %s", key, addr)
	}
	slices.Sort(others)
	var missing []string
	for _, o := range others {
		k := parseKey(o)
		if want.Version == "" && k.Version != "" && !slices.Contains(missing, "no version") {
			missing = append(missing, "no version")
		}
		if want.Group == "" && k.Group != "" && !slices.Contains(missing, "no group") {
			missing = append(missing, "no group")
		}
	}
	detail := ""
	if len(missing) > 0 {
		slices.Sort(missing) // "no group" before "no version": the key's order
		detail = " (" + strings.Join(missing, ", ") + ")"
	}
	return Errorf(CodeUnimplemented, "service %s%s is not exported by %s; it exports %s", key, detail, addr, strings.Join(others, ", "))
}

// parseKey parses the canonical form of a service key, "group/service:version"
// (see ServiceKey.String). It does not validate it.
func parseKey(s string) ServiceKey {
	var k ServiceKey
	if g, rest, ok := strings.Cut(s, "/"); ok {
		k.Group, s = g, rest
	}
	k.Service, k.Version, _ = strings.Cut(s, ":")
	return k
}
