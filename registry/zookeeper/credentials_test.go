package zookeeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// The passwords of the credential tests, distinctive so that a test can
// look for them in everything the adapter prints.
const (
	zkPassword   = "zk-pw-never-printed"
	zkWrongPass  = "zk-wr0ng-pw-never-printed"
	zkOtherPass  = "zk-other-pw-never-printed"
	zkTestUser   = "storks"
	zkOtherUser  = "intruder"
	zkCredsQuery = "?session-timeout=2s&dial-timeout=5s"
)

var zkSecrets = []string{zkPassword, zkWrongPass, zkOtherPass}

// secretLog collects the adapter's log, where the tests look for secrets.
type secretLog = registrytest.LogBuffer

// checkNoSecret fails the test if s shows one of the passwords.
func checkNoSecret(t *testing.T, what, s string) {
	t.Helper()
	registrytest.CheckNoSecret(t, what, s, zkSecrets...)
}

// withCreds returns a Config modifier that sets credentials and the log.
func withCreds(user, pass string, logs *secretLog, more ...func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Username, c.Password = user, pass
		c.Logger = logs.Logger()
		for _, m := range more {
			m(c)
		}
	}
}

// wantNoAuth checks that err is a NoAuth error that explains itself
// without a password.
func wantNoAuth(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one for missing permissions", what)
		return
	}
	t.Logf("%s: %v", what, err)
	if !errors.Is(err, zk.ErrNoAuth) || !strings.Contains(err.Error(), "the ACL of a znode") {
		t.Errorf("%s: %v; want zk.ErrNoAuth explained", what, err)
	}
	checkNoSecret(t, "the error of "+what, fmt.Sprintf("%v %+v", err, err))
}

