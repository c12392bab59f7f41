package runtime_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
	storks "github.com/storks-rpc/storks/runtime"
)

// govKey is the service key of the echo service's rules.
var govKey = registry.ServiceKey{Service: echoService}

// putRules validates and stores set as the echo service's rules.
func putRules(t *testing.T, reg registry.Registry, set *rule.Set) {
	t.Helper()
	if set.Version == 0 {
		set.Version = rule.FormatVersion
	}
	if err := rule.Save(withTimeout(t, 5*time.Second), reg.(registry.RuleStore), govKey, set); err != nil {
		t.Fatal(err)
	}
}

func deleteRules(t *testing.T, reg registry.Registry) {
	t.Helper()
	if err := reg.(registry.RuleStore).DeleteRule(withTimeout(t, 5*time.Second), govKey); err != nil {
		t.Fatal(err)
	}
}

// providers starts n echo providers named p0..pn-1 with the export
// options opts(i).
func providers(t *testing.T, reg registry.Registry, n int, opts func(i int) []storks.ExportOption) ([]*echoImpl, []string) {
	t.Helper()
	impls := make([]*echoImpl, n)
	addrs := make([]string, n)
	for i := range n {
		impls[i] = &echoImpl{name: "p" + strconv.Itoa(i)}
		var eo []storks.ExportOption
		if opts != nil {
			eo = opts(i)
		}
		srv, _ := startProvider(t, reg, impls[i], nil, eo...)
		addrs[i] = srv.Addr()
	}
	return impls, addrs
}

// spread makes n calls and counts the replies per provider name.
func spread(t *testing.T, ctx context.Context, ref storks.Invoker, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		out, err := callEcho(ctx, ref, strconv.Itoa(i))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		name, _, _ := strings.Cut(out, ":")
		got[name]++
	}
	return got
}

func TestConsumerRecordIsRegisteredAndRemovedOnClose(t *testing.T) {
	reg := newRegistry(t)
	providers(t, reg, 1, nil)
	cli := newClient(t, storks.WithRegistry(reg), storks.WithApplication("billing"))
	ref, err := cli.Refer(withTimeout(t, 5*time.Second), echoService, storks.WithVersion(""))
	if err != nil {
		t.Fatal(err)
	}
	ckey := registry.ConsumerKey(govKey)
	var recs []registry.Instance
	waitFor(t, func() bool {
		recs, _ = reg.Discover(context.Background(), ckey)
		return len(recs) == 1
	})
	md := recs[0].Metadata
	if md[registry.MetadataApplication] != "billing" || md[registry.MetadataPID] == "" || md[registry.MetadataStartedAt] == "" || md[registry.MetadataStorks] == "" {
		t.Fatalf("consumer record metadata %v", md)
	}
	if !strings.HasSuffix(recs[0].Addr, ":0") {
		t.Errorf("consumer address %q, want port 0", recs[0].Addr)
	}
	ref.Close()
	if recs, _ = reg.Discover(context.Background(), ckey); len(recs) != 0 {
		t.Fatalf("consumer record still registered after Close: %v", recs)
	}

	// Off by option.
	_, ref2 := refer(t, reg, []storks.ClientOption{storks.WithoutConsumerRecord()})
	if _, err := callEcho(withTimeout(t, 5*time.Second), ref2, "x"); err != nil {
		t.Fatal(err)
	}
	if recs, _ = reg.Discover(context.Background(), ckey); len(recs) != 0 {
		t.Fatalf("WithoutConsumerRecord registered %v", recs)
	}
}

