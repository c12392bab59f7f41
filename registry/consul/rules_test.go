package consul

import (
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/registry"
)

func TestRuleKVKeys(t *testing.T) {
	keys := []registry.ServiceKey{
		{Service: "a.B"},
		{Service: "a.B", Version: "1.0"},
		{Service: "a.B", Group: "blue"},
		{Service: "a.B", Version: "1.0", Group: "blue"},
		{Service: "a.B@consumers", Version: "v=%2F", Group: "g?#"},
	}
	seen := map[string]bool{}
	for _, k := range keys {
		kv := RuleKVKey(k)
		if seen[kv] {
			t.Errorf("two keys share the KV key %q", kv)
		}
		seen[kv] = true
		got, ok := parseRuleKVKey(kv)
		if !ok || got != k {
			t.Errorf("parseRuleKVKey(%q) = %v, %v; want %v", kv, got, ok, k)
		}
	}
	if got := RuleKVKey(keys[0]); got != "storks/rules/a.B/v=/g=" {
		t.Errorf("RuleKVKey(%v) = %q", keys[0], got)
	}
	for _, bad := range []string{"storks/rules/a", "storks/rules/a/v=", "storks/rules/a/g=/v=", "storks/rules//v=/g=", "storks/rules/a/v=/g=/x", "storks/rules/a%2/v=/g="} {
		if k, ok := parseRuleKVKey(bad); ok {
			t.Errorf("parseRuleKVKey(%q) = %v; want no key", bad, k)
		}
	}
}

// TestDecodePortZero: a service entry with port 0 is a consumer record of
// a consumer key, and no instance of a provider key.
func TestDecodePortZero(t *testing.T) {
	key := registry.ServiceKey{Service: "s", Version: "1"}
	ck := registry.ConsumerKey(key)
	for _, k := range []registry.ServiceKey{key, ck} {
		in := registry.Instance{Key: k, ID: "c1", Addr: "10.0.0.5:0"}
		meta, err := encodeMeta(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := decodeService(&api.AgentService{ID: "x", Address: "10.0.0.5", Port: 0, Meta: meta}, k)
		switch {
		case k.IsConsumer() && (err != nil || out.Addr != "10.0.0.5:0"):
			t.Errorf("decodeService of a consumer record with port 0 = %v, %v", out, err)
		case !k.IsConsumer() && err == nil:
			t.Errorf("decodeService of a provider with port 0 = %v; want an error", out)
		}
	}
}