// TestDigestAuth registers with digest credentials against a real server:
// the znodes get an ACL that gives the provider's identity everything and
// everyone else read access; consumers with or without credentials read
// them; clients without credentials, with another user's or with a wrong
// password can neither delete nor overwrite nor take over a registration,
// and get errors that explain why; the provider's registration comes back
// in a new session after its session expired (the credentials are
// re-added to the new session); no error or log line shows a password.
func TestDigestAuth(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	var logs secretLog
	provDialer := newFaultDialer()
	prov := openTest(t, srv, base, withCreds(zkTestUser, zkPassword, &logs, func(c *Config) { c.Dialer = provDialer.dial }))
	key := registrytest.UniqueKey(t)
	a := inst(key, "a", 1)
	mustRegister(t, prov, a)
	path := prov.nodePath(key, "a")

	// The ACLs of the instance node and of every node the registry made.
	want := append(zk.DigestACL(zk.PermAll, zkTestUser, zkPassword), zk.WorldACL(zk.PermRead)...)
	for p := path; len(p) > len("/storks-test"); p = p[:strings.LastIndexByte(p, '/')] {
		acl, _, err := prov.conn.GetACL(p)
		if err != nil {
			t.Fatalf("GetACL(%s): %v", p, err)
		}
		if !slices.Equal(acl, want) {
			t.Errorf("the ACL of %s is %+v, want %+v", p, acl, want)
		}
	}

	anon := openTest(t, srv, base, func(c *Config) { c.Logger = logs.Logger() })
	wrong := openTest(t, srv, base, withCreds(zkTestUser, zkWrongPass, &logs))
	other := openTest(t, srv, base, withCreds(zkOtherUser, zkOtherPass, &logs))
	cons := openTest(t, srv, base, withCreds(zkTestUser, zkPassword, &logs))

	// Everyone reads.
	for name, r := range map[string]*Registry{"no credentials": anon, "wrong password": wrong, "same credentials": cons} {
		registrytest.WaitDiscover(t, r, key, 5*time.Second, registrytest.HasIDs("a"))
		w, err := r.Watch(context.Background(), key)
		if err != nil {
			t.Fatalf("Watch (%s): %v", name, err)
		}
		registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("a"))
		w.Stop()
	}

	// Nobody else writes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, r := range map[string]*Registry{"no credentials": anon, "wrong password": wrong, "another user": other} {
		wantNoAuth(t, name+": Deregister", r.Deregister(ctx, a))
		hijack := a
		hijack.Addr = "127.0.0.1:666"
		wantNoAuth(t, name+": Register of the same ID", r.Register(ctx, hijack))
		wantNoAuth(t, name+": Register of a new ID", r.Register(ctx, inst(key, "fake-"+strings.ReplaceAll(name, " ", "-"), 666)))
		if err := r.conn.Delete(path, -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: raw delete of the instance node: %v, want ErrNoAuth", name, err)
		}
		if _, err := r.conn.Set(path, []byte(`{}`), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: raw write of the instance node: %v, want ErrNoAuth", name, err)
		}
		if err := r.conn.Delete(prov.providersDir(key), -1); !errors.Is(err, zk.ErrNoAuth) && !errors.Is(err, zk.ErrNotEmpty) {
			t.Errorf("%s: raw delete of the providers node: %v", name, err)
		}
	}
	// The failed attempts changed nothing: the instance is there, as the
	// provider registered it, and keeps its node.
	list := registrytest.WaitDiscover(t, cons, key, 5*time.Second, registrytest.HasIDs("a"))
	if !registrytest.SameInstance(list[0], a) {
		t.Errorf("after the attacks Discover = %s, want %s", registrytest.Format(list), registrytest.Format([]registry.Instance{a}))
	}
	time.Sleep(500 * time.Millisecond) // a background restore would show now
	registrytest.WaitDiscover(t, cons, key, time.Second, registrytest.HasIDs("a"))

	// Session expiry: the provider's new session has the credentials too,
	// so it can create the node again under the restricted parents.
	for round := 1; round <= 2; round++ {
		sid := prov.conn.SessionID()
		pw := provDialer.password(sid)
		if pw == nil {
			t.Fatalf("no password seen for the provider's session 0x%x", sid)
		}
		if err := srv.ExpireSession(ctx, sid, pw); err != nil {
			t.Fatalf("expiring the provider's session: %v", err)
		}
		start := time.Now()
		registrytest.Eventually(t, 15*time.Second, func() error {
			_, stat, err := cons.conn.Get(path)
			if err != nil {
				return err
			}
			if now := prov.conn.SessionID(); now == sid || stat.EphemeralOwner != now {
				return errors.New("the instance node is not owned by the provider's new session")
			}
			return nil
		})
		t.Logf("round %d: registered again %v after the session expired", round, time.Since(start))
		acl, _, err := cons.conn.GetACL(path)
		if err != nil || !slices.Equal(acl, want) {
			t.Errorf("round %d: the ACL of the re-created node is %+v (%v), want %+v", round, acl, err, want)
		}
		if err := anon.conn.Delete(path, -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("round %d: raw delete of the re-created node without credentials: %v, want ErrNoAuth", round, err)
		}
	}
	// The provider still writes in its new session, and cleans up.
	b := inst(key, "b", 2)
	mustRegister(t, prov, b)
	registrytest.WaitDiscover(t, anon, key, 5*time.Second, registrytest.HasIDs("a", "b"))
	if err := prov.Deregister(ctx, b); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	registrytest.WaitDiscover(t, anon, key, 5*time.Second, registrytest.HasIDs("a"))

	out := logs.String()
	checkNoSecret(t, "the log", out)
	if !strings.Contains(out, "the ACL of a znode") {
		t.Errorf("the refused writes were not logged with an explanation:\n%s", out)
	}
	for _, s := range []string{fmt.Sprint(prov.cfg), fmt.Sprintf("%+v|%#v|%v", prov.cfg, prov.cfg, &prov.cfg),
		fmt.Sprintf("%v|%+v|%#v|%s", prov, prov, prov, []any{prov})} {
		checkNoSecret(t, "the printed Config", s)
	}
}