func TestDisableRuleTakesAProviderOutAndDeletingItRevertsIt(t *testing.T) {
	reg := newRegistry(t)
	impls, addrs := providers(t, reg, 3, nil)
	_, ref := refer(t, reg, nil)
	ctx := withTimeout(t, 20*time.Second)
	if got := spread(t, ctx, ref, 30); len(got) != 3 {
		t.Fatalf("before the rule: %v, want all three", got)
	}

	var set rule.Set
	set.Disable(rule.Match{Addr: addrs[1]})
	putRules(t, reg, &set)
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	before := impls[1].calls.Load()
	if got := spread(t, ctx, ref, 60); got["p1"] != 0 || got["p0"] == 0 || got["p2"] == 0 {
		t.Fatalf("with p1 disabled: %v", got)
	}
	if n := impls[1].calls.Load(); n != before {
		t.Fatalf("the disabled provider got %d calls", n-before)
	}

	// Enable through the same document; then the whole document goes.
	set.Enable(rule.Match{Addr: addrs[1]})
	if !set.Empty() {
		t.Fatalf("enable left %+v", set.Overrides)
	}
	set.Disable(rule.Match{Addr: addrs[2]})
	putRules(t, reg, &set)
	waitFor(t, func() bool {
		for _, in := range ref.Providers() {
			if in.Addr == addrs[2] {
				return false
			}
		}
		return len(ref.Providers()) == 2
	})
	if got := spread(t, ctx, ref, 60); got["p2"] != 0 || got["p1"] == 0 {
		t.Fatalf("with p2 disabled and p1 enabled: %v", got)
	}
	deleteRules(t, reg)
	waitFor(t, func() bool { return len(ref.Providers()) == 3 })
	if got := spread(t, ctx, ref, 30); len(got) != 3 {
		t.Fatalf("after deleting the rules: %v, want all three", got)
	}
}

func TestAllDisabledFailsNamingTheRules(t *testing.T) {
	reg := newRegistry(t)
	_, addrs := providers(t, reg, 2, nil)
	_, ref := refer(t, reg, nil)
	var set rule.Set
	for _, a := range addrs {
		set.Disable(rule.Match{Addr: a})
	}
	putRules(t, reg, &set)
	waitFor(t, func() bool { return len(ref.Providers()) == 0 })
	_, err := callEcho(withTimeout(t, 5*time.Second), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "the rules disable all 2 providers")
	if !errors.Is(err, storks.ErrNoProvider) {
		t.Fatalf("%v is not ErrNoProvider", err)
	}
}

func TestWeightRuleShiftsTraffic(t *testing.T) {
	reg := newRegistry(t)
	_, addrs := providers(t, reg, 3, nil)
	_, ref := refer(t, reg, nil, storks.WithBalancer(storks.WeightedRoundRobin()))
	ctx := withTimeout(t, 20*time.Second)
	var set rule.Set
	set.SetWeight(rule.Match{Addr: addrs[0]}, 1)
	set.SetWeight(rule.Match{Addr: addrs[1]}, 1)
	set.SetWeight(rule.Match{Addr: addrs[2]}, 8)
	putRules(t, reg, &set)
	waitFor(t, func() bool {
		for _, in := range ref.Providers() {
			if in.Addr == addrs[2] && in.Weight == 8 {
				return true
			}
		}
		return false
	})
	got := spread(t, ctx, ref, 1000)
	if share := float64(got["p2"]) / 1000; share < 0.77 || share > 0.83 {
		t.Fatalf("p2 got %.1f%% of the calls under 1:1:8, want 80±3%%: %v", 100*share, got)
	}
	deleteRules(t, reg)
	waitFor(t, func() bool { return ref.Providers()[0].Weight == registry.DefaultWeight })
	got = spread(t, ctx, ref, 300)
	if got["p2"] > 120 {
		t.Fatalf("after deleting the weight rule p2 still got %v", got)
	}
}

