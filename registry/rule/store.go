package rule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/storks-rpc/storks/internal/ctxutil"
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
	return parseStored(key, doc, err)
}

// parseStored parses the stored document doc of key, read with err.
func parseStored(key registry.ServiceKey, doc []byte, err error) (*Set, error) {
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
// set deletes the document, which reverts every rule. It replaces
// whatever is stored: to change the rules, use Update.
func Save(ctx context.Context, s registry.RuleStore, key registry.ServiceKey, set *Set) error {
	doc, err := encode(key, set)
	if err != nil {
		return err
	}
	if doc == nil {
		return s.DeleteRule(ctx, key)
	}
	return s.PutRule(ctx, key, doc)
}

// SaveIf is Save made conditional: it stores set (or deletes the document,
// if set is empty) only if the document of key is still at revision rev,
// as read with GetRuleRevision (0: there was none), and otherwise returns
// an error wrapping registry.ErrRuleChanged and changes nothing. It is for
// a whole document edited by a person (the console's editor), who must be
// told rather than overwrite somebody else's change.
func SaveIf(ctx context.Context, s registry.RuleRevisions, key registry.ServiceKey, set *Set, rev int64) error {
	doc, err := encode(key, set)
	if err != nil {
		return err
	}
	if doc == nil {
		return s.DeleteRuleIf(ctx, key, rev)
	}
	return s.PutRuleIf(ctx, key, doc, rev)
}

// encode validates set as the rules of key and returns its document, nil
// if the set is empty (the document is to be deleted).
func encode(key registry.ServiceKey, set *Set) ([]byte, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	if key.IsConsumer() {
		return nil, &registry.InputError{Field: "service", Value: key.Service, Reason: "is a consumer key; rules belong to the provider's key"}
	}
	if set.Version == 0 {
		set.Version = FormatVersion
	}
	doc, err := set.Marshal()
	if err != nil || set.Empty() {
		return nil, err
	}
	return doc, nil
}

// MaxUpdateAttempts bounds how many times Update reads, edits and tries
// to write the rules of a key that other writers keep changing.
const MaxUpdateAttempts = 16

// Update loads the rules of key, lets edit change them and saves the
// result, and returns it.
//
// On a store with revisions (registry.RuleRevisions: etcd, Consul,
// ZooKeeper, inproc) the write is conditional: if somebody else changed
// the rules between the read and the write, Update reads them again and
// calls edit again on what is now stored, so that two operators editing
// one key at once (one disables a provider, the other weights another)
// both get their change; after MaxUpdateAttempts lost races it returns
// an error wrapping registry.ErrRuleChanged. edit may therefore be called
// more than once, each time with a fresh Set: it must depend only on
// that Set. On other stores the read-modify-write is not atomic and the
// last writer wins.
func Update(ctx context.Context, s registry.RuleStore, key registry.ServiceKey, edit func(*Set) error) (*Set, error) {
	rr, ok := s.(registry.RuleRevisions)
	if !ok {
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
	var err error
	for attempt := range MaxUpdateAttempts {
		if attempt > 0 {
			// Let the writer that won finish before reading again,
			// with jitter so that losers do not collide again.
			if !ctxutil.Sleep(ctx, time.Duration(attempt)*time.Millisecond+time.Duration(rand.Int64N(int64(5*time.Millisecond)))) {
				return nil, ctx.Err()
			}
		}
		var set *Set
		var rev int64
		var doc []byte
		doc, rev, err = rr.GetRuleRevision(ctx, key)
		if set, err = parseStored(key, doc, err); err != nil {
			return nil, err
		}
		if err := edit(set); err != nil {
			return nil, err
		}
		if doc, err = encode(key, set); err != nil {
			return nil, err
		}
		if doc == nil {
			err = rr.DeleteRuleIf(ctx, key, rev)
		} else {
			err = rr.PutRuleIf(ctx, key, doc, rev)
		}
		if !errors.Is(err, registry.ErrRuleChanged) {
			if err != nil {
				return nil, err
			}
			return set, nil
		}
	}
	return nil, fmt.Errorf("the rules of %s changed under each of %d attempts to update them: %w", key, MaxUpdateAttempts, err)
}

// The provider actions of ProviderAction.
const (
	ActionDisable  = "disable"  // no new calls
	ActionEnable   = "enable"   // back into rotation
	ActionWeight   = "weight"   // value: the weight, or "default" for the registered one
	ActionTag      = "tag"      // value: the tag
	ActionUntag    = "untag"    // no tag, whatever the provider registered
	ActionClearTag = "cleartag" // the rule's tag removed: the registered one applies again
)

// ProviderAction returns the edit that a shortcut on one provider makes to
// the rules of a service key (`storks provider ACTION`, the console's
// buttons), applied to the override that matches the provider, and what
// it does in words ("disabled", "weighted 800"). value is the weight or
// the tag for the actions that take one. An unknown action, a weight that
// is not 0 to MaxWeight or "default", or an invalid tag is an error that
// says so.
func ProviderAction(action, value string) (edit func(*Set, Match), did string, err error) {
	switch action {
	case ActionDisable:
		return (*Set).Disable, "disabled", nil
	case ActionEnable:
		return (*Set).Enable, "enabled", nil
	case ActionWeight:
		if value == "default" {
			return func(s *Set, m Match) { s.SetWeight(m, -1) }, "given back its registered weight", nil
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > MaxWeight {
			return nil, "", fmt.Errorf("weight %q is not a number from 0 to %d (or \"default\")", value, MaxWeight)
		}
		return func(s *Set, m Match) { s.SetWeight(m, n) }, "weighted " + value, nil
	case ActionTag:
		if err := ValidateTag(value); err != nil {
			return nil, "", fmt.Errorf("TAG %v", err)
		}
		return func(s *Set, m Match) { s.SetTag(m, value) }, "tagged " + value, nil
	case ActionUntag:
		return func(s *Set, m Match) { s.SetTag(m, "") }, "untagged", nil
	case ActionClearTag:
		return (*Set).ClearTag, "given back its registered tag", nil
	}
	return nil, "", fmt.Errorf("unknown action %q (want disable, enable, weight, tag, untag or cleartag)", action)
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
