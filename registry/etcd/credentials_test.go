package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// The passwords of the credential tests. They are distinctive, so that a
// test can look for them in everything the adapter prints.
const (
	rootPassword = "r00t-pw-never-printed"
	userPassword = "us3r-pw-never-printed"
	wrongPasswd  = "wr0ng-pw-never-printed"
)

var secrets = []string{rootPassword, userPassword, wrongPasswd}

// secretLog collects the adapter's log, where the tests look for secrets.
type secretLog = registrytest.LogBuffer

// checkNoSecret fails the test if s shows one of the passwords.
func checkNoSecret(t *testing.T, what, s string) {
	t.Helper()
	registrytest.CheckNoSecret(t, what, s, secrets...)
}

// openErr opens rawURL (with a short dial timeout, logging to log) and
// returns the error, which must not be nil and must not show a password.
func openErr(t *testing.T, rawURL string) error {
	t.Helper()
	start := time.Now()
	r, err := registry.Open(context.Background(), rawURL)
	if err == nil {
		r.Close()
		t.Fatalf("Open(%s): no error", registry.RedactURL(rawURL))
	}
	t.Logf("Open(%s) failed after %v: %v", registry.RedactURL(rawURL), time.Since(start).Round(time.Millisecond), err)
	checkNoSecret(t, "the error of Open", err.Error())
	checkNoSecret(t, "the error of Open, %+v", fmt.Sprintf("%+v", err))
	return err
}

func userURL(user, pass, endpoint, rest string) string {
	return "etcd://" + url.UserPassword(user, pass).String() + "@" + endpoint + rest
}

// exercise registers, discovers and watches through r: the short version
// of the conformance suite, enough to show that every kind of request the
// adapter makes (lease grant and keepalive, put, range, watch, lease
// time-to-live, delete) is accepted.
func exercise(t *testing.T, r registry.Registry, key registry.ServiceKey, ids ...string) registry.Watcher {
	t.Helper()
	w := mustWatch(t, r, key)
	for i, id := range ids {
		mustRegister(t, r, inst(key, id, 1000+i))
	}
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs(ids...))
	registrytest.WaitDiscover(t, r, key, 5*time.Second, registrytest.HasIDs(ids...))
	return w
}

