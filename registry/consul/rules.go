package consul

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/registry"
)

// Rule documents (see registry.RuleStore) are entries of Consul's KV store,
// which is persistent and replicated by the servers, apart from the agent's
// services:
//
//	storks/rules/<service>/v=<version>/g=<group>
//
// each part escaped with url.PathEscape, so that an empty version or group
// ("v=", "g=") leaves no empty path segment, which Consul's KV treats as a
// folder. The value is the document as it is.

var _ registry.RuleStore = (*Registry)(nil)

// RulesPrefix is the KV prefix of every rule document. An ACL token needs
// key_prefix "storks/rules/" read (GetRule, Rules, WatchRule) and write
// (PutRule, DeleteRule) permission.
const RulesPrefix = "storks/rules/"

// RuleKVKey returns the Consul KV key of the rule document of key.
func RuleKVKey(key registry.ServiceKey) string {
	return RulesPrefix + url.PathEscape(key.Service) + "/v=" + url.PathEscape(key.Version) + "/g=" + url.PathEscape(key.Group)
}

// parseRuleKVKey returns the service key whose KV key is k.
func parseRuleKVKey(k string) (registry.ServiceKey, bool) {
	rest, ok := strings.CutPrefix(k, RulesPrefix)
	if !ok {
		return registry.ServiceKey{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[1], "v=") || !strings.HasPrefix(parts[2], "g=") {
		return registry.ServiceKey{}, false
	}
	parts[1], parts[2] = parts[1][2:], parts[2][2:]
	var vals [3]string
	for i, p := range parts {
		v, err := url.PathUnescape(p)
		if err != nil {
			return registry.ServiceKey{}, false
		}
		vals[i] = v
	}
	key := registry.ServiceKey{Service: vals[0], Version: vals[1], Group: vals[2]}
	if key.Validate() != nil || RuleKVKey(key) != k {
		return registry.ServiceKey{}, false
	}
	return key, true
}

var _ registry.RuleRevisions = (*Registry)(nil)

// GetRule reads the rule document of key from the KV store; see
// registry.RuleStore.
func (r *Registry) GetRule(ctx context.Context, key registry.ServiceKey) ([]byte, error) {
	doc, _, err := r.GetRuleRevision(ctx, key)
	return doc, err
}

// GetRuleRevision reads the rule document of key and its ModifyIndex from
// the KV store; see registry.RuleRevisions.
func (r *Registry) GetRuleRevision(ctx context.Context, key registry.ServiceKey) ([]byte, int64, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, 0, err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	pair, _, err := r.client.KV().Get(RuleKVKey(key), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, 0, r.callErr(ctx, "reading the rule of "+key.String(), err)
	}
	if pair == nil {
		return nil, 0, registry.ErrNoRule
	}
	return registry.RuleDoc(pair.Value), int64(pair.ModifyIndex), nil
}

// PutRule writes doc as the rule document of key in the KV store; see
// registry.RuleStore.
func (r *Registry) PutRule(ctx context.Context, key registry.ServiceKey, doc []byte) error {
	return r.putRule(ctx, key, doc, -1)
}

// PutRuleIf writes doc as the rule document of key if its ModifyIndex is
// still rev, with a check-and-set write; see registry.RuleRevisions.
func (r *Registry) PutRuleIf(ctx context.Context, key registry.ServiceKey, doc []byte, rev int64) error {
	return r.putRule(ctx, key, doc, max(rev, 0))
}

func (r *Registry) putRule(ctx context.Context, key registry.ServiceKey, doc []byte, rev int64) error {
	err := key.Validate()
	if err == nil {
		err = registry.ValidateRuleDoc(doc)
	}
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	pair := &api.KVPair{Key: RuleKVKey(key), Value: bytes.Clone(doc)}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	if rev < 0 {
		if _, err := r.client.KV().Put(pair, wo); err != nil {
			return r.callErr(ctx, "writing the rule of "+key.String(), err)
		}
		return nil
	}
	// A check-and-set with index 0 writes only if the key does not exist.
	pair.ModifyIndex = uint64(rev)
	ok, _, err := r.client.KV().CAS(pair, wo)
	if err != nil {
		return r.callErr(ctx, "writing the rule of "+key.String(), err)
	}
	if !ok {
		return registry.RuleChangedError(key)
	}
	return nil
}

// DeleteRule deletes the rule document of key from the KV store; see
// registry.RuleStore.
func (r *Registry) DeleteRule(ctx context.Context, key registry.ServiceKey) error {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	if _, err := r.client.KV().Delete(RuleKVKey(key), (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return r.callErr(ctx, "deleting the rule of "+key.String(), err)
	}
	return nil
}

// DeleteRuleIf deletes the rule document of key if its ModifyIndex is
// still rev, with a check-and-set delete (which succeeds when there is no
// key); see registry.RuleRevisions.
func (r *Registry) DeleteRuleIf(ctx context.Context, key registry.ServiceKey, rev int64) error {
	if rev <= 0 {
		// Nothing to delete if there is no document; a document that
		// appeared meanwhile is a change.
		_, _, err := r.GetRuleRevision(ctx, key)
		switch {
		case errors.Is(err, registry.ErrNoRule):
			return nil
		case err != nil:
			return err
		}
		return registry.RuleChangedError(key)
	}
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	ok, _, err := r.client.KV().DeleteCAS(&api.KVPair{Key: RuleKVKey(key), ModifyIndex: uint64(rev)}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return r.callErr(ctx, "deleting the rule of "+key.String(), err)
	}
	if !ok {
		return registry.RuleChangedError(key)
	}
	return nil
}

// Rules lists the keys with a rule document, sorted, from the KV keys
// under RulesPrefix; see registry.RuleStore. Entries there that are not
// rule documents of this adapter are ignored.
func (r *Registry) Rules(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	ctx, done := r.opCtx(ctx)
	defer done()
	names, _, err := r.client.KV().Keys(RulesPrefix, "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, r.callErr(ctx, "listing the rules", err)
	}
	keys := []registry.ServiceKey{}
	for _, n := range names {
		if k, ok := parseRuleKVKey(n); ok {
			keys = append(keys, k)
		}
	}
	registry.SortKeys(keys)
	return keys, nil
}

// WatchRule follows the rule document of key with blocking queries on its
// KV entry, rate-limited like Watch. The first Next returns the document
// of the first successful query (nil if the entry does not exist),
// normally at once. The watch never gives up: while the agent cannot be
// reached (or refuses the query) Next keeps waiting with the last
// document, the loop retries with capped, jittered backoff, logs once when
// it starts failing and once when it recovers, and reads from index 0 again
// after a failure or when the Consul index goes backwards. It lives until
// Stop, Close or the end of ctx.
func (r *Registry) WatchRule(ctx context.Context, key registry.ServiceKey) (registry.RuleWatcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	w := &ruleWatcher{
		DocFeed: registry.NewDocFeed(ctx),
		r:       r,
		key:     key,
		kvKey:   RuleKVKey(key),
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	w.OnEnd(w.cancel)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	r.ruleWatchers[w] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go w.run()
	return w, nil
}

// ruleWatcher implements registry.RuleWatcher with a registry.DocFeed, to
// which its goroutine (run) publishes the document of every successful
// query.
type ruleWatcher struct {
	*registry.DocFeed
	r      *Registry
	key    registry.ServiceKey
	kvKey  string
	ctx    context.Context // ends the query loop: the WatchRule context, Stop or Close
	cancel context.CancelFunc

	queries atomic.Int64 // KV queries made, for tests
}

// run is the rule watch's blocking-query loop (see blockingLoop).
func (w *ruleWatcher) run() {
	r := w.r
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.ruleWatchers, w)
		r.mu.Unlock()
	}()
	var pair *api.KVPair
	l := blockingLoop{
		r: r, ctx: w.ctx, log: r.log.With("rule", w.key.String(), "kv_key", w.kvKey, "agent", r.cfg.Address),
		name: "rule watch", kept: "document", again: "reading the rule again",
		query: func(index uint64) (*api.QueryMeta, error) {
			var meta *api.QueryMeta
			var err error
			pair, meta, err = w.query(index)
			return meta, err
		},
		apply: func(*api.QueryMeta) {
			if pair == nil {
				w.Publish(nil)
			} else {
				w.Publish(registry.RuleDoc(pair.Value))
			}
		},
	}
	l.run()
}

func (w *ruleWatcher) query(index uint64) (*api.KVPair, *api.QueryMeta, error) {
	w.queries.Add(1)
	wait := w.r.cfg.WaitTime
	ctx, cancel := context.WithTimeout(w.ctx, wait+wait/16+w.r.cfg.DialTimeout+5*time.Second)
	defer cancel()
	opts := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	return w.r.client.KV().Get(w.kvKey, opts)
}
