package rule

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/storks-rpc/storks/registry"
)

// Store returns r's rule store, or an error saying that r keeps no rules
// (direct:// and static:// address lists, for example).
func Store(r registry.Registry) (registry.RuleStore, error) {
	if s, ok := r.(registry.RuleStore); ok {
		return s, nil
	}
	return nil, fmt.Errorf("this registry (%T) cannot store rules; use etcd, consul, zookeeper or inproc", r)
}

// Load reads and parses the rule document of key. A key without a
// document yields an empty Set (Version FormatVersion, no rules).
func Load(ctx context.Context, s registry.RuleStore, key registry.ServiceKey) (*Set, error) {
	doc, err := s.GetRule(ctx, key)
	if errors.Is(err, registry.ErrNoRule) {
		return &Set{Version: FormatVersion}, nil
	}
	if err != nil {
		return nil, err
	}
	set, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("the stored rules of %s are invalid: %w", key, err)
	}
	return set, nil
}

// Save validates set and stores it as the rule document of key; an empty
// set deletes the document, which reverts every rule.
func Save(ctx context.Context, s registry.RuleStore, key registry.ServiceKey, set *Set) error {
	if err := key.Validate(); err != nil {
		return err
	}
	if key.IsConsumer() {
		return &registry.InputError{Field: "service", Value: key.Service, Reason: "is a consumer key; rules belong to the provider's key"}
	}
	if set.Version == 0 {
		set.Version = FormatVersion
	}
	doc, err := set.Marshal()
	if err != nil {
		return err
	}
	if set.Empty() {
		return s.DeleteRule(ctx, key)
	}
	return s.PutRule(ctx, key, doc)
}

// Update loads the rules of key, lets edit change them and saves the
// result. It is a read-modify-write without a lock: two writers editing
// the same key at the same moment can lose one edit (the last write
// wins), as with any `get`, edit, `set`.
func Update(ctx context.Context, s registry.RuleStore, key registry.ServiceKey, edit func(*Set) error) (*Set, error) {
	set, err := Load(ctx, s, key)
	if err != nil {
		return nil, err
	}
	if err := edit(set); err != nil {
		return nil, err
	}
	if err := Save(ctx, s, key, set); err != nil {
		return nil, err
	}
	return set, nil
}

// Edit applies f to the override whose match is exactly m, appending one
// if there is none, and drops the override if f leaves it changing
// nothing. It is how the shortcuts (Disable, SetWeight...) change one
// provider without touching the other rules.
func (s *Set) Edit(m Match, f func(*Override)) {
	i := s.find(m)
	if i < 0 {
		s.Overrides = append(s.Overrides, Override{Match: m})
		i = len(s.Overrides) - 1
	}
	f(&s.Overrides[i])
	if o := s.Overrides[i]; o.Weight == nil && o.Disabled == nil && o.Tag == nil {
		s.Overrides = append(s.Overrides[:i], s.Overrides[i+1:]...)
	}
}

func (s *Set) find(m Match) int {
	for i, o := range s.Overrides {
		if o.Match.ID == m.ID && o.Match.Addr == m.Addr && maps.Equal(o.Match.Metadata, m.Metadata) {
			return i
		}
	}
	return -1
}

// Disable takes the providers m selects out of rotation.
func (s *Set) Disable(m Match) {
	s.Edit(m, func(o *Override) { o.Disabled = ptr(true) })
}

// Enable reverts Disable(m). If another override (with another match)
// still disables providers, it records an explicit enable for m instead,
// so that m's providers are back either way.
func (s *Set) Enable(m Match) {
	s.Edit(m, func(o *Override) { o.Disabled = nil })
	for _, o := range s.Overrides {
		if o.Disabled != nil && *o.Disabled {
			s.Edit(m, func(o *Override) { o.Disabled = ptr(false) })
			return
		}
	}
}

// SetWeight gives the providers m selects weight w; a negative w removes
// the weight override (the registered weight applies again).
func (s *Set) SetWeight(m Match, w int) {
	s.Edit(m, func(o *Override) {
		if w < 0 {
			o.Weight = nil
		} else {
			o.Weight = ptr(w)
		}
	})
}

// SetTag gives the providers m selects routing tag tag ("" removes their
// tag).
func (s *Set) SetTag(m Match, tag string) {
	s.Edit(m, func(o *Override) { o.Tag = ptr(tag) })
}

// ClearTag removes the tag override of m: the providers' registered tag
// applies again.
func (s *Set) ClearTag(m Match) {
	s.Edit(m, func(o *Override) { o.Tag = nil })
}

func ptr[T any](v T) *T { return &v }
