package zookeeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/registry"
)

// Rule documents (see registry.RuleStore) are persistent znodes, one per
// service key, beside the providers node of the key:
//
//	<base>/<escaped key>/rule
//
// Being persistent, they belong to no session: they survive the provider
// and consumer sessions, their ephemeral instance nodes and session
// expiry. The data of the node is the document as it is.

var _ registry.RuleStore = (*Registry)(nil)

// ruleNode is the name of the rule znode under the node of a key.
const ruleNode = "rule"

// rulePath returns the znode of the rule document of key.
func (r *Registry) rulePath(key registry.ServiceKey) string {
	return r.cfg.BasePath + "/" + escape(key.String()) + "/" + ruleNode
}

// ruleCall runs op with retries, like Discover, and wraps its error.
func (r *Registry) ruleCall(ctx context.Context, what string, op func() error) error {
	wctx, cancel := r.callContext(ctx)
	defer cancel()
	err := r.retry(wctx, op)
	if err == nil || errors.Is(err, registry.ErrClosed) || errors.Is(err, registry.ErrRuleChanged) {
		return err
	}
	return fmt.Errorf("zookeeper: %s at %s: %w", what, r.servers, r.explain(err))
}

var _ registry.RuleRevisions = (*Registry)(nil)

// GetRule reads the rule document of key; see registry.RuleStore.
func (r *Registry) GetRule(ctx context.Context, key registry.ServiceKey) ([]byte, error) {
	doc, _, err := r.GetRuleRevision(ctx, key)
	return doc, err
}

// GetRuleRevision reads the rule document of key and its revision, the
// node's version plus one; see registry.RuleRevisions.
func (r *Registry) GetRuleRevision(ctx context.Context, key registry.ServiceKey) ([]byte, int64, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, 0, err
	}
	path := r.rulePath(key)
	var doc []byte
	var rev int64
	err := r.ruleCall(ctx, "read the rule of "+key.String(), func() error {
		if _, err := r.session(); err != nil {
			return err
		}
		data, stat, err := r.conn.Get(path)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			doc, rev = nil, 0
			return nil
		case err != nil:
			return err
		}
		doc, rev = registry.RuleDoc(data), int64(stat.Version)+1
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if doc == nil {
		return nil, 0, registry.ErrNoRule
	}
	return doc, rev, nil
}

// PutRule writes doc as the rule document of key, creating the persistent
// node and its parents (with the registry's ACL) if needed; see
// registry.RuleStore.
func (r *Registry) PutRule(ctx context.Context, key registry.ServiceKey, doc []byte) error {
	err := key.Validate()
	if err == nil {
		err = registry.ValidateRuleDoc(doc)
	}
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	path := r.rulePath(key)
	doc = bytes.Clone(doc)
	return r.ruleCall(ctx, "write the rule of "+key.String(), func() error {
		return r.putRuleNode(path, doc)
	})
}

// PutRuleIf writes doc as the rule document of key if the node's version
// is still rev-1 (rev 0: creates the node, if it does not exist); see
// registry.RuleRevisions.
func (r *Registry) PutRuleIf(ctx context.Context, key registry.ServiceKey, doc []byte, rev int64) error {
	err := key.Validate()
	if err == nil {
		err = registry.ValidateRuleDoc(doc)
	}
	if err == nil && rev > math.MaxInt32 {
		err = &registry.InputError{Field: "revision", Value: strconv.FormatInt(rev, 10), Reason: "is not a ZooKeeper node version"}
	}
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	path := r.rulePath(key)
	doc = bytes.Clone(doc)
	return r.ruleCall(ctx, "write the rule of "+key.String(), func() error {
		if _, err := r.session(); err != nil {
			return err
		}
		var err error
		if rev > 0 {
			_, err = r.conn.Set(path, doc, int32(rev-1))
		} else {
			err = r.createRuleNode(path, doc)
		}
		if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNodeExists) {
			return registry.RuleChangedError(key)
		}
		return err
	})
}

func (r *Registry) putRuleNode(path string, doc []byte) error {
	for range 8 {
		if _, err := r.session(); err != nil {
			return err
		}
		_, err := r.conn.Set(path, doc, -1)
		if !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		err = r.createRuleNode(path, doc)
		if !errors.Is(err, zk.ErrNodeExists) && !errors.Is(err, zk.ErrNoNode) {
			return err
		}
		// Created or deleted by another client meanwhile: set it again.
	}
	return errors.New("zookeeper: the rule node keeps changing")
}

// createRuleNode creates the rule node path with doc, and its parents if
// they are missing. It fails with zk.ErrNodeExists if the node exists.
func (r *Registry) createRuleNode(path string, doc []byte) error {
	_, err := r.conn.Create(path, doc, zk.FlagPersistent, r.acl)
	if errors.Is(err, zk.ErrNoNode) {
		for _, p := range r.parents(path[:len(path)-len(ruleNode)-1]) {
			if _, err := r.conn.Create(p, nil, zk.FlagPersistent, r.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
				return fmt.Errorf("creating %s: %w", p, err)
			}
		}
		_, err = r.conn.Create(path, doc, zk.FlagPersistent, r.acl)
	}
	return err
}

// DeleteRule deletes the rule node of key; see registry.RuleStore.
func (r *Registry) DeleteRule(ctx context.Context, key registry.ServiceKey) error {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return err
	}
	path := r.rulePath(key)
	return r.ruleCall(ctx, "delete the rule of "+key.String(), func() error {
		return r.deleteNode(path)
	})
}