// TestAuth runs the registry against an etcd server with authentication
// enabled, and tokens that expire after 1s of disuse: wrong, missing and
// insufficient credentials fail Open with a clear error that does not show
// the password; the right ones work, also after the token expired (the
// client authenticates again), for registrations, discovery, existing
// watches and watches started later. No password is ever logged.
func TestAuth(t *testing.T) {
	const tokenTTL = time.Second
	srv := testservers.StartEtcdWith(t, testservers.EtcdOptions{AuthTokenTTL: tokenTTL})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := uniqueBase(t)
	if err := srv.EnableAuth(ctx, rootPassword); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUser(ctx, "storks", userPassword, base+"/"); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUser(ctx, "other", userPassword, "/elsewhere/"); err != nil {
		t.Fatal(err)
	}
	ep := srv.Endpoint()
	q := "?ttl=2s&dial-timeout=2s"

	t.Run("WrongPassword", func(t *testing.T) {
		err := openErr(t, userURL("storks", wrongPasswd, ep, base+q))
		if !strings.Contains(err.Error(), `authentication as user "storks" failed`) {
			t.Errorf("the error does not say that the authentication failed: %v", err)
		}
		err = openErr(t, userURL("nobody", wrongPasswd, ep, base+q))
		if !strings.Contains(err.Error(), `authentication as user "nobody" failed`) {
			t.Errorf("the error does not say that the authentication failed: %v", err)
		}
	})
	t.Run("NoCredentials", func(t *testing.T) {
		err := openErr(t, "etcd://"+ep+base+q)
		if !strings.Contains(err.Error(), "requires authentication") {
			t.Errorf("the error does not say that the server requires authentication: %v", err)
		}
	})
	t.Run("NoPermission", func(t *testing.T) {
		err := openErr(t, userURL("other", userPassword, ep, base+q))
		if !strings.Contains(err.Error(), `user "other" may not read the keys under `+base) {
			t.Errorf("the error does not say that the user lacks permissions: %v", err)
		}
	})

	t.Run("RightPassword", func(t *testing.T) {
		const leaseTTL = 5 * time.Second
		var logs secretLog
		cfg, err := configFromURL(mustParse(t, userURL("storks", userPassword, ep, base+q)))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Logger = logs.Logger()
		// Leases of 5 s, renewed every TTL/3 with tokens that expire every
		// second: a 2 s lease could lapse when -race tests of other
		// packages starve both cores, and log a warning this test forbids.
		cfg.TTL = leaseTTL
		prov, err := New(ctx, cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer prov.Close()
		cfg.Logger = (&secretLog{}).Logger()
		cons, err := New(ctx, Config{Endpoints: []string{ep}, BasePath: base, TTL: leaseTTL,
			Username: "storks", Password: userPassword, Logger: logs.Logger()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer cons.Close()
		key1, key2 := registrytest.UniqueKey(t), registrytest.UniqueKey(t)
		key2.Version = "v2"
		exercise(t, prov, key1, "a")
		w1 := mustWatch(t, cons, key1)
		registrytest.WaitFor(t, w1, 5*time.Second, registrytest.HasIDs("a"))
		// Rules, with the same user, under the same base path.
		rw := mustWatchRule(t, cons, key1, nil)
		mustPutRule(t, prov, key1, "r1")
		nextRule(t, rw, "r1")

		// Stay idle for longer than the token TTL (the keeper keeps the
		// lease alive meanwhile), then do everything again.
		time.Sleep(3 * tokenTTL)
		mustRegister(t, prov, inst(key1, "b", 2))
		registrytest.WaitFor(t, w1, 5*time.Second, registrytest.HasIDs("a", "b"))
		mustPutRule(t, prov, key1, "r2")
		nextRule(t, rw, "r2")
		rw2 := mustWatchRule(t, cons, key2, nil) // a new watch after the token expired
		mustPutRule(t, cons, key2, "r3")
		nextRule(t, rw2, "r3")
		w2 := exercise(t, cons, key2, "c")
		time.Sleep(3 * tokenTTL)
		mustRegister(t, prov, inst(key2, "d", 4))
		registrytest.WaitFor(t, w2, 5*time.Second, registrytest.HasIDs("c", "d"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := prov.Deregister(ctx, inst(key1, "a", 1)); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		registrytest.WaitFor(t, w1, 5*time.Second, registrytest.HasIDs("b"))
		// The keeper's lease and its check of the attached keys work with
		// expired tokens too: the registrations outlive several TTLs.
		time.Sleep(2 * prov.cfg.TTL)
		registrytest.WaitDiscover(t, cons, key1, time.Second, registrytest.HasIDs("b"))
		registrytest.WaitDiscover(t, cons, key2, time.Second, registrytest.HasIDs("c", "d"))
		out := logs.String()
		if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
			t.Errorf("the registries logged warnings with valid credentials:\n%s", out)
		}
		checkNoSecret(t, "the log", out)
		var asInterface registry.Registry = prov
		for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(prov.Config()),
			fmt.Sprintf("%v|%+v|%#v|%s", prov, prov, prov, asInterface), fmt.Sprint([]registry.Registry{prov})} {
			checkNoSecret(t, "the printed Config", s)
		}
	})

	// A registry whose server goes away logs (and fails) without showing
	// the password.
	t.Run("ServerDown", func(t *testing.T) {
		var logs secretLog
		r, err := New(ctx, Config{Endpoints: []string{ep}, BasePath: base, TTL: 2 * time.Second, DialTimeout: time.Second,
			Username: "storks", Password: userPassword, Logger: logs.Logger()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer r.Close()
		key := registrytest.UniqueKey(t)
		w := exercise(t, r, key, "a")
		srv.Stop()
		defer func() {
			if err := srv.Start(); err != nil {
				t.Fatalf("restarting etcd: %v", err)
			}
		}()
		octx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := r.Register(octx, inst(key, "b", 2)); err == nil {
			t.Error("Register with the server down: no error")
		} else {
			checkNoSecret(t, "the error of Register", err.Error())
		}
		if _, err := r.Discover(octx, key); err == nil {
			t.Error("Discover with the server down: no error")
		} else {
			checkNoSecret(t, "the error of Discover", err.Error())
		}
		// Registries opened while the server is down, with the right
		// password and with a wrong one, open at once and check their
		// credentials once it is back.
		late := map[string]*Registry{}
		for name, pass := range map[string]string{"right": userPassword, "wrong": wrongPasswd} {
			start := time.Now()
			lr, err := New(ctx, Config{Endpoints: []string{ep}, BasePath: base, TTL: 2 * time.Second, DialTimeout: time.Second,
				Username: "storks", Password: pass, Logger: logs.Logger()})
			if err != nil {
				t.Fatalf("New with the %s password while the server is down: %v", name, err)
			}
			defer lr.Close()
			t.Logf("New with the %s password while the server is down returned after %v", name, time.Since(start))
			if d := time.Since(start); d > registrytest.FastFail {
				t.Errorf("New with the %s password while the server is down took %v", name, d)
			}
			if err := lr.Register(octx, inst(key, "c", 3)); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("Register with the server down: %v; want the refused connection", err)
			} else {
				checkNoSecret(t, "the error of Register", err.Error())
			}
			late[name] = lr
		}
		time.Sleep(3 * time.Second) // the keeper and the watch fail and log
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		// b was never registered (Register failed); a is back.
		registrytest.WaitDiscover(t, r, key, 10*time.Second, registrytest.HasIDs("a"))
		registrytest.Eventually(t, 10*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return late["right"].Register(ctx, inst(key, "c", 3))
		})
		registrytest.WaitDiscover(t, r, key, 10*time.Second, registrytest.HasIDs("a", "c"))
		// Its connection may still be in the reconnect backoff it entered
		// while the server was down (at most TTL/3): until it redials,
		// Register reports the outage, then the authentication failure.
		deadline := time.Now().Add(10 * time.Second)
		for {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = late["wrong"].Register(rctx, inst(key, "d", 4))
			rcancel()
			if !errors.As(err, new(*registry.UnreachableError)) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err == nil || !strings.Contains(err.Error(), `authentication as user "storks" failed`) {
			t.Errorf("Register with a wrong password, opened while the server was down: %v; want the authentication failure", err)
		} else {
			t.Logf("Register with a wrong password, opened while the server was down: %v", err)
			checkNoSecret(t, "the error of Register", err.Error())
		}
		w.Stop()
		out := logs.String()
		if !strings.Contains(out, "level=WARN") {
			t.Errorf("nothing was logged while the server was down:\n%s", out)
		}
		checkNoSecret(t, "the log", out)
	})
}

func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestTLS runs the registry over TLS against an etcd server that requires
// client certificates from its test CA, configured through the URL: it
// works with the CA and a client certificate, and fails clearly without the
// certificate, without the CA, and without TLS.
func TestTLS(t *testing.T) {
	srv := testservers.StartEtcdWith(t, testservers.EtcdOptions{TLS: true, ClientCertAuth: true})
	base := uniqueBase(t)
	ep := srv.Endpoint()
	tlsq := "&ca=" + url.QueryEscape(srv.CAFile()) + "&cert=" + url.QueryEscape(srv.ClientCertFile()) + "&key=" + url.QueryEscape(srv.ClientKeyFile())

	t.Run("URL", func(t *testing.T) {
		u := "etcd://" + ep + base + "?ttl=2s" + tlsq
		r, err := registry.Open(context.Background(), u)
		if err != nil {
			t.Fatalf("Open(%s): %v", u, err)
		}
		defer r.Close()
		if got := r.(*Registry).Config(); got.TLS == nil || len(got.TLS.Certificates) != 1 || got.TLS.RootCAs == nil {
			t.Fatalf("Config().TLS = %+v, want the CA and one client certificate", got.TLS)
		}
		exercise(t, r, registrytest.UniqueKey(t), "a", "b")
	})
	t.Run("Config", func(t *testing.T) {
		r, err := New(context.Background(), Config{Endpoints: []string{"localhost:" + portOf(t, ep)}, BasePath: base, TLS: srv.ClientTLS()})
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		defer r.Close()
		exercise(t, r, registrytest.UniqueKey(t), "a")
	})
	t.Run("ServerName", func(t *testing.T) {
		// The certificate names 127.0.0.1 and localhost, not "etcd.test":
		// server-name is what the client checks.
		err := openErr(t, "etcd://"+ep+base+"?dial-timeout=1s&server-name=etcd.test"+tlsq)
		if !strings.Contains(err.Error(), "etcd.test") {
			t.Errorf("the error does not name the server name that did not match: %v", err)
		}
		r, err := registry.Open(context.Background(), "etcd://"+ep+base+"?server-name=localhost"+tlsq)
		if err != nil {
			t.Fatalf("Open with server-name=localhost: %v", err)
		}
		r.Close()
	})
	t.Run("NoClientCert", func(t *testing.T) {
		openErr(t, "etcd://"+ep+base+"?dial-timeout=1s&ca="+url.QueryEscape(srv.CAFile()))
	})
	t.Run("UnknownCA", func(t *testing.T) {
		err := openErr(t, "etcd://"+ep+base+"?dial-timeout=1s&tls=true")
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("the error does not say what is wrong with the certificate: %v", err)
		}
	})
	t.Run("NoTLS", func(t *testing.T) {
		openErr(t, "etcd://"+ep+base+"?dial-timeout=1s")
	})
}

func portOf(t *testing.T, hostport string) string {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestTLSAndAuth combines both: a TLS server with authentication enabled,
// and a password given in the URL next to the TLS parameters.
func TestTLSAndAuth(t *testing.T) {
	srv := testservers.StartEtcdWith(t, testservers.EtcdOptions{TLS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := uniqueBase(t)
	if err := srv.EnableAuth(ctx, rootPassword); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddUser(ctx, "storks", userPassword, base+"/"); err != nil {
		t.Fatal(err)
	}
	q := "?ca=" + url.QueryEscape(srv.CAFile())
	openErr(t, userURL("storks", wrongPasswd, srv.Endpoint(), base+q+"&dial-timeout=1s"))
	r, err := registry.Open(ctx, userURL("storks", userPassword, srv.Endpoint(), base+q))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	exercise(t, r, registrytest.UniqueKey(t), "a")
}

// TestURLCredentials checks how etcd:// URLs carry credentials and TLS
// settings, and that no error shows a password.
func TestURLCredentials(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testservers.StartEtcdWith(t, testservers.EtcdOptions{TLS: true, ClientCertAuth: true})
	ca, cert, key := srv.CAFile(), srv.ClientCertFile(), srv.ClientKeyFile()

	cfg, err := configFromURL(mustParse(t, "etcd://us%3Aer%40x:p%40ss%3Aw%2Ford@h:1/x"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "us:er@x" || cfg.Password != "p@ss:w/ord" || cfg.TLS != nil {
		t.Errorf("user info: got %q, %q, TLS %v", cfg.Username, cfg.Password, cfg.TLS)
	}
	cfg, err = configFromURL(mustParse(t, "etcd://h:1/x?tls=true"))
	if err != nil || cfg.TLS == nil || cfg.TLS.RootCAs != nil || len(cfg.TLS.Certificates) != 0 || cfg.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("tls=true: %+v, %v; want TLS with the system roots", cfg.TLS, err)
	}
	cfg, err = configFromURL(mustParse(t, "etcd://h:1/x?tls=false"))
	if err != nil || cfg.TLS != nil {
		t.Errorf("tls=false: %+v, %v; want no TLS", cfg.TLS, err)
	}
	cfg, err = configFromURL(mustParse(t, "etcd://h:1/x?server-name=etcd.example&ca="+url.QueryEscape(ca)+"&cert="+url.QueryEscape(cert)+"&key="+url.QueryEscape(key)))
	if err != nil || cfg.TLS == nil || cfg.TLS.RootCAs == nil || len(cfg.TLS.Certificates) != 1 || cfg.TLS.ServerName != "etcd.example" {
		t.Errorf("ca, cert, key, server-name: %+v, %v", cfg.TLS, err)
	}

	bad := []struct{ url, field string }{
		{"etcd://user@h:1/x", "URL user info"},
		{"etcd://user:@h:1/x", "URL user info"},
		{"etcd://:" + wrongPasswd + "@h:1/x", "URL user info"},
		{"etcd://" + wrongPasswd + "@h:1/x", "URL user info"},
		{"etcd://u:" + wrongPasswd + "@h:1/x?ttl=%zz", "URL query"},
		{"etcd://u:" + wrongPasswd + "@h:1/x?password=" + wrongPasswd + "&ttl=%zz", "URL query"},
		{"etcd://u:" + wrongPasswd + "@h:1/x?password=" + wrongPasswd, "URL query parameter"},
		{"etcd://u:" + wrongPasswd + "@h:0/x", "URL port"},
		{"etcd://u:" + wrongPasswd + "@h:1/a//b", "URL path"},
		{"etcd://u:" + wrongPasswd + "@h:1/x#frag", "URL fragment"},
		{"etcd://u:" + wrongPasswd + "@h:1/x?tls=maybe", "tls"},
		{"etcd://h:1/x?tls=false&ca=" + url.QueryEscape(ca), "tls"},
		{"etcd://h:1/x?ca=" + url.QueryEscape(filepath.Join(dir, "missing.pem")), "URL query parameter ca"},
		{"etcd://h:1/x?ca=" + url.QueryEscape(junk), "URL query parameter ca"},
		{"etcd://h:1/x?cert=" + url.QueryEscape(cert), "cert and key"},
		{"etcd://h:1/x?key=" + url.QueryEscape(key), "cert and key"},
		{"etcd://h:1/x?cert=" + url.QueryEscape(junk) + "&key=" + url.QueryEscape(key), "cert and key"},
		{"etcd://h:1/x?cert=" + url.QueryEscape(cert) + "&key=" + url.QueryEscape(ca), "cert and key"},
		{"etcd://h:1/x?ca=" + url.QueryEscape(ca) + "&ca=" + url.QueryEscape(ca), "URL query parameter"},
	}
	for _, tc := range bad {
		_, err := registry.Open(context.Background(), tc.url)
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Open(%s) = %v; want an InputError naming %q", registry.RedactURL(tc.url), err, tc.field)
		}
		if err != nil {
			checkNoSecret(t, "the error of Open("+registry.RedactURL(tc.url)+")", err.Error())
		}
	}

	for _, c := range []Config{
		{Endpoints: []string{"h:1"}, Username: "u"},
		{Endpoints: []string{"h:1"}, Password: wrongPasswd},
		{Endpoints: []string{"h:1"}, Username: "a:b", Password: wrongPasswd},
	} {
		_, err := New(context.Background(), c)
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "Config.Username") {
			t.Errorf("New(%v) = %v; want an InputError naming Config.Username", c, err)
		}
		if err != nil {
			checkNoSecret(t, "the error of New", err.Error())
		}
	}
}

// TestConfigString checks that the password never shows when a Config is
// printed or logged, however it is.
func TestConfigString(t *testing.T) {
	cfg := Config{Endpoints: []string{"h1:2379", "h2:2379"}, BasePath: "/s", TTL: 3 * time.Second,
		Username: "storks", Password: userPassword, TLS: &tls.Config{ServerName: "etcd.example"}}
	if got, want := cfg.String(), "etcd://storks:redacted@h1:2379,h2:2379/s?server-name=etcd.example&tls=true&ttl=3s"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "cfg", cfg, "ptr", &cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%v|%+v|%#v|%s|%v", cfg, cfg, cfg, &cfg, []Config{cfg}), text.String(), js.String()} {
		checkNoSecret(t, "the printed Config", s)
		if !strings.Contains(s, "storks:redacted@") {
			t.Errorf("the printed Config %q does not show the user", s)
		}
	}
}

func mustWatchRule(t *testing.T, r *Registry, key registry.ServiceKey, first []byte) registry.RuleWatcher {
	t.Helper()
	w, err := r.WatchRule(context.Background(), key)
	if err != nil {
		t.Fatalf("WatchRule(%v): %v", key, err)
	}
	t.Cleanup(w.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if doc, err := w.Next(ctx); err != nil || !bytes.Equal(doc, first) || (doc == nil) != (first == nil) {
		t.Fatalf("WatchRule(%v): first Next = %q, %v; want %q", key, doc, err, first)
	}
	return w
}

func mustPutRule(t *testing.T, r *Registry, key registry.ServiceKey, doc string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.PutRule(ctx, key, []byte(doc)); err != nil {
		t.Fatalf("PutRule(%v): %v", key, err)
	}
}

func nextRule(t *testing.T, w registry.RuleWatcher, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if doc, err := w.Next(ctx); err != nil || string(doc) != want {
		t.Fatalf("rule watch Next = %q, %v; want %q", doc, err, want)
	}
}
