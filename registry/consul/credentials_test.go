package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// The tokens of the ACL tests: ACL secrets are UUIDs. unknownToken is one
// the agent does not know.
const (
	managementToken = "6a1c4e1e-6f4b-4c8e-9a53-3d1f3c0de001"
	unknownToken    = "6a1c4e1e-6f4b-4c8e-9a53-3d1f3c0de0ff"
)

// checkNoToken fails the test if s shows one of tokens.
func checkNoToken(t *testing.T, what, s string, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		if strings.Contains(s, tok) {
			t.Errorf("%s shows a token: %s", what, strings.ReplaceAll(s, tok, "<TOKEN>"))
		}
	}
}

// TestACL runs the registry against a Consul agent with ACLs enabled and
// default policy "deny": an unknown token fails Open, a missing token or
// one without the permission fails Register with the agent's explanation,
// a token without node:read makes Discover and Watch log (once) that the
// ACLs filtered the list, the right tokens
// work (a provider's write token, a consumer's read token, from the URL or
// the environment); no error and no log line ever shows a token, also
// while the agent is down and after it forgot the tokens.
func TestACL(t *testing.T) {
	agent := testservers.StartConsulWith(t, testservers.ConsulOptions{ManagementToken: managementToken})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writeToken, err := agent.CreateToken(ctx, `service_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	readToken, err := agent.CreateToken(ctx, `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	// A token that may read services but not nodes: the agent filters
	// the instances out, and says so.
	serviceOnlyToken, err := agent.CreateToken(ctx, `service_prefix "" { policy = "read" }`)
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{managementToken, unknownToken, writeToken, readToken, serviceOnlyToken}
	open := func(t *testing.T, logs *syncBuffer, query string) (*Registry, error) {
		t.Helper()
		cfg, err := ParseURL(mustParseURL(t, agent.URL("?ttl="+testTTL.String()+query)))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r, err := New(ctx, cfg)
		if err == nil {
			t.Cleanup(func() { r.Close() })
		}
		return r, err
	}
	key := registrytest.UniqueKey(t)
	a := inst(key, "a", "127.0.0.1:1001")

	t.Run("UnknownToken", func(t *testing.T) {
		var logs syncBuffer
		_, err := open(t, &logs, "&token="+unknownToken)
		if err == nil {
			t.Fatal("Open with a token the agent does not know: no error")
		}
		t.Logf("Open: %v", err)
		if !strings.Contains(err.Error(), "ACL not found") || !strings.Contains(err.Error(), agent.Addr()) {
			t.Errorf("the error does not say that the agent does not know the token: %v", err)
		}
		checkNoToken(t, "the error of Open", fmt.Sprintf("%v %+v", err, err), tokens...)
		checkNoToken(t, "the log", logs.String(), tokens...)
	})

	t.Run("NoToken", func(t *testing.T) {
		var logs syncBuffer
		r, err := open(t, &logs, "")
		if err != nil {
			t.Fatalf("Open without a token: %v", err)
		}
		err = r.Register(ctx, a)
		if err == nil {
			t.Fatal("Register without a token: no error")
		}
		t.Logf("Register: %v", err)
		if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("the error of Register does not say that the ACLs refused it: %v", err)
		}
		checkNoToken(t, "the log", logs.String(), tokens...)
	})

	t.Run("ReadToken", func(t *testing.T) {
		var logs syncBuffer
		r, err := open(t, &logs, "&token="+readToken)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		err = r.Register(ctx, a)
		if err == nil {
			t.Fatal("Register with a read-only token: no error")
		}
		t.Logf("Register: %v", err)
		if !strings.Contains(err.Error(), "Permission denied") || !strings.Contains(err.Error(), "service:write") {
			t.Errorf("the error of Register does not say which permission is missing: %v", err)
		}
		checkNoToken(t, "the error of Register", err.Error(), tokens...)
		checkNoToken(t, "the log", logs.String(), tokens...)
	})

	t.Run("RightTokens", func(t *testing.T) {
		var provLogs, consLogs syncBuffer
		prov, err := open(t, &provLogs, "&token="+writeToken)
		if err != nil {
			t.Fatalf("Open (provider): %v", err)
		}
		cons, err := open(t, &consLogs, "&token="+readToken)
		if err != nil {
			t.Fatalf("Open (consumer): %v", err)
		}
		w, err := cons.Watch(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		register(t, prov, a)
		registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("a"))
		// The keeper passes the TTL check with the token: the instance
		// stays passing over several TTLs.
		time.Sleep(2 * testTTL)
		registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs("a"))

		// Without a token that may read the service, Consul answers as
		// if it had no instances.
		var anonLogs, filteredLogs syncBuffer
		anon, err := open(t, &anonLogs, "")
		if err != nil {
			t.Fatalf("Open without a token: %v", err)
		}
		if list, err := anon.Discover(ctx, key); err != nil || len(list) != 0 {
			t.Errorf("Discover without a token = %v, %v; want an empty list", list, err)
		}
		// With one that may read the service but not the nodes of its
		// instances, Consul filters them out and says so: the registry
		// logs it, once.
		filtered, err := open(t, &filteredLogs, "&token="+serviceOnlyToken)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		for range 2 {
			if list, err := filtered.Discover(ctx, key); err != nil || len(list) != 0 {
				t.Errorf("Discover with a token without node:read = %v, %v; want an empty list", list, err)
			}
		}
		fw, err := filtered.Watch(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if l, err := fw.Next(ctx); err != nil || len(l) != 0 {
			t.Errorf("Watch with a token without node:read: Next = %v, %v; want an empty list", l, err)
		}
		fw.Stop()
		if n := filteredLogs.count("level=WARN", "ACL token may not read"); n != 1 {
			t.Errorf("Discover and Watch logged %d warnings that the ACLs filtered their list, want 1:\n%s", n, filteredLogs.String())
		}
		checkNoToken(t, "the log", filteredLogs.String()+anonLogs.String(), tokens...)

		if err := prov.Deregister(ctx, a); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs())
		for name, logs := range map[string]*syncBuffer{"provider": &provLogs, "consumer": &consLogs} {
			if n := logs.count("level=WARN"); n > 0 {
				t.Errorf("the %s logged warnings with a valid token:\n%s", name, logs.String())
			}
			checkNoToken(t, "the "+name+"'s log", logs.String(), tokens...)
		}
		for _, s := range []string{prov.String(), fmt.Sprint(prov.cfg), fmt.Sprintf("%+v|%#v|%v", prov.cfg, prov.cfg, &prov.cfg),
			fmt.Sprintf("%v|%+v|%#v|%s", prov, prov, prov, []any{prov})} {
			checkNoToken(t, "the printed Config", s, tokens...)
		}
	})

	// The environment's token applies when the URL has none; the URL's
	// wins over it.
	// Rules need key_prefix "storks/rules/" permissions: write to change
	// them, read to read and watch them.
	t.Run("Rules", func(t *testing.T) {
		ruleWrite, err := agent.CreateToken(ctx, `key_prefix "storks/rules/" { policy = "write" }`)
		if err != nil {
			t.Fatal(err)
		}
		ruleRead, err := agent.CreateToken(ctx, `key_prefix "storks/rules/" { policy = "read" }`)
		if err != nil {
			t.Fatal(err)
		}
		tokens := append(slices.Clone(tokens), ruleWrite, ruleRead)
		var opLogs, consLogs, provLogs syncBuffer
		op, err := open(t, &opLogs, "&token="+ruleWrite)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := open(t, &consLogs, "&token="+ruleRead)
		if err != nil {
			t.Fatal(err)
		}
		prov, err := open(t, &provLogs, "&token="+writeToken) // services only
		if err != nil {
			t.Fatal(err)
		}
		key := registrytest.UniqueKey(t)
		if err := op.PutRule(ctx, key, []byte("doc")); err != nil {
			t.Fatalf("PutRule with a key_prefix write token: %v", err)
		}
		w, err := cons.WatchRule(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		if doc, err := w.Next(ctx); err != nil || string(doc) != "doc" {
			t.Fatalf("WatchRule with a key_prefix read token: Next = %q, %v", doc, err)
		}
		if keys, err := cons.Rules(ctx); err != nil || !slices.Contains(keys, key) {
			t.Errorf("Rules with a read token = %v, %v", keys, err)
		}
		for name, err := range map[string]error{
			"PutRule with a read token":         cons.PutRule(ctx, key, []byte("x")),
			"DeleteRule with a read token":      cons.DeleteRule(ctx, key),
			"PutRule with a service-only token": prov.PutRule(ctx, key, []byte("x")),
			"GetRule with a service-only token": func() error { _, err := prov.GetRule(ctx, key); return err }(),
		} {
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Errorf("%s: %v; want the agent's 403", name, err)
			} else {
				t.Logf("%s: %v", name, err)
				checkNoToken(t, "the error", err.Error(), tokens...)
			}
		}
		if err := op.DeleteRule(ctx, key); err != nil {
			t.Fatal(err)
		}
		if doc, err := w.Next(ctx); err != nil || doc != nil {
			t.Errorf("Next after the delete = %q, %v; want nil", doc, err)
		}
		checkNoToken(t, "the logs", opLogs.String()+consLogs.String()+provLogs.String(), tokens...)
	})

	t.Run("Environment", func(t *testing.T) {
		t.Setenv(api.HTTPTokenEnvName, writeToken)
		var logs syncBuffer
		r, err := open(t, &logs, "")
		if err != nil {
			t.Fatalf("Open with %s: %v", api.HTTPTokenEnvName, err)
		}
		b := inst(key, "b", "127.0.0.1:1002")
		register(t, r, b)
		if err := r.Deregister(ctx, b); err != nil {
			t.Fatal(err)
		}
		r, err = open(t, &logs, "&token="+readToken)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if err := r.Register(ctx, b); err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("Register with ?token= of a read-only token and a write token in %s: %v; want the URL's token to be used", api.HTTPTokenEnvName, err)
		}
		t.Setenv(api.HTTPTokenEnvName, unknownToken)
		if _, err := open(t, &logs, ""); err == nil || !strings.Contains(err.Error(), "ACL not found") {
			t.Errorf("Open with an unknown token in %s: %v; want ACL not found", api.HTTPTokenEnvName, err)
		} else {
			checkNoToken(t, "the error of Open", err.Error(), tokens...)
		}
	})

	// While the agent is down, and once it restarted without the tokens
	// (a dev agent forgets them), the keeper and the watch fail and log,
	// without showing the token.
	t.Run("Failures", func(t *testing.T) {
		var logs syncBuffer
		r, err := open(t, &logs, "&token="+writeToken)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		w, err := r.Watch(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		c := inst(key, "c", "127.0.0.1:1003")
		register(t, r, c)
		registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs("c"))
		agent.Stop()
		time.Sleep(testTTL)
		octx, ocancel := context.WithTimeout(ctx, time.Second)
		defer ocancel()
		for what, err := range map[string]error{
			"Register":   r.Register(octx, inst(key, "d", "127.0.0.1:1004")),
			"Deregister": r.Deregister(octx, inst(key, "d", "127.0.0.1:1004")),
		} {
			if err == nil {
				t.Errorf("%s with the agent down: no error", what)
			} else {
				checkNoToken(t, "the error of "+what, err.Error(), tokens...)
			}
		}
		if _, err := r.Discover(octx, key); err == nil {
			t.Error("Discover with the agent down: no error")
		} else {
			checkNoToken(t, "the error of Discover", err.Error(), tokens...)
		}
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		// The restarted agent knows only the management token: the
		// keeper's re-registration is refused, and logged.
		registrytest.Eventually(t, 20*time.Second, func() error {
			if logs.count("ACL not found") == 0 {
				return errors.New("the refusal of the forgotten token was not logged")
			}
			return nil
		})
		out := logs.String()
		if logs.count("level=WARN") == 0 {
			t.Errorf("nothing was logged:\n%s", out)
		}
		checkNoToken(t, "the log", out, tokens...)
	})
}

func TestConfigSecretNotPrinted(t *testing.T) {
	cfg := Config{Address: "h:1", Token: secretToken}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "cfg", cfg, "ptr", &cfg)
	for _, s := range []string{fmt.Sprintf("%v|%+v|%#v|%s|%v", cfg, cfg, cfg, &cfg, []Config{cfg}), text.String(), js.String()} {
		checkNoToken(t, "the printed Config", s, secretToken)
		if !strings.Contains(s, "token=redacted") {
			t.Errorf("the printed Config %q does not show that there is a token", s)
		}
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
