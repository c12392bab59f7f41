package rule_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

func TestParseNamesTheBadField(t *testing.T) {
	for _, tc := range []struct{ doc, field, reason string }{
		{``, "", "empty"},
		{`{}`, "version", "missing"},
		{`{"version":2}`, "version", "not supported"},
		{`{"version":1,"wieght":3}`, "wieght", "unknown field"},
		{`{"version":1,"overrides":[{"match":{"addr":"h:1"},"wieght":3}]}`, "wieght", "unknown field"},
		{`{"version":1,"overrides":[{"match":{},"weight":3}]}`, "overrides[0].match", "must set id, addr or metadata"},
		{`{"version":1,"overrides":[{"match":{"addr":"nohost"},"weight":3}]}`, "overrides[0].match.addr", "not host:port"},
		{`{"version":1,"overrides":[{"match":{"id":"a"}},{"match":{"id":"b"},"weight":-1}]}`, "overrides[0]", "changes nothing"},
		{`{"version":1,"overrides":[{"match":{"id":"b"},"weight":-1}]}`, "overrides[0].weight", "outside 0..1000000"},
		{`{"version":1,"overrides":[{"match":{"id":"b"},"weight":"x"}]}`, "overrides.weight", "want a number"},
		{`{"version":1,"overrides":[{"match":{"id":"b"},"tag":"a b"}]}`, "overrides[0].tag", "letters, digits"},
		{`{"version":1,"policy":{"timeout":"fast"}}`, "", "not a duration"},
		{`{"version":1,"policy":{"timeout":"-5ms"}}`, "policy.timeout", "outside"},
		{`{"version":1,"policy":{}}`, "policy", "sets nothing"},
		{`{"version":1,"methods":{"SayHello":{"failMode":"failover(99)"}}}`, `methods["SayHello"].failMode`, "0 to 10"},
		{`{"version":1,"methods":{"a/b":{"timeout":"1s"}}}`, `methods["a/b"]`, "not a method name"},
		{`{"version":1,"policy":{"failMode":"retry"}}`, "policy.failMode", "not a fail mode"},
		{`{"version":1} {}`, "", "trailing data"},
		{`{"version":1,`, "", "unexpected EOF"},
	} {
		_, err := rule.Parse([]byte(tc.doc))
		var re *rule.Error
		if !errors.As(err, &re) {
			t.Errorf("Parse(%s) = %v, want a *rule.Error", tc.doc, err)
			continue
		}
		if re.Field != tc.field || !strings.Contains(re.Reason, tc.reason) {
			t.Errorf("Parse(%s): field %q reason %q, want field %q reason containing %q", tc.doc, re.Field, re.Reason, tc.field, tc.reason)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	doc := `{
	  "version": 1,
	  "overrides": [
	    {"match": {"addr": "10.0.0.7:9000"}, "disabled": true},
	    {"match": {"metadata": {"zone": "b"}}, "weight": 800},
	    {"match": {"id": "greeter-3"}, "tag": "canary"}
	  ],
	  "policy": {"timeout": "300ms", "failMode": "failover(2)"},
	  "methods": {"SayHello": {"timeout": "50ms"}},
	  "tagRouting": {"fallback": true, "untaggedToTagged": false}
	}`
	set, err := rule.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := set.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := rule.Parse(out)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", out, err)
	}
	p, ok := again.PolicyFor("SayHello")
	if !ok || time.Duration(p.Timeout) != 50*time.Millisecond || p.FailMode != "failover(2)" {
		t.Fatalf("PolicyFor(SayHello) = %+v", p)
	}
	if p, _ := again.PolicyFor("Other"); time.Duration(p.Timeout) != 300*time.Millisecond {
		t.Fatalf("PolicyFor(Other) = %+v", p)
	}
}

func TestApply(t *testing.T) {
	key := registry.ServiceKey{Service: "s.S"}
	list := []registry.Instance{
		{Key: key, ID: "a", Addr: "10.0.0.1:1", Weight: 100, Metadata: map[string]string{"zone": "a"}},
		{Key: key, ID: "b", Addr: "10.0.0.2:1", Weight: 100, Metadata: map[string]string{"zone": "b", "tag": "old"}},
		{Key: key, ID: "c", Addr: "10.0.0.3:1", Weight: 100},
	}
	var set rule.Set
	if out, n := set.Apply(list); &out[0] != &list[0] || n != 0 {
		t.Fatal("an empty set copied the list")
	}
	set.Disable(rule.Match{Addr: "10.0.0.1:1"})
	set.SetWeight(rule.Match{Metadata: map[string]string{"zone": "b"}}, 7)
	set.SetTag(rule.Match{ID: "b"}, "")
	set.SetTag(rule.Match{ID: "c"}, "canary")
	out, n := set.Apply(list)
	if n != 1 || len(out) != 2 || out[0].ID != "b" || out[0].Weight != 7 || out[0].Metadata["tag"] != "" || out[1].Metadata["tag"] != "canary" {
		t.Fatalf("Apply: %d disabled, %+v", n, out)
	}
	if list[1].Metadata["tag"] != "old" || list[2].Metadata != nil || list[1].Weight != 100 {
		t.Fatalf("Apply modified its input: %+v", list)
	}
	// A later override wins; an explicit enable beats an earlier disable.
	set = rule.Set{}
	set.Disable(rule.Match{Metadata: map[string]string{"zone": "a"}})
	set.Enable(rule.Match{ID: "a"})
	if out, n := set.Apply(list); n != 0 || len(out) != 3 {
		t.Fatalf("enable after a broader disable: %d disabled, %d left", n, len(out))
	}
	// Enabling what was disabled by the same match removes the override.
	set = rule.Set{}
	set.Disable(rule.Match{ID: "a"})
	set.Enable(rule.Match{ID: "a"})
	if !set.Empty() {
		t.Fatalf("disable then enable left %+v", set.Overrides)
	}
	// An IPv6 address matches in any spelling.
	if !(rule.Match{Addr: "[::1]:80"}).Matches(registry.Instance{Addr: "[0:0::1]:80"}) {
		t.Fatal("[::1]:80 did not match [0:0::1]:80")
	}
}

func TestSaveRejectsBadRulesAndEmptyDeletes(t *testing.T) {
	reg := registry.NewInproc()
	defer reg.Close()
	key := registry.ServiceKey{Service: "s.S", Version: "v1"}
	ctx := t.Context()
	bad := &rule.Set{Overrides: []rule.Override{{Match: rule.Match{}, Disabled: new(bool)}}}
	if err := rule.Save(ctx, reg, key, bad); err == nil || !strings.Contains(err.Error(), "overrides[0].match") {
		t.Fatalf("Save of a bad rule: %v", err)
	}
	if _, err := reg.GetRule(ctx, key); !errors.Is(err, registry.ErrNoRule) {
		t.Fatalf("a rejected rule was stored: %v", err)
	}
	set, err := rule.Update(ctx, reg, key, func(s *rule.Set) error { s.SetWeight(rule.Match{ID: "x"}, 5); return nil })
	if err != nil || len(set.Overrides) != 1 {
		t.Fatalf("Update: %v %+v", err, set)
	}
	if _, err := reg.GetRule(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := rule.Update(ctx, reg, key, func(s *rule.Set) error { s.SetWeight(rule.Match{ID: "x"}, -1); return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.GetRule(ctx, key); !errors.Is(err, registry.ErrNoRule) {
		t.Fatalf("an empty set was stored instead of deleted: %v", err)
	}
	if err := rule.Save(ctx, reg, registry.ConsumerKey(key), &rule.Set{}); err == nil {
		t.Fatal("Save accepted a consumer key")
	}
}

func TestParseFailMode(t *testing.T) {
	for s, want := range map[string]rule.FailMode{
		"failfast":         {Kind: "failfast"},
		"failover":         {Kind: "failover", Retries: 2},
		"failover(0)":      {Kind: "failover"},
		"failtry":          {Kind: "failtry", Retries: 1},
		"failbackup(20ms)": {Kind: "failbackup", Delay: 20 * time.Millisecond},
	} {
		got, err := rule.ParseFailMode(s)
		if err != nil || got != want {
			t.Errorf("ParseFailMode(%q) = %+v, %v", s, got, err)
		}
	}
	for _, s := range []string{"failbackup", "failbackup(0s)", "failfast(1)", "failover(2", "x"} {
		if _, err := rule.ParseFailMode(s); err == nil {
			t.Errorf("ParseFailMode(%q) accepted", s)
		}
	}
}

func TestSummary(t *testing.T) {
	w := 5
	for _, c := range []struct {
		set  rule.Set
		want string
	}{
		{rule.Set{}, "none"},
		{rule.Set{Overrides: []rule.Override{{Match: rule.Match{ID: "a"}, Weight: &w}}}, "1 override"},
		{rule.Set{
			Overrides:  []rule.Override{{Match: rule.Match{ID: "a"}}, {Match: rule.Match{ID: "b"}}},
			Policy:     &rule.Policy{},
			Methods:    map[string]rule.Policy{"A": {}, "B": {}},
			TagRouting: &rule.TagRouting{},
		}, "2 overrides, service policy, 2 method policies, tag routing"},
		{rule.Set{Methods: map[string]rule.Policy{"A": {}}}, "1 method policy"},
	} {
		if got := c.set.Summary(); got != c.want {
			t.Errorf("Summary of %+v = %q, want %q", c.set, got, c.want)
		}
	}
}