func TestTimeoutRuleAndItsDeletion(t *testing.T) {
	reg := newRegistry(t)
	slow := &echoImpl{name: "slow", hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return wrapperspb.String("slow:" + in.GetValue()), nil
	}}
	startProvider(t, reg, slow, nil)
	_, ref := refer(t, reg, nil)
	if _, err := callEcho(context.Background(), ref, "a"); err != nil {
		t.Fatalf("without rules: %v", err)
	}
	putRules(t, reg, &rule.Set{Methods: map[string]rule.Policy{"Echo": {Timeout: rule.Duration(50 * time.Millisecond)}}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		start := time.Now()
		_, err := callEcho(context.Background(), ref, "b")
		if storks.CodeOf(err) == storks.CodeDeadlineExceeded {
			if d := time.Since(start); d > 190*time.Millisecond {
				t.Fatalf("the call failed after %v, want about 50ms", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the timeout rule never applied: %v", err)
		}
	}
	// A caller's own deadline still wins when it is shorter... and a
	// longer one is the caller's to keep.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := callEcho(ctx, ref, "c"); err != nil {
		t.Fatalf("a call with its own deadline: %v", err)
	}
	deleteRules(t, reg)
	waitFor(t, func() bool {
		_, err := callEcho(context.Background(), ref, "d")
		return err == nil
	})
}

func TestFailModeRule(t *testing.T) {
	reg := newRegistry(t)
	bad := &echoImpl{name: "bad", hook: func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return nil, storks.Errorf(storks.CodeUnavailable, "overloaded")
	}}
	good := &echoImpl{name: "good"}
	startProvider(t, reg, bad, nil)
	startProvider(t, reg, good, nil)
	_, ref := refer(t, reg, nil, storks.WithIdempotentMethods("Echo"))
	failures := func() int {
		n := 0
		for i := range 20 {
			if _, err := callEcho(withTimeout(t, 5*time.Second), ref, strconv.Itoa(i)); err != nil {
				n++
			}
		}
		return n
	}
	if n := failures(); n == 0 {
		t.Fatal("failfast: no call failed on the bad provider")
	}
	putRules(t, reg, &rule.Set{Policy: &rule.Policy{FailMode: "failover(1)"}})
	waitFor(t, func() bool { return failures() == 0 })
}

func TestTagRouting(t *testing.T) {
	reg := newRegistry(t)
	_, addrs := providers(t, reg, 3, func(i int) []storks.ExportOption {
		if i == 2 {
			return []storks.ExportOption{storks.WithMetadata(map[string]string{"tag": "canary"})}
		}
		return nil
	})
	_, ref := refer(t, reg, nil)
	ctx := withTimeout(t, 20*time.Second)
	canary := storks.NewTagContext(ctx, "canary")

	// Untagged calls never reach the tagged provider; tagged ones only it.
	if got := spread(t, ctx, ref, 40); got["p2"] != 0 || got["p0"] == 0 || got["p1"] == 0 {
		t.Fatalf("untagged calls: %v", got)
	}
	if got := spread(t, canary, ref, 20); got["p2"] != 20 {
		t.Fatalf("tagged calls: %v", got)
	}
	// A tag nobody has falls back to untagged providers by default...
	if got := spread(t, storks.NewTagContext(ctx, "blue"), ref, 20); got["p2"] != 0 {
		t.Fatalf("calls tagged blue: %v", got)
	}
	// ...and fails when the rule turns fallback off.
	putRules(t, reg, &rule.Set{TagRouting: &rule.TagRouting{Fallback: false}})
	waitFor(t, func() bool {
		_, err := callEcho(storks.NewTagContext(ctx, "blue"), ref, "x")
		return err != nil
	})
	_, err := callEcho(storks.NewTagContext(ctx, "blue"), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, `has tag "blue"`)

	// A rule tags p0 too; another lets untagged calls reach tagged ones.
	set := rule.Set{TagRouting: &rule.TagRouting{Fallback: true, UntaggedToTagged: true}}
	set.SetTag(rule.Match{Addr: addrs[0]}, "canary")
	putRules(t, reg, &set)
	waitFor(t, func() bool {
		got := spread(t, canary, ref, 20)
		return got["p0"] > 0 && got["p2"] > 0 && got["p1"] == 0
	})
	if got := spread(t, ctx, ref, 60); len(got) != 3 {
		t.Fatalf("untagged calls with untaggedToTagged: %v, want all three", got)
	}

	// Everything tagged and untagged calls kept off: a clear error.
	set = rule.Set{}
	set.SetTag(rule.Match{Addr: addrs[0]}, "canary")
	set.SetTag(rule.Match{Addr: addrs[1]}, "blue")
	putRules(t, reg, &set)
	waitFor(t, func() bool {
		_, err := callEcho(ctx, ref, "x")
		return err != nil
	})
	_, err = callEcho(ctx, ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "untaggedToTagged")
	if got := spread(t, storks.NewTagContext(ctx, "blue"), ref, 10); got["p1"] != 10 {
		t.Fatalf("calls tagged blue: %v", got)
	}
}

