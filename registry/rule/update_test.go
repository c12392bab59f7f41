package rule_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// onlyRuleStore hides the RuleRevisions of the store it wraps.
type onlyRuleStore struct{ registry.RuleStore }

// TestUpdateKeepsAConcurrentEdit: operator A disables one provider while,
// between A's read and A's write, operator B weights another. With
// revisions both changes are kept (A's edit runs again on B's result);
// without them, B's is lost, as documented.
func TestUpdateKeepsAConcurrentEdit(t *testing.T) {
	ctx := context.Background()
	key := registry.ServiceKey{Service: "helloworld.Greeter"}
	a, b := rule.Match{Addr: "10.0.0.1:8080"}, rule.Match{Addr: "10.0.0.2:8080"}
	run := func(t *testing.T, store registry.RuleStore) (*rule.Set, int) {
		calls := 0
		set, err := rule.Update(ctx, store, key, func(s *rule.Set) error {
			calls++
			if calls == 1 { // B writes between A's read and A's write
				if _, err := rule.Update(ctx, store, key, func(s *rule.Set) error { s.SetWeight(b, 800); return nil }); err != nil {
					t.Fatal(err)
				}
			}
			s.Disable(a)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		stored, err := rule.Load(ctx, store, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.Overrides) != len(set.Overrides) {
			t.Fatalf("Update returned %d overrides, the store has %d", len(set.Overrides), len(stored.Overrides))
		}
		return stored, calls
	}
	find := func(s *rule.Set, m rule.Match) *rule.Override {
		for i := range s.Overrides {
			if s.Overrides[i].Match.Addr == m.Addr && s.Overrides[i].Match.ID == m.ID {
				return &s.Overrides[i]
			}
		}
		return nil
	}

	t.Run("revisions", func(t *testing.T) {
		set, calls := run(t, registry.NewInproc())
		if calls != 2 {
			t.Errorf("A's edit ran %d times, want 2 (once more after B's write)", calls)
		}
		if o := find(set, a); o == nil || o.Disabled == nil || !*o.Disabled {
			t.Errorf("A's change is lost: %+v", set.Overrides)
		}
		if o := find(set, b); o == nil || o.Weight == nil || *o.Weight != 800 {
			t.Errorf("B's change is lost: %+v", set.Overrides)
		}
	})
	t.Run("no revisions", func(t *testing.T) {
		set, calls := run(t, onlyRuleStore{registry.NewInproc()})
		if calls != 1 || find(set, b) != nil || find(set, a) == nil {
			t.Errorf("without revisions the last writer should win (edit once, B's change overwritten): %d calls, %+v", calls, set.Overrides)
		}
	})
}

// TestUpdateGivesUp: rules that change under every attempt make Update
// fail with ErrRuleChanged after MaxUpdateAttempts, writing nothing of
// its own.
func TestUpdateGivesUp(t *testing.T) {
	ctx := context.Background()
	store := registry.NewInproc()
	key := registry.ServiceKey{Service: "helloworld.Greeter"}
	calls := 0
	_, err := rule.Update(ctx, store, key, func(s *rule.Set) error {
		calls++
		if _, err := rule.Update(ctx, store, key, func(s *rule.Set) error { s.SetWeight(rule.Match{ID: "other"}, 100+calls); return nil }); err != nil {
			t.Fatal(err)
		}
		s.Disable(rule.Match{ID: "mine"})
		return nil
	})
	if !errors.Is(err, registry.ErrRuleChanged) || calls != rule.MaxUpdateAttempts {
		t.Fatalf("Update under constant change: %v after %d edits; want ErrRuleChanged after %d", err, calls, rule.MaxUpdateAttempts)
	}
	set, err := rule.Load(ctx, store, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Overrides) != 1 || set.Overrides[0].Match.ID != "other" {
		t.Fatalf("stored rules %+v; want only the other writer's", set.Overrides)
	}
}

func TestProviderAction(t *testing.T) {
	m := rule.Match{Addr: "10.0.0.1:8080"}
	for _, c := range []struct {
		action, value, did string
		check              func(o *rule.Override) bool
	}{
		{"disable", "", "disabled", func(o *rule.Override) bool { return o != nil && o.Disabled != nil && *o.Disabled }},
		{"weight", "800", "weighted 800", func(o *rule.Override) bool { return o != nil && o.Weight != nil && *o.Weight == 800 }},
		{"tag", "canary", "tagged canary", func(o *rule.Override) bool { return o != nil && o.Tag != nil && *o.Tag == "canary" }},
		{"untag", "", "untagged", func(o *rule.Override) bool { return o != nil && o.Tag != nil && *o.Tag == "" }},
	} {
		edit, did, err := rule.ProviderAction(c.action, c.value)
		if err != nil || did != c.did {
			t.Fatalf("ProviderAction(%q, %q) = %q, %v; want %q", c.action, c.value, did, err, c.did)
		}
		var s rule.Set
		edit(&s, m)
		var o *rule.Override
		if len(s.Overrides) == 1 {
			o = &s.Overrides[0]
		}
		if !c.check(o) {
			t.Errorf("%s %s left %+v", c.action, c.value, s.Overrides)
		}
		// enable, weight default and cleartag undo disable, weight and tag.
		undo := map[string]string{"disable": "enable", "weight": "weight", "tag": "cleartag", "untag": "cleartag"}[c.action]
		back, _, err := rule.ProviderAction(undo, "default")
		if err != nil {
			t.Fatal(err)
		}
		back(&s, m)
		if len(s.Overrides) != 0 {
			t.Errorf("%s after %s left %+v", undo, c.action, s.Overrides)
		}
	}
	for _, c := range []struct{ action, value, want string }{
		{"weight", "-1", `weight "-1" is not a number from 0 to 1000000`},
		{"weight", "x", `weight "x" is not a number`},
		{"tag", "no tags!", "TAG "},
		{"explode", "", `unknown action "explode"`},
	} {
		if _, _, err := rule.ProviderAction(c.action, c.value); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ProviderAction(%q, %q): %v; want an error containing %q", c.action, c.value, err, c.want)
		}
	}
}
