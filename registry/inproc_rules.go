package registry

import (
	"bytes"
	"context"
)

// The in-process registry keeps rule documents in memory, shared by every
// handle of the registry, like its instances; see [RuleStore].

var (
	_ RuleStore     = (*Inproc)(nil)
	_ RuleRevisions = (*Inproc)(nil)
)

// GetRule returns the rule document of key; see [RuleStore].
func (r *Inproc) GetRule(ctx context.Context, key ServiceKey) ([]byte, error) {
	doc, _, err := r.GetRuleRevision(ctx, key)
	return doc, err
}

// GetRuleRevision returns the rule document of key and its revision; see
// [RuleRevisions].
func (r *Inproc) GetRuleRevision(ctx context.Context, key ServiceKey) ([]byte, int64, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, 0, err
	}
	r.st.mu.Lock()
	doc, ok := r.st.rules[key]
	rev := r.st.ruleRevs[key]
	r.st.mu.Unlock()
	if !ok {
		return nil, 0, ErrNoRule
	}
	return bytes.Clone(doc), rev, nil
}

// PutRule stores the rule document of key; see [RuleStore].
func (r *Inproc) PutRule(ctx context.Context, key ServiceKey, doc []byte) error {
	return r.putRule(ctx, key, doc, -1)
}

// PutRuleIf stores the rule document of key if it is still at rev; see
// [RuleRevisions].
func (r *Inproc) PutRuleIf(ctx context.Context, key ServiceKey, doc []byte, rev int64) error {
	return r.putRule(ctx, key, doc, max(rev, 0))
}

func (r *Inproc) putRule(ctx context.Context, key ServiceKey, doc []byte, rev int64) error {
	err := key.Validate()
	if err == nil {
		err = ValidateRuleDoc(doc)
	}
	if err := Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	return r.setRule(key, bytes.Clone(doc), rev)
}

// DeleteRule removes the rule document of key; see [RuleStore].
func (r *Inproc) DeleteRule(ctx context.Context, key ServiceKey) error {
	return r.deleteRule(ctx, key, -1)
}

// DeleteRuleIf removes the rule document of key if it is still at rev;
// see [RuleRevisions].
func (r *Inproc) DeleteRuleIf(ctx context.Context, key ServiceKey, rev int64) error {
	return r.deleteRule(ctx, key, max(rev, 0))
}

func (r *Inproc) deleteRule(ctx context.Context, key ServiceKey, rev int64) error {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return err
	}
	return r.setRule(key, nil, rev)
}

// setRule stores doc (nil: deletes) as the rule document of key if its
// revision is rev (-1: whatever it is) and tells the watchers.
func (r *Inproc) setRule(key ServiceKey, doc []byte, rev int64) error {
	st := r.st
	st.mu.Lock()
	if _, ok := st.rules[key]; !ok && doc == nil {
		st.mu.Unlock()
		return nil // nothing to delete, nothing to tell
	}
	if rev >= 0 && st.ruleRevs[key] != rev {
		st.mu.Unlock()
		return RuleChangedError(key)
	}
	if doc == nil {
		delete(st.rules, key)
		delete(st.ruleRevs, key)
	} else {
		st.rules[key] = doc
		st.ruleRev++
		st.ruleRevs[key] = st.ruleRev
	}
	feeds := make([]*DocFeed, 0, len(st.ruleWatchers[key]))
	for f := range st.ruleWatchers[key] {
		feeds = append(feeds, f)
	}
	st.mu.Unlock()
	for _, f := range feeds {
		f.Publish(doc)
	}
	return nil
}

// Rules lists the keys with a rule document; see [RuleStore].
func (r *Inproc) Rules(ctx context.Context) ([]ServiceKey, error) {
	if err := Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	r.st.mu.Lock()
	keys := make([]ServiceKey, 0, len(r.st.rules))
	for k := range r.st.rules {
		keys = append(keys, k)
	}
	r.st.mu.Unlock()
	SortKeys(keys)
	return keys, nil
}

// WatchRule follows the rule document of key; see [RuleStore].
func (r *Inproc) WatchRule(ctx context.Context, key ServiceKey) (RuleWatcher, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	f := NewDocFeed(ctx)
	st := r.st
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		f.End(ErrClosed)
		return nil, ErrClosed
	}
	if r.ruleFeeds == nil {
		r.ruleFeeds = make(map[*DocFeed]struct{})
	}
	r.ruleFeeds[f] = struct{}{}
	st.mu.Lock()
	ws := st.ruleWatchers[key]
	if ws == nil {
		ws = make(map[*DocFeed]struct{})
		st.ruleWatchers[key] = ws
	}
	ws[f] = struct{}{}
	doc, ok := st.rules[key]
	st.mu.Unlock()
	r.mu.Unlock()
	if ok {
		f.Publish(doc)
	} else {
		f.Publish(nil)
	}
	f.OnEnd(func() {
		r.mu.Lock()
		delete(r.ruleFeeds, f)
		r.mu.Unlock()
		st.mu.Lock()
		if ws := st.ruleWatchers[key]; ws != nil {
			delete(ws, f)
			if len(ws) == 0 {
				delete(st.ruleWatchers, key)
			}
		}
		st.mu.Unlock()
	})
	return f, nil
}