// TestDigestAuthNoWorldRead: with world-read=false (here from the URL)
// only the credentials read, and a reader without them gets an explained
// error instead of an empty list.
func TestDigestAuthNoWorldRead(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	u := "zookeeper://" + url.UserPassword(zkTestUser, zkPassword).String() + "@" + srv.Addr() + base + zkCredsQuery + "&world-read=false"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, u)
	if err != nil {
		t.Fatalf("Open(%s): %v", registry.RedactURL(u), err)
	}
	defer r.Close()
	prov := r.(*Registry)
	key := registrytest.UniqueKey(t)
	mustRegister(t, prov, inst(key, "a", 1))
	acl, _, err := prov.conn.GetACL(prov.nodePath(key, "a"))
	if want := zk.DigestACL(zk.PermAll, zkTestUser, zkPassword); err != nil || !slices.Equal(acl, want) {
		t.Errorf("the ACL of the instance node is %+v (%v), want %+v", acl, err, want)
	}
	var logs secretLog
	cons := openTest(t, srv, base, withCreds(zkTestUser, zkPassword, &logs))
	registrytest.WaitDiscover(t, cons, key, 5*time.Second, registrytest.HasIDs("a"))
	for name, mod := range map[string]func(*Config){
		"no credentials": func(c *Config) { c.Logger = logs.Logger() },
		"wrong password": withCreds(zkTestUser, zkWrongPass, &logs),
	} {
		reader := openTest(t, srv, base, mod)
		_, err := reader.Discover(ctx, key)
		wantNoAuth(t, name+": Discover", err)
	}
	checkNoSecret(t, "the log", logs.String())
}

