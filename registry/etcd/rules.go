package etcd

import (
	"context"
	"net/url"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/storks-rpc/storks/registry"
)

// Rule documents (see registry.RuleStore) are plain keys without a lease,
// so that they outlive every client:
//
//	BasePath/rules/<service>/<version>/<group>
//
// each part escaped with url.PathEscape, and an empty version or group an
// empty part ("/storks/rules/helloworld.Greeter//"). The value is the
// document as it is.

var _ registry.RuleStore = (*Registry)(nil)

// rulesSegment is the first part, under BasePath, of every rule key.
const rulesSegment = "rules"

// rulesPrefix returns the prefix of every rule key, with its slash.
func rulesPrefix(base string) string { return base + "/" + rulesSegment + "/" }

// ruleKey returns the etcd key of the rule document of key.
func ruleKey(base string, key registry.ServiceKey) string {
	return rulesPrefix(base) + url.PathEscape(key.Service) + "/" + url.PathEscape(key.Version) + "/" + url.PathEscape(key.Group)
}

// parseRuleKey returns the service key whose rule key is etcdKey.
func parseRuleKey(base, etcdKey string) (registry.ServiceKey, bool) {
	rest, ok := strings.CutPrefix(etcdKey, rulesPrefix(base))
	if !ok {
		return registry.ServiceKey{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return registry.ServiceKey{}, false
	}
	var vals [3]string
	for i, p := range parts {
		v, err := url.PathUnescape(p)
		if err != nil {
			return registry.ServiceKey{}, false
		}
		vals[i] = v
	}
	k := registry.ServiceKey{Service: vals[0], Version: vals[1], Group: vals[2]}
	if k.Validate() != nil || ruleKey(base, k) != etcdKey {
		return registry.ServiceKey{}, false
	}
	return k, true
}

// notInstanceKey reports whether etcdKey, found under the instance prefix
// prefix, cannot be an instance key: it has a further '/'. Only the rule
// keys of BasePath/rules/ are such keys, under the prefix of a service
// called "rules".
func notInstanceKey(etcdKey, prefix string) bool {
	return strings.Contains(strings.TrimPrefix(etcdKey, prefix), "/")
}

var _ registry.RuleRevisions = (*Registry)(nil)

// GetRule reads the rule document of key with one linearizable read; see
// registry.RuleStore.
func (r *Registry) GetRule(ctx context.Context, key registry.ServiceKey) ([]byte, error) {
	doc, _, err := r.GetRuleRevision(ctx, key)
	return doc, err
}

// GetRuleRevision reads the rule document of key and its ModRevision with
// one linearizable read; see registry.RuleRevisions.
func (r *Registry) GetRuleRevision(ctx context.Context, key registry.ServiceKey) ([]byte, int64, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, 0, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	err := r.connectErr(ctx)
	var resp *clientv3.GetResponse
	if err == nil {
		resp, err = r.cli.Get(ctx, ruleKey(r.cfg.BasePath, key))
	}
	if err != nil {
		return nil, 0, r.opErr("get the rule of "+key.String(), err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, registry.ErrNoRule
	}
	return registry.RuleDoc(resp.Kvs[0].Value), resp.Kvs[0].ModRevision, nil
}

// PutRule stores doc as the rule document of key, a key without a lease;
// see registry.RuleStore.
func (r *Registry) PutRule(ctx context.Context, key registry.ServiceKey, doc []byte) error {
	return r.writeRule(ctx, key, doc, false, -1)
}

// PutRuleIf stores doc as the rule document of key if its ModRevision is
// still rev, in one transaction; see registry.RuleRevisions.
func (r *Registry) PutRuleIf(ctx context.Context, key registry.ServiceKey, doc []byte, rev int64) error {
	return r.writeRule(ctx, key, doc, false, max(rev, 0))
}

// DeleteRule deletes the rule document of key; see registry.RuleStore.
func (r *Registry) DeleteRule(ctx context.Context, key registry.ServiceKey) error {
	return r.writeRule(ctx, key, nil, true, -1)
}

// DeleteRuleIf deletes the rule document of key if its ModRevision is
// still rev, in one transaction; see registry.RuleRevisions.
func (r *Registry) DeleteRuleIf(ctx context.Context, key registry.ServiceKey, rev int64) error {
	return r.writeRule(ctx, key, nil, true, max(rev, 0))
}

// writeRule puts doc as the rule of key, or deletes it (del); if rev >= 0,
// only if the key's ModRevision is rev (0: the key does not exist), in a
// transaction.
func (r *Registry) writeRule(ctx context.Context, key registry.ServiceKey, doc []byte, del bool, rev int64) error {
	err := key.Validate()
	if err == nil && !del {
		err = registry.ValidateRuleDoc(doc)
	}
	if err := registry.Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	what := "put the rule of " + key.String()
	k := ruleKey(r.cfg.BasePath, key)
	op := clientv3.OpPut(k, string(doc))
	if del {
		what, op = "delete the rule of "+key.String(), clientv3.OpDelete(k)
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	if err := r.connectErr(ctx); err != nil {
		return r.opErr(what, err)
	}
	if rev < 0 {
		if _, err := r.cli.Do(ctx, op); err != nil {
			return r.opErr(what, err)
		}
		return nil
	}
	// ModRevision of a key that does not exist compares as 0. A delete
	// that finds no key has nothing to do: it succeeds.
	resp, err := r.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(op).
		Else(clientv3.OpGet(k, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return r.opErr(what, err)
	}
	if !resp.Succeeded && !(del && resp.Responses[0].GetResponseRange().Count == 0) {
		return registry.RuleChangedError(key)
	}
	return nil
}

// Rules lists the keys with a rule document, sorted, reading only the keys
// under BasePath/rules/; see registry.RuleStore.
func (r *Registry) Rules(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	ctx, cancel := r.opContext(ctx)
	defer cancel()
	err := r.connectErr(ctx)
	var resp *clientv3.GetResponse
	if err == nil {
		resp, err = r.cli.Get(ctx, rulesPrefix(r.cfg.BasePath), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	}
	if err != nil {
		return nil, r.opErr("list rules", err)
	}
	keys := []registry.ServiceKey{}
	for _, kv := range resp.Kvs {
		if k, ok := parseRuleKey(r.cfg.BasePath, string(kv.Key)); ok {
			keys = append(keys, k)
		}
	}
	registry.SortKeys(keys)
	return keys, nil
}

// WatchRule reads the rule document of key and then watches its key from
// the next revision, like Watch: the first document is normally read
// before WatchRule returns, and if the cluster cannot be reached the first
// Next waits for it. The watch never gives up: on any watch error,
// cancellation or compaction it keeps the last document, reads the key
// again with backoff and watches from that read's revision. An outage
// never shows as a deleted document. It lives until Stop, Close or the end
// of ctx.
func (r *Registry) WatchRule(ctx context.Context, key registry.ServiceKey) (registry.RuleWatcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	what := "watch the rule of " + key.String()
	w := &ruleWatcher{
		DocFeed: registry.NewDocFeed(ctx),
		r:       r,
		key:     key,
		etcdKey: ruleKey(r.cfg.BasePath, key),
	}
	lctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	rev, err := w.read(lctx)
	cancel()
	switch {
	case err == nil:
	case ctx.Err() != nil || r.isClosed() || authProblem(r.cfg, err) != "":
		w.End(registry.ErrClosed)
		if ctx.Err() != nil && !r.isClosed() {
			return nil, ctx.Err()
		}
		return nil, r.opErr(what, err)
	default:
		rev = 0 // the run goroutine reads as soon as it can
	}
	w.ctx, w.cancel = context.WithCancel(r.ctx)
	w.loop = &watchLoop{
		r: r, ctx: w.ctx, log: r.log.With("rule", key.String()),
		key:   w.etcdKey,
		read:  w.read,
		apply: w.apply,
		name:  "rule watch", reading: "reading a rule for its watch", kept: "document",
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.cancel()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	r.ruleWatchers[w] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go w.loop.run(rev)
	w.OnEnd(w.unregister)
	return w, nil
}

// ruleWatcher implements registry.RuleWatcher with a registry.DocFeed,
// to which its goroutine (run) publishes the document.
type ruleWatcher struct {
	*registry.DocFeed
	r       *Registry
	key     registry.ServiceKey
	etcdKey string

	ctx    context.Context // the goroutine's; canceled when the feed ends
	cancel context.CancelFunc
	loop   *watchLoop // the goroutine
}

func (w *ruleWatcher) unregister() {
	w.cancel()
	w.r.mu.Lock()
	delete(w.r.ruleWatchers, w)
	w.r.mu.Unlock()
}

// read reads the document, publishes it and returns the revision read.
func (w *ruleWatcher) read(ctx context.Context) (int64, error) {
	if err := w.r.connectErr(ctx); err != nil {
		return 0, err
	}
	resp, err := w.r.cli.Get(ctx, w.etcdKey)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		w.Publish(nil)
	} else {
		w.Publish(registry.RuleDoc(resp.Kvs[0].Value))
	}
	return resp.Header.Revision, nil
}

// apply publishes the document the last event of a watch response leaves.
func (w *ruleWatcher) apply(events []*clientv3.Event) {
	if n := len(events); n > 0 {
		if ev := events[n-1]; ev.Type == clientv3.EventTypePut {
			w.Publish(registry.RuleDoc(ev.Kv.Value))
		} else {
			w.Publish(nil)
		}
	}
}