func TestMalformedRulesAreIgnoredAndTheLastGoodOnesStay(t *testing.T) {
	reg := newRegistry(t)
	_, addrs := providers(t, reg, 2, nil)
	var logs logBuffer
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithLogger(logs.logger())})
	var set rule.Set
	set.Disable(rule.Match{Addr: addrs[0]})
	putRules(t, reg, &set)
	waitFor(t, func() bool { return len(ref.Providers()) == 1 })
	// Written around the validation (as etcdctl would).
	if err := reg.(registry.RuleStore).PutRule(withTimeout(t, 5*time.Second), govKey, []byte(`{"version":1,"overrides":[{"match":{},"weight":-3}]}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "ignoring malformed rules") })
	if !strings.Contains(logs.String(), "overrides[0].match") {
		t.Errorf("the log does not name the bad field:\n%s", logs.String())
	}
	if p := ref.Providers(); len(p) != 1 || p[0].Addr != addrs[1] {
		t.Fatalf("after a malformed document the providers are %v, want the last good rules", p)
	}
}

func TestRulesApplyAtReferBeforeTheFirstCall(t *testing.T) {
	reg := newRegistry(t)
	impls, addrs := providers(t, reg, 2, nil)
	var set rule.Set
	set.Disable(rule.Match{Addr: addrs[0]})
	putRules(t, reg, &set)
	_, ref := refer(t, reg, nil)
	for i := range 10 {
		if _, err := callEcho(withTimeout(t, 5*time.Second), ref, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := impls[0].calls.Load(); n != 0 {
		t.Fatalf("the disabled provider got %d of the first calls", n)
	}
}

func TestWithoutRulesIgnoresThem(t *testing.T) {
	reg := newRegistry(t)
	_, addrs := providers(t, reg, 2, nil)
	var set rule.Set
	set.Disable(rule.Match{Addr: addrs[0]})
	putRules(t, reg, &set)
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithoutRules()})
	if n := len(ref.Providers()); n != 2 {
		t.Fatalf("WithoutRules: %d providers, want 2", n)
	}
}

// A provider follows its service's rules too: a rule that disables it
// turns its gRPC health NOT_SERVING, for the gRPC clients that read no
// rules, and deleting the rule turns it SERVING again.
func TestDisabledProviderReportsNotServingToGRPC(t *testing.T) {
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithShutdownWait(0))
	ex, err := srv.Export(&echoDesc, &echoImpl{name: "p"})
	if err != nil {
		t.Fatal(err)
	}
	lis := listen(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-done })
	waitFor(t, func() bool { return ex.State() == storks.ExportRegistered })

	hc := healthpb.NewHealthClient(dialGRPC(t, srv.Addr()))
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(withTimeout(t, 5*time.Second), &healthpb.HealthCheckRequest{Service: echoService})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	if st := check(); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before the rule: %v", st)
	}
	var set rule.Set
	set.Disable(rule.Match{Addr: srv.Addr()})
	putRules(t, reg, &set)
	waitFor(t, func() bool { return check() == healthpb.HealthCheckResponse_NOT_SERVING })
	if !ex.DisabledByRule() {
		t.Fatal("DisabledByRule is false under a disabling rule")
	}
	// A rule about another provider changes nothing here.
	set = rule.Set{}
	set.Disable(rule.Match{Addr: "127.0.0.1:1"})
	putRules(t, reg, &set)
	waitFor(t, func() bool { return check() == healthpb.HealthCheckResponse_SERVING })
	set.Disable(rule.Match{ID: ex.Instance().ID})
	putRules(t, reg, &set)
	waitFor(t, func() bool { return check() == healthpb.HealthCheckResponse_NOT_SERVING })
	deleteRules(t, reg)
	waitFor(t, func() bool { return check() == healthpb.HealthCheckResponse_SERVING && !ex.DisabledByRule() })
}