// DeleteRuleIf deletes the rule node of key if its version is still rev-1
// (and succeeds if there is no node); see registry.RuleRevisions.
func (r *Registry) DeleteRuleIf(ctx context.Context, key registry.ServiceKey, rev int64) error {
	err := key.Validate()
	if err == nil && rev > math.MaxInt32 {
		err = &registry.InputError{Field: "revision", Value: strconv.FormatInt(rev, 10), Reason: "is not a ZooKeeper node version"}
	}
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	path := r.rulePath(key)
	return r.ruleCall(ctx, "delete the rule of "+key.String(), func() error {
		if _, err := r.session(); err != nil {
			return err
		}
		if rev <= 0 {
			exists, _, err := r.conn.Exists(path)
			if err == nil && exists {
				return registry.RuleChangedError(key)
			}
			return err
		}
		err := r.conn.Delete(path, int32(rev-1))
		switch {
		case errors.Is(err, zk.ErrNoNode):
			return nil // nothing to delete
		case errors.Is(err, zk.ErrBadVersion):
			return registry.RuleChangedError(key)
		}
		return err
	})
}

// Rules lists the keys with a rule node, sorted; it reads the children of
// the base node and asks about the rule node of each. See
// registry.RuleStore.
func (r *Registry) Rules(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	var keys []registry.ServiceKey
	err := r.ruleCall(ctx, "list the rules", func() error {
		k, err := r.listRules()
		if err == nil {
			keys = k
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

func (r *Registry) listRules() ([]registry.ServiceKey, error) {
	return r.listKeys(func(key registry.ServiceKey) (bool, error) {
		ok, _, err := r.conn.Exists(r.rulePath(key))
		return ok, err
	})
}

// WatchRule follows the rule node of key: a goroutine reads it with a data
// watch (GetW), or an exists watch (ExistsW) while it is missing, and reads
// it again and re-arms the watch after every event, after a reconnection
// and in a new session. The first Next returns the document of the first
// read, normally at once. While the servers cannot be reached the watch
// keeps its document and retries with backoff: an outage never shows as a
// deletion. It lives until Stop, Close or the end of ctx.
func (r *Registry) WatchRule(ctx context.Context, key registry.ServiceKey) (registry.RuleWatcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	w := &ruleWatcher{
		DocFeed: registry.NewDocFeed(ctx),
		r:       r,
		key:     key,
		path:    r.rulePath(key),
		kick:    make(chan struct{}, 1),
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	r.ruleWatchers[w] = struct{}{}
	r.wg.Add(1)
	go w.run()
	r.mu.Unlock()
	return w, nil
}

// ruleWatcher implements registry.RuleWatcher with a registry.DocFeed, to
// which its goroutine (run) publishes the document.
type ruleWatcher struct {
	*registry.DocFeed
	r    *Registry
	key  registry.ServiceKey
	path string
	kick chan struct{} // 1-buffered: read again (a new session, a reconnection)
}

// resync asks the watch to read the node again and re-arm its watch.
func (w *ruleWatcher) resync() { signal(w.kick) }

func (w *ruleWatcher) run() {
	r := w.r
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.ruleWatchers, w)
		r.mu.Unlock()
	}()
	b := backoff{min: r.cfg.minRetry, max: r.cfg.maxRetry}
	failing := false
	var (
		events <-chan zk.Event // of the armed watch; nil when none
		retry  <-chan time.Time
		timer  *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	read := true
	for {
		if read {
			if timer != nil {
				timer.Stop()
				timer, retry = nil, nil
			}
			ch, err := w.read()
			if err != nil {
				if r.ctx.Err() != nil {
					w.End(registry.ErrClosed)
					return
				}
				if !failing && !connectionError(err) {
					r.log.Warn("zookeeper: reading a rule for its watch failed; keeping the last document and retrying",
						"servers", r.servers, "rule", w.key.String(), "error", r.explain(err))
				}
				failing = true
				events = nil
				timer = time.NewTimer(b.next())
				retry = timer.C
			} else {
				if failing {
					r.log.Debug("zookeeper: the rule watch reads the servers again", "servers", r.servers, "rule", w.key.String())
				}
				failing = false
				b.reset()
				events = ch
			}
			read = false
		}
		select {
		case <-w.Done(): // Stop, Close or the end of the WatchRule context
			return
		case <-r.ctx.Done():
			w.End(registry.ErrClosed)
			return
		case <-w.kick:
			read = true
		case <-retry:
			read = true
		case <-events:
			// The node changed, or the watch was lost (session expired,
			// client closing): read again and re-arm.
			read = true
		}
	}
}

// read reads the node with a watch, publishes its document (nil if it
// does not exist) and returns the channel of the watch it armed.
func (w *ruleWatcher) read() (<-chan zk.Event, error) {
	r := w.r
	for range 8 {
		if _, err := r.session(); err != nil {
			return nil, err
		}
		data, _, ch, err := r.conn.GetW(w.path)
		if err == nil {
			w.Publish(registry.RuleDoc(data))
			return ch, nil
		}
		if !errors.Is(err, zk.ErrNoNode) {
			return nil, err
		}
		ok, _, ch, err := r.conn.ExistsW(w.path)
		if err != nil {
			return nil, err
		}
		if !ok {
			w.Publish(nil)
			return ch, nil
		}
		// Created meanwhile: read it (the exists watch fires once, harmlessly).
	}
	return nil, errors.New("zookeeper: the rule node keeps changing")
}