// TestCredentialErrors: credentials in URLs and Configs are checked, and
// no error of Open shows the password, also when the server cannot be
// reached.
func TestCredentialErrors(t *testing.T) {
	c, err := configFromURL(mustURL(t, "zookeeper://us%40er:p%40ss%3Aw%2Ford@h:1/x?world-read=false"))
	if err != nil || c.Username != "us@er" || c.Password != "p@ss:w/ord" || !c.NoWorldRead {
		t.Errorf("configFromURL: %+v, %v", c, err)
	}
	c, err = configFromURL(mustURL(t, "zookeeper://h:1/x?world-read=true"))
	if err != nil || c.NoWorldRead {
		t.Errorf("world-read=true: %v, %v", c.NoWorldRead, err)
	}
	for _, tc := range []struct{ url, field string }{
		{"zookeeper://user@h:1/x", "URL user info"},
		{"zookeeper://user:@h:1/x", "URL user info"},
		{"zookeeper://:" + zkPassword + "@h:1/x", "URL user info"},
		{"zookeeper://" + zkPassword + "@h:1/x", "URL user info"},
		{"zookeeper://u:" + zkPassword + "@h:1/x?ttl=%zz&password=" + zkPassword, "URL query"},
		{"zookeeper://u:" + zkPassword + "@h:1/x?password=" + zkPassword, "URL query parameter"},
		{"zookeeper://u:" + zkPassword + "@h:0/x", "URL host"},
		{"zookeeper://u:" + zkPassword + "@h:1/a//b", "URL path"},
		{"zookeeper://u:" + zkPassword + "@h:1/x?world-read=perhaps", "world-read"},
		{"zookeeper://h:1/x?world-read=false", "world read"},
	} {
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
		{Servers: []string{"h:1"}, Username: "u"},
		{Servers: []string{"h:1"}, Password: zkPassword},
		{Servers: []string{"h:1"}, Username: "a:b", Password: zkPassword},
	} {
		_, err := New(context.Background(), c)
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "username") {
			t.Errorf("New(%v) = %v; want an InputError naming the username", c, err)
		}
		if err != nil {
			checkNoSecret(t, "the error of New", err.Error())
		}
	}

	// A closed port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logs secretLog
	r, err := New(context.Background(), Config{Servers: []string{addr}, DialTimeout: 500 * time.Millisecond,
		Username: zkTestUser, Password: zkPassword, Logger: logs.Logger()})
	if err != nil {
		t.Fatalf("New on a closed port: %v; want a registry that keeps connecting", err)
	}
	err = r.Register(context.Background(), registry.Instance{Key: registrytest.UniqueKey(t), ID: "a", Addr: "127.0.0.1:1"})
	r.Close()
	if err == nil {
		t.Fatal("Register on a closed port: no error")
	}
	t.Logf("closed port: %v", err)
	checkNoSecret(t, "the error of Register", err.Error())
	checkNoSecret(t, "the log", logs.String())
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), addr) {
		t.Errorf("New on a closed port did not warn, naming the address:\n%s", logs.String())
	}

	cfg := Config{Servers: []string{"h1:2181", "h2:2181"}, BasePath: "/s", Username: zkTestUser, Password: zkPassword, NoWorldRead: true}
	if got, want := cfg.String(), "zookeeper://storks:redacted@h1:2181,h2:2181/s?world-read=false"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var text, js bytes.Buffer
	slog.New(slog.NewTextHandler(&text, nil)).Info("config", "cfg", cfg)
	slog.New(slog.NewJSONHandler(&js, nil)).Info("config", "cfg", cfg, "ptr", &cfg)
	for _, s := range []string{fmt.Sprintf("%v|%+v|%#v|%s|%v", cfg, cfg, cfg, &cfg, []Config{cfg}), text.String(), js.String()} {
		checkNoSecret(t, "the printed Config", s)
		if !strings.Contains(s, "storks:redacted@") {
			t.Errorf("the printed Config %q does not show the user", s)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestDigestAuthRules: with credentials, the rule node and the parents
// PutRule creates get the registry's ACL: everyone reads and watches the
// rule, only the same identity changes or deletes it, and the refusals
// explain themselves without a password.
func TestDigestAuthRules(t *testing.T) {
	srv := testservers.StartZooKeeper(t)
	base := uniqueBase(t)
	var logs secretLog
	op := openTest(t, srv, base, withCreds(zkTestUser, zkPassword, &logs))
	anon := openTest(t, srv, base, func(c *Config) { c.Logger = logs.Logger() })
	other := openTest(t, srv, base, withCreds(zkOtherUser, zkOtherPass, &logs))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := registrytest.UniqueKey(t)
	if err := op.PutRule(ctx, key, []byte("doc")); err != nil {
		t.Fatalf("PutRule: %v", err)
	}
	want := append(zk.DigestACL(zk.PermAll, zkTestUser, zkPassword), zk.WorldACL(zk.PermRead)...)
	for p := op.rulePath(key); len(p) > len("/storks-test"); p = p[:strings.LastIndexByte(p, '/')] {
		acl, _, err := op.conn.GetACL(p)
		if err != nil || !slices.Equal(acl, want) {
			t.Errorf("the ACL of %s is %+v (%v), want %+v", p, acl, err, want)
		}
	}
	w, err := anon.WatchRule(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if doc, err := w.Next(ctx); err != nil || string(doc) != "doc" {
		t.Fatalf("WatchRule without credentials: Next = %q, %v", doc, err)
	}
	for name, r := range map[string]*Registry{"no credentials": anon, "another user": other} {
		wantNoAuth(t, name+": PutRule", r.PutRule(ctx, key, []byte("hijack")))
		wantNoAuth(t, name+": DeleteRule", r.DeleteRule(ctx, key))
		wantNoAuth(t, name+": PutRule of another key", r.PutRule(ctx, registry.ServiceKey{Service: key.Service, Version: "2"}, []byte("x")))
	}
	if doc, err := anon.GetRule(ctx, key); err != nil || string(doc) != "doc" {
		t.Errorf("GetRule after the refused writes = %q, %v", doc, err)
	}
	if err := op.PutRule(ctx, key, []byte("new")); err != nil {
		t.Fatalf("PutRule by the owner: %v", err)
	}
	if doc, err := w.Next(ctx); err != nil || string(doc) != "new" {
		t.Errorf("Next after the owner's PutRule = %q, %v", doc, err)
	}
	checkNoSecret(t, "the log", logs.String())
}
