package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

const govSvc = "storks.examples.greeter.v1.Greeter"

func storedRules(t *testing.T, reg registry.Registry, key registry.ServiceKey) *rule.Set {
	t.Helper()
	doc, err := reg.(registry.RuleStore).GetRule(context.Background(), key)
	if errors.Is(err, registry.ErrNoRule) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	set, err := rule.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestRuleSetGetLsRm(t *testing.T) {
	u, reg := newInproc(t)
	ctx := context.Background()
	key := registry.ServiceKey{Service: govSvc, Version: "v1"}
	file := filepath.Join(t.TempDir(), "rules.json")
	doc := `{"version": 1, "overrides": [{"match": {"addr": "127.0.0.1:9001"}, "weight": 800}], "methods": {"SayHello": {"timeout": "50ms"}}}`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runInProcess(ctx, "rule", "set", "--registry", u, "--version", "v1", govSvc, "-f", file)
	if r.code != 0 || !strings.Contains(r.stdout, "1 override, 1 method policy") {
		t.Fatalf("rule set -f: %s", r)
	}
	if set := storedRules(t, reg, key); set == nil || *set.Overrides[0].Weight != 800 {
		t.Fatalf("stored %+v", set)
	}
	r = runInProcess(ctx, "rule", "get", "--registry", u, "--version", "v1", govSvc)
	if r.code != 0 || !strings.Contains(r.stdout, `"weight": 800`) {
		t.Fatalf("rule get: %s", r)
	}
	r = runInProcess(ctx, "rule", "ls", "--registry", u)
	if r.code != 0 || !strings.Contains(r.stdout, govSvc) || !strings.Contains(r.stdout, "v1") {
		t.Fatalf("rule ls: %s", r)
	}
	// Flags change part of the document and keep the rest.
	r = runInProcess(ctx, "rule", "set", "--registry", u, "--version", "v1", govSvc, "--fail-mode", "failover(2)", "--tag-fallback=false")
	if r.code != 0 {
		t.Fatalf("rule set flags: %s", r)
	}
	set := storedRules(t, reg, key)
	if set.Policy == nil || set.Policy.FailMode != "failover(2)" || set.TagRouting == nil || set.TagRouting.Fallback || len(set.Overrides) != 1 {
		t.Fatalf("after flags: %+v", set)
	}
	r = runInProcess(ctx, "rule", "rm", "--registry", u, "--version", "v1", govSvc, "--method", "SayHello")
	if r.code != 0 || storedRules(t, reg, key).Methods != nil {
		t.Fatalf("rule rm --method: %s", r)
	}
	r = runInProcess(ctx, "rule", "rm", "--registry", u, "--version", "v1", govSvc)
	if r.code != 0 || storedRules(t, reg, key) != nil {
		t.Fatalf("rule rm: %s", r)
	}
	r = runInProcess(ctx, "rule", "get", "--registry", u, "--version", "v1", govSvc)
	if r.code != 0 || !strings.Contains(r.stderr, "no rules for") {
		t.Fatalf("rule get after rm: %s", r)
	}
}

func TestRuleSetRejectsBadRulesNamingTheField(t *testing.T) {
	u, reg := newInproc(t)
	ctx := context.Background()
	for _, tc := range []struct{ doc, want string }{
		{`{"version": 1, "overrides": [{"match": {"addr": "127.0.0.1:9001"}, "wieght": 8}]}`, `wieght: unknown field`},
		{`{"version": 1, "overrides": [{"match": {}, "weight": 8}]}`, `overrides[0].match: must set id, addr or metadata`},
		{`{"overrides": []}`, `version: missing`},
		{`{"version": 1, "policy": {"failMode": "sometimes"}}`, `policy.failMode: "sometimes" is not a fail mode`},
	} {
		var out, errOut syncBuffer
		code := run(ctx, []string{"rule", "set", "--registry", u, govSvc, "-f", "-"}, strings.NewReader(tc.doc), &out, &errOut)
		r := result{stdout: out.String(), stderr: errOut.String(), code: code}
		checkOneLineError(t, r, 1, tc.want)
	}
	if keys, _ := reg.(registry.RuleStore).Rules(ctx); len(keys) != 0 {
		t.Fatalf("a rejected rule was stored: %v", keys)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rule", "set", "--registry", u, govSvc}, "nothing to set"},
		{[]string{"rule", "set", "--registry", u, govSvc, "--method", "SayHello"}, "--method needs"},
		{[]string{"rule", "set", "--registry", u, govSvc, "--fail-mode", "x"}, "is not a fail mode"},
		{[]string{"rule", "set", "--registry", "direct://127.0.0.1:1", govSvc, "--call-timeout", "1s"}, "cannot store rules"},
		{[]string{"rule", "get", govSvc}, "--registry is required"},
		{[]string{"provider", "disable", "--registry", u, "nohost"}, "is not host:port"},
		{[]string{"provider", "weight", "--registry", u, "127.0.0.1:9", "x3"}, "not a number from 0"},
		{[]string{"provider", "tag", "--registry", u, "127.0.0.1:9", "a b"}, "letters, digits"},
		{[]string{"provider", "disable", "--registry", u, "127.0.0.1:9"}, "no provider at 127.0.0.1:9"},
		{[]string{"provider", "disable", "--registry", u, "--version", "v1", "127.0.0.1:9"}, "need --service"},
	} {
		checkOneLineError(t, runInProcess(ctx, tc.args...), codeOf(tc.want), tc.want)
	}
}

// codeOf is the exit code the tests above expect: 2 for usage errors.
func codeOf(want string) int {
	switch want {
	case "cannot store rules", "no provider at 127.0.0.1:9":
		return 1
	}
	return 2
}

func TestProviderShortcuts(t *testing.T) {
	u, reg := newInproc(t)
	ctx := context.Background()
	mustRegister(t, reg,
		inst(govSvc, "v1", "", "a", "127.0.0.1:9001", nil),
		inst(govSvc, "v2", "", "b", "127.0.0.1:9001", nil),
		inst(govSvc, "v1", "", "c", "127.0.0.1:9002", nil),
	)
	v1 := registry.ServiceKey{Service: govSvc, Version: "v1"}
	v2 := registry.ServiceKey{Service: govSvc, Version: "v2"}
	r := runInProcess(ctx, "provider", "disable", "--registry", u, "127.0.0.1:9001")
	if r.code != 0 || strings.Count(r.stdout, "disabled") != 2 {
		t.Fatalf("disable: %s", r)
	}
	for _, k := range []registry.ServiceKey{v1, v2} {
		if set := storedRules(t, reg, k); set == nil || !*set.Overrides[0].Disabled {
			t.Fatalf("rules of %s after disable: %+v", k, set)
		}
	}
	r = runInProcess(ctx, "provider", "weight", "--registry", u, "--service", govSvc, "--version", "v1", "127.0.0.1:9002", "7")
	if r.code != 0 {
		t.Fatalf("weight: %s", r)
	}
	r = runInProcess(ctx, "provider", "tag", "--registry", u, "--service", govSvc, "--version", "v1", "127.0.0.1:9002", "canary")
	if r.code != 0 {
		t.Fatalf("tag: %s", r)
	}
	eff, disabled := storedRules(t, reg, v1).Apply(mustDiscover(t, reg, v1))
	if disabled != 1 || len(eff) != 1 || eff[0].Weight != 7 || eff[0].Metadata["tag"] != "canary" {
		t.Fatalf("effective v1 list: %d disabled, %+v", disabled, eff)
	}
	runInProcess(ctx, "provider", "enable", "--registry", u, "127.0.0.1:9001")
	runInProcess(ctx, "provider", "weight", "--registry", u, "--service", govSvc, "--version", "v1", "127.0.0.1:9002", "default")
	r = runInProcess(ctx, "provider", "untag", "--registry", u, "--service", govSvc, "--version", "v1", "--registered", "127.0.0.1:9002")
	if r.code != 0 {
		t.Fatalf("untag: %s", r)
	}
	// Everything reverted: no document is left.
	if s1, s2 := storedRules(t, reg, v1), storedRules(t, reg, v2); s1 != nil || s2 != nil {
		t.Fatalf("after reverting: v1 %+v, v2 %+v", s1, s2)
	}
}

func mustDiscover(t *testing.T, reg registry.Registry, key registry.ServiceKey) []registry.Instance {
	t.Helper()
	list, err := reg.Discover(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func TestRegistryLsShowsConsumers(t *testing.T) {
	u, reg := newInproc(t)
	ctx := context.Background()
	key := registry.ServiceKey{Service: govSvc, Version: "v1"}
	mustRegister(t, reg, inst(govSvc, "v1", "", "a", "127.0.0.1:9001", nil))
	started := time.Now().Add(-90 * time.Second).UnixMilli()
	mustRegister(t, reg, registry.Instance{Key: registry.ConsumerKey(key), ID: "c1", Addr: "10.1.2.3:0", Metadata: map[string]string{
		registry.MetadataApplication: "billing", registry.MetadataPID: "4242",
		registry.MetadataStartedAt: strconvI(started), registry.MetadataStorks: "v0.9.0",
	}})
	r := runInProcess(ctx, "registry", "ls", "--registry", u)
	if r.code != 0 || !strings.Contains(r.stdout, "CONSUMERS OF") || !strings.Contains(r.stdout, "billing") ||
		!strings.Contains(r.stdout, "4242") || !strings.Contains(r.stdout, "1m3") || strings.Contains(r.stdout, "@consumers") {
		t.Fatalf("registry ls: %s", r)
	}
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "--no-consumers")
	if strings.Contains(r.stdout, "billing") {
		t.Fatalf("--no-consumers: %s", r)
	}
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "-o", "json", govSvc)
	if !strings.Contains(r.stdout, `"consumers"`) || !strings.Contains(r.stdout, "billing") {
		t.Fatalf("registry ls -o json: %s", r)
	}
}

func strconvI(v int64) string { return strconv.FormatInt(v, 10) }
