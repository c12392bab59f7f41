package registry

import (
	"bytes"
	"context"
)

// The in-process registry keeps rule documents in memory, shared by every
// handle of the registry, like its instances; see [RuleStore].

var _ RuleStore = (*Inproc)(nil)

// GetRule returns the rule document of key; see [RuleStore].
func (r *Inproc) GetRule(ctx context.Context, key ServiceKey) ([]byte, error) {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	r.st.mu.Lock()
	doc, ok := r.st.rules[key]
	r.st.mu.Unlock()
	if !ok {
		return nil, ErrNoRule
	}
	return bytes.Clone(doc), nil
}

// PutRule stores the rule document of key; see [RuleStore].
func (r *Inproc) PutRule(ctx context.Context, key ServiceKey, doc []byte) error {
	err := key.Validate()
	if err == nil {
		err = ValidateRuleDoc(doc)
	}
	if err := Check(ctx, r.isClosed(), err); err != nil {
		return err
	}
	r.setRule(key, bytes.Clone(doc))
	return nil
}

// DeleteRule removes the rule document of key; see [RuleStore].
func (r *Inproc) DeleteRule(ctx context.Context, key ServiceKey) error {
	if err := Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return err
	}
	r.setRule(key, nil)
	return nil
}

func (r *Inproc) setRule(key ServiceKey, doc []byte) {
	st := r.st
	st.mu.Lock()
	if doc == nil {
		delete(st.rules, key)
	} else {
		st.rules[key] = doc
	}
	feeds := make([]*DocFeed, 0, len(st.ruleWatchers[key]))
	for f := range st.ruleWatchers[key] {
		feeds = append(feeds, f)
	}
	st.mu.Unlock()
	for _, f := range feeds {
		f.Publish(doc)
	}
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
