package console_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/console"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

const svc = "storks.examples.greeter.v1.Greeter"

var key = registry.ServiceKey{Service: svc, Version: "v1"}

// flaky wraps a registry: while down, every call fails as an unreachable
// registry's do.
type flaky struct {
	*registry.Inproc
	down atomic.Bool
}

var errDown = &registry.UnreachableError{Errs: []error{errors.New("dial tcp 127.0.0.1:2379: connection refused (etcd://root:hunter2@127.0.0.1:2379/storks)")}}

func (f *flaky) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Inproc.Services(ctx)
}

func (f *flaky) GetRule(ctx context.Context, k registry.ServiceKey) ([]byte, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Inproc.GetRule(ctx, k)
}

func (f *flaky) Rules(ctx context.Context) ([]registry.ServiceKey, error) {
	if f.down.Load() {
		return nil, errDown
	}
	return f.Inproc.Rules(ctx)
}

func (f *flaky) PutRule(ctx context.Context, k registry.ServiceKey, doc []byte) error {
	if f.down.Load() {
		return errDown
	}
	return f.Inproc.PutRule(ctx, k, doc)
}

func (f *flaky) GetRuleRevision(ctx context.Context, k registry.ServiceKey) ([]byte, int64, error) {
	if f.down.Load() {
		return nil, 0, errDown
	}
	return f.Inproc.GetRuleRevision(ctx, k)
}

func (f *flaky) PutRuleIf(ctx context.Context, k registry.ServiceKey, doc []byte, rev int64) error {
	if f.down.Load() {
		return errDown
	}
	return f.Inproc.PutRuleIf(ctx, k, doc, rev)
}

func (f *flaky) DeleteRuleIf(ctx context.Context, k registry.ServiceKey, rev int64) error {
	if f.down.Load() {
		return errDown
	}
	return f.Inproc.DeleteRuleIf(ctx, k, rev)
}

type fixture struct {
	reg  *flaky
	c    *console.Console
	srv  *httptest.Server
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func provider(i int) registry.Instance {
	return registry.Instance{
		Key: key, ID: fmt.Sprintf("p%d", i), Addr: fmt.Sprintf("127.0.0.1:%d", 9000+i), Weight: 100,
		Metadata: map[string]string{
			registry.MetadataRegisteredAt: fmt.Sprint(time.Now().Add(-time.Minute).UnixMilli()),
			registry.MetadataLoad:         fmt.Sprintf("cps=%d,inflight=%d,at=%d", 10*i, i, time.Now().UnixMilli()),
		},
	}
}

func start(t *testing.T, token string) *fixture {
	t.Helper()
	f := &fixture{reg: &flaky{Inproc: registry.NewInproc()}, logs: &syncBuffer{}}
	t.Cleanup(func() { f.reg.Close() })
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := f.reg.Register(ctx, provider(i)); err != nil {
			t.Fatal(err)
		}
	}
	cons := registry.Instance{Key: registry.ConsumerKey(key), ID: "c1", Addr: "127.0.0.1:0",
		Metadata: map[string]string{registry.MetadataApplication: "shop", registry.MetadataPID: "42"}}
	if err := f.reg.Register(ctx, cons); err != nil {
		t.Fatal(err)
	}
	c, err := console.New(f.reg, console.Options{
		Token: token, Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
		RegistryURL: "etcd://root:hunter2@127.0.0.1:2379/storks?token=abc",
		Refresh:     30 * time.Millisecond, Heartbeat: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.c = c
	f.srv = httptest.NewServer(c)
	t.Cleanup(func() { f.srv.Close(); c.Close() })
	f.waitBody(t, "/", `data-n="3"`)
	return f
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitBody waits until the page at path contains want.
func (f *fixture) waitBody(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := f.get(t, path)
		if strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q:\n%s", path, want, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// post sends a form with optional headers, without following redirects.
func (f *fixture) post(t *testing.T, client *http.Client, path string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = noRedirect(nil)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func keyForm(extra ...string) url.Values {
	v := url.Values{"service": {svc}, "version": {"v1"}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func (f *fixture) rules(t *testing.T) *rule.Set {
	t.Helper()
	s, err := rule.Load(context.Background(), f.reg.Inproc, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServicesPage(t *testing.T) {
	f := start(t, "")
	body := f.waitBody(t, "/", `class="consumers" data-n="1"`)
	for _, want := range []string{svc, `data-n="3"`, "v1", `class="health ok"`, "read-only", "/static/console.js"} {
		if !strings.Contains(body, want) {
			t.Errorf("services page lacks %q", want)
		}
	}
	// Credentials of the registry URL are never shown.
	for _, secret := range []string{"hunter2", "abc"} {
		if strings.Contains(body, secret) {
			t.Errorf("services page shows the secret %q", secret)
		}
	}
	if !strings.Contains(body, "etcd://root:redacted@127.0.0.1:2379/storks?token=redacted") {
		t.Errorf("services page does not show the redacted registry URL")
	}
	// The static assets are embedded.
	for _, p := range []string{"/static/console.js", "/static/console.css"} {
		if code, b := f.get(t, p); code != 200 || len(b) < 100 {
			t.Errorf("%s: %d, %d bytes", p, code, len(b))
		}
	}
}

func TestServicePage(t *testing.T) {
	f := start(t, "")
	body := f.waitBody(t, "/service?"+keyQ(), "shop")
	for _, want := range []string{"127.0.0.1:9001", "127.0.0.1:9003", "30 cps, 3 in flight", "<svg class=\"chart\"", "<polyline", "1m0s", `data-state="enabled"`} {
		if !strings.Contains(body, want) {
			t.Errorf("service page lacks %q", want)
		}
	}
	// Read-only: no action buttons.
	if strings.Contains(body, `value="disable"`) {
		t.Error("read-only console shows a disable button")
	}
	// A rule shows as the providers' state.
	if _, err := rule.Update(context.Background(), f.reg.Inproc, key, func(s *rule.Set) error {
		s.Disable(rule.Match{Addr: "127.0.0.1:9002"})
		s.SetTag(rule.Match{Addr: "127.0.0.1:9003"}, "canary")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	body = f.waitBody(t, "/service?"+keyQ(), `data-addr="127.0.0.1:9002" data-id="p2" data-state="disabled"`)
	if !strings.Contains(body, "canary") || !strings.Contains(body, "2 of 3 enabled") {
		t.Errorf("service page does not show the rule's effect:\n%s", body)
	}
}

func keyQ() string { return "service=" + url.QueryEscape(svc) + "&version=v1" }

func TestPageErrors(t *testing.T) {
	f := start(t, "tok")
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/service?service=no.Such&version=v1", 404, "There is no service no.Such:v1"},
		{"/service?service=no.Such", 404, "There is no service no.Such in the registry"},
		{"/service?service=a/b", 400, `registry: service &#34;a/b&#34; contains &#39;/&#39;`},
		{"/service", 400, "registry: service must not be empty"},
		{"/service?service=" + svc + "@consumers", 400, "is a consumer key"},
		{"/rules?service=", 400, "must not be empty"},
		{"/nope", 404, "There is no page /nope"},
		{"/events?view=service&service=a:b", 400, "contains"},
	} {
		code, body := f.get(t, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d, want %d and %q in:\n%s", tc.path, code, tc.code, tc.want, body)
		}
	}
	// Writes are POST only.
	code, body := f.get(t, "/provider")
	if code != 405 || !strings.Contains(body, "writes are POST requests") {
		t.Errorf("GET /provider: %d\n%s", code, body)
	}
	// Another Host header (DNS rebinding) is refused when Hosts is set.
	c, err := console.New(f.reg, console.Options{Hosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://evil.example:8080/", nil)
	c.ServeHTTP(rec, req)
	if rec.Code != http.StatusMisdirectedRequest {
		t.Errorf("Host evil.example: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1:8080/", nil))
	if rec.Code != 200 {
		t.Errorf("Host 127.0.0.1: %d", rec.Code)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	f := start(t, "")
	for _, p := range []string{"/provider", "/rules", "/login"} {
		code, body := f.post(t, nil, p, keyForm("action", "disable", "addr", "127.0.0.1:9001", "op", "delete-all", "token", "x"), nil)
		if code != 403 || !strings.Contains(body, "read-only") {
			t.Errorf("POST %s on a read-only console: %d\n%s", p, code, body)
		}
	}
	if s := f.rules(t); !s.Empty() {
		t.Errorf("a read-only console wrote rules: %+v", s)
	}
	if !strings.Contains(f.logs.String(), "write refused") {
		t.Errorf("refused writes are not logged:\n%s", f.logs)
	}
}

func TestWritesNeedTokenAndSameOrigin(t *testing.T) {
	f := start(t, "tok")
	disable := keyForm("action", "disable", "addr", "127.0.0.1:9001")
	origin := map[string]string{"Origin": f.srv.URL}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  map[string]string
		want string
	}{
		{"no token", disable, origin, "Writes need the console&#39;s write token"},
		{"wrong token header", disable, map[string]string{"X-Storks-Token": "nope"}, "The write token is wrong"},
		{"wrong token field", keyForm("action", "disable", "addr", "127.0.0.1:9001", "token", "nope"), nil, "The write token is wrong"},
		{"cross-origin with the token", disable, map[string]string{"X-Storks-Token": "tok", "Origin": "http://evil.example"}, "Cross-site request refused"},
		{"cross-site fetch with the token", disable, map[string]string{"X-Storks-Token": "tok", "Sec-Fetch-Site": "cross-site"}, "Cross-site request refused"},
		{"same-site other origin", disable, map[string]string{"X-Storks-Token": "tok", "Origin": "http://127.0.0.1:1"}, "another origin"},
	} {
		code, body := f.post(t, nil, "/provider", tc.form, tc.hdr)
		if code != 403 || !strings.Contains(body, tc.want) || !strings.Contains(body, "Nothing was changed") {
			t.Errorf("%s: %d, want 403 and %q:\n%s", tc.name, code, tc.want, body)
		}
	}
	if s := f.rules(t); !s.Empty() {
		t.Fatalf("a refused write changed the rules: %+v", s)
	}
	// The token in the header, from a script (no Origin): allowed.
	code, body := f.post(t, nil, "/provider", disable, map[string]string{"X-Storks-Token": "tok"})
	if code != 303 {
		t.Fatalf("write with the token: %d\n%s", code, body)
	}
	if e := f.rules(t).EffectOn(provider(1)); !e.Disabled {
		t.Fatalf("provider 1 not disabled: %+v", f.rules(t))
	}
	logs := f.logs.String()
	for _, want := range []string{"console: action", "action=disable", "provider=127.0.0.1:9001", "who=token", "result=ok", "remote=127.0.0.1:", "service=storks.examples.greeter.v1.Greeter:v1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the action log lacks %q:\n%s", want, logs)
		}
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// login logs a cookie-jar client in and returns it with the CSRF token.
func (f *fixture) login(t *testing.T) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	cl := noRedirect(jar)
	origin := map[string]string{"Origin": f.srv.URL}
	if code, body := f.post(t, cl, "/login", url.Values{"token": {"wrong"}}, origin); code != 403 || !strings.Contains(body, "wrong") {
		t.Fatalf("login with a wrong token: %d\n%s", code, body)
	}
	if code, body := f.post(t, cl, "/login", url.Values{"token": {"tok"}}, map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Fatalf("cross-origin login: %d\n%s", code, body)
	}
	if code, body := f.post(t, cl, "/login", url.Values{"token": {"tok"}, "back": {"//evil.example/"}}, origin); code != 303 {
		t.Fatalf("login: %d\n%s", code, body)
	}
	resp, err := cl.Get(f.srv.URL + "/service?" + keyQ())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindStringSubmatch(string(b))
	if m == nil || !strings.Contains(string(b), `value="disable"`) {
		t.Fatalf("a logged-in page has no CSRF token or no buttons:\n%s", b)
	}
	return cl, m[1]
}

func TestSessionWrites(t *testing.T) {
	f := start(t, "tok")
	cl, csrf := f.login(t)
	origin := map[string]string{"Origin": f.srv.URL}
	disable := keyForm("action", "disable", "addr", "127.0.0.1:9002")
	// Without the CSRF token, or with another origin, or without any
	// origin header: refused.
	if code, _ := f.post(t, cl, "/provider", disable, origin); code != 403 {
		t.Errorf("session write without CSRF token: %d", code)
	}
	disable.Set("csrf", csrf)
	if code, _ := f.post(t, cl, "/provider", disable, map[string]string{"Origin": "http://127.0.0.1:1"}); code != 403 {
		t.Errorf("session write from another origin: %d", code)
	}
	if code, body := f.post(t, cl, "/provider", disable, nil); code != 403 || !strings.Contains(body, "must carry an Origin") {
		t.Errorf("session write without Origin: %d\n%s", code, body)
	}
	if !f.rules(t).Empty() {
		t.Fatal("a refused write changed the rules")
	}
	if code, body := f.post(t, cl, "/provider", disable, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": f.srv.URL}); code != 303 {
		t.Fatalf("session write: %d\n%s", code, body)
	}
	f.waitBody(t, "/service?"+keyQ(), `data-addr="127.0.0.1:9002" data-id="p2" data-state="disabled"`)
	// Weight, tag, untag, enable, and their validation.
	for _, tc := range []struct {
		action, value string
		code          int
		want          string
	}{
		{"weight", "800", 303, ""},
		{"weight", "-1", 400, `weight &#34;-1&#34; is not a number from 0 to 1000000`},
		{"weight", "x", 400, "is not a number"},
		{"tag", "canary", 303, ""},
		{"tag", "bad tag", 400, "may hold only letters"},
		{"untag", "", 303, ""},
		{"enable", "", 303, ""},
		{"explode", "", 400, "unknown action"},
	} {
		form := keyForm("action", tc.action, "addr", "127.0.0.1:9002", "value", tc.value, "csrf", csrf)
		code, body := f.post(t, cl, "/provider", form, origin)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s %q: %d, want %d and %q:\n%s", tc.action, tc.value, code, tc.code, tc.want, body)
		}
	}
	e := f.rules(t).EffectOn(provider(2))
	if e.Disabled || e.Weight != 800 || e.Tag != "" {
		t.Errorf("effect after weight 800, tag, untag, enable: %+v", e)
	}
	if code, _ := f.post(t, cl, "/provider", keyForm("action", "disable", "addr", "nohost", "csrf", csrf), origin); code != 400 {
		t.Errorf("bad addr: %d", code)
	}
	// Logging out ends the session.
	if code, _ := f.post(t, cl, "/logout", url.Values{"csrf": {csrf}}, origin); code != 303 {
		t.Errorf("logout: %d", code)
	}
	if code, _ := f.post(t, cl, "/provider", disable, origin); code != 403 {
		t.Errorf("write after logout: %d", code)
	}
}

func TestRulesPage(t *testing.T) {
	f := start(t, "tok")
	cl, csrf := f.login(t)
	origin := map[string]string{"Origin": f.srv.URL}
	// A bad document: refused with rule.Parse's message, as storks rule set says it.
	bad := `{"version": 1, "overrides": [{"match": {"addr": "127.0.0.1:9001"}, "weight": 2000000}]}`
	_, perr := rule.Parse([]byte(bad))
	code, body := f.post(t, cl, "/rules", keyForm("op", "save", "doc", bad, "csrf", csrf), origin)
	if code != 400 || !strings.Contains(body, "rule: overrides[0].weight: 2000000 is outside 0..1000000") || !strings.Contains(body, perr.Error()) {
		t.Fatalf("bad rule: %d\n%s", code, body)
	}
	if !strings.Contains(body, "2000000") {
		t.Error("the refused document is not shown again for editing")
	}
	for doc, want := range map[string]string{
		`{"version": 2}`:                  "rule: version: 2 is not supported",
		`{"version": 1, "colour": "red"}`: "rule: colour: unknown field",
		`not json`:                        "rule: not valid JSON",
		`{"version":1,"policy":{"failMode":"sometimes"}}`: "rule: policy.failMode",
	} {
		code, body := f.post(t, cl, "/rules", keyForm("op", "save", "doc", doc, "csrf", csrf), origin)
		if code != 400 || !strings.Contains(body, want) {
			t.Errorf("doc %s: %d, want %q\n%s", doc, code, want, body)
		}
	}
	if !f.rules(t).Empty() {
		t.Fatal("a refused document was stored")
	}
	good := `{"version": 1, "overrides": [{"match": {"addr": "127.0.0.1:9001"}, "weight": 5}], "policy": {"timeout": "300ms"}}`
	if code, body := f.post(t, cl, "/rules", keyForm("op", "save", "doc", good, "csrf", csrf), origin); code != 303 {
		t.Fatalf("save: %d\n%s", code, body)
	}
	// Add an override: an empty match is refused with the rule's message.
	code, body = f.post(t, cl, "/rules", keyForm("op", "add", "weight", "7", "csrf", csrf), origin)
	if code != 400 || !strings.Contains(body, "rule: overrides[1].match: must set id, addr or metadata") {
		t.Errorf("add with an empty match: %d\n%s", code, body)
	}
	if code, body := f.post(t, cl, "/rules", keyForm("op", "add", "match_metadata", "zone=b", "disabled", "true", "tag", "canary", "csrf", csrf), origin); code != 303 {
		t.Fatalf("add: %d\n%s", code, body)
	}
	s := f.rules(t)
	if len(s.Overrides) != 2 || s.Policy == nil || s.Overrides[1].Match.Metadata["zone"] != "b" || !*s.Overrides[1].Disabled {
		t.Fatalf("rules after save and add: %+v", s)
	}
	// The rules page lists them, with delete buttons and the document.
	resp, err := cl.Get(f.srv.URL + "/rules?" + keyQ())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"addr=127.0.0.1:9001", "weight 5", "metadata zone=b", "disabled, tag canary", `"timeout": "300ms"`, `value="delete"`} {
		if !strings.Contains(string(b), strings.ReplaceAll(want, `"`, "&#34;")) && !strings.Contains(string(b), want) {
			t.Errorf("rules page lacks %q", want)
		}
	}
	// Delete override 0; a stale index is refused.
	if code, body := f.post(t, cl, "/rules", keyForm("op", "delete", "index", "0", "match", "addr=127.0.0.1:9002", "csrf", csrf), origin); code != 400 || !strings.Contains(body, "is not the override shown") {
		t.Errorf("stale delete: %d\n%s", code, body)
	}
	if code, body := f.post(t, cl, "/rules", keyForm("op", "delete", "index", "0", "match", "addr=127.0.0.1:9001", "csrf", csrf), origin); code != 303 {
		t.Errorf("delete: %d\n%s", code, body)
	}
	if s := f.rules(t); len(s.Overrides) != 1 || s.Overrides[0].Match.Metadata["zone"] != "b" {
		t.Errorf("after delete: %+v", s)
	}
	if code, _ := f.post(t, cl, "/rules", keyForm("op", "delete-all", "csrf", csrf), origin); code != 303 {
		t.Errorf("delete-all: %d", code)
	}
	if !f.rules(t).Empty() {
		t.Error("delete-all left rules")
	}
	if code, body := f.post(t, cl, "/rules", keyForm("op", "nope", "csrf", csrf), origin); code != 400 || !strings.Contains(body, "unknown operation") {
		t.Errorf("unknown op: %d\n%s", code, body)
	}
	// The editor saves on the revision it showed: a change made meanwhile
	// (here with storks rule's code) is not overwritten, and the person is
	// told, with their version kept in the editor.
	revOf := func() string {
		resp, err := cl.Get(f.srv.URL + "/rules?" + keyQ())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`name="rev" value="(\d+)"`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("the rules editor has no revision:\n%s", b)
		}
		return string(m[1])
	}
	shown := revOf()
	if _, err := rule.Update(context.Background(), f.reg, key, func(s *rule.Set) error { s.SetWeight(rule.Match{Addr: "127.0.0.1:9002"}, 9); return nil }); err != nil {
		t.Fatal(err)
	}
	mine := `{"version": 1, "overrides": [{"match": {"addr": "127.0.0.1:9003"}, "weight": 3}]}`
	code, body = f.post(t, cl, "/rules", keyForm("op", "save", "doc", mine, "rev", shown, "csrf", csrf), origin)
	if code != 409 || !strings.Contains(body, "changed since this page was loaded; nothing was changed") || !strings.Contains(body, "127.0.0.1:9003") {
		t.Errorf("save on a stale revision: %d\n%s", code, body)
	}
	if s := f.rules(t); len(s.Overrides) != 1 || s.Overrides[0].Match.Addr != "127.0.0.1:9002" {
		t.Errorf("a save on a stale revision changed the rules: %+v", s)
	}
	if code, body := f.post(t, cl, "/rules", keyForm("op", "save", "doc", mine, "rev", revOf(), "csrf", csrf), origin); code != 303 {
		t.Errorf("save on the current revision: %d\n%s", code, body)
	}
	if s := f.rules(t); len(s.Overrides) != 1 || s.Overrides[0].Match.Addr != "127.0.0.1:9003" {
		t.Errorf("after a save on the current revision: %+v", s)
	}
	if code, body := f.post(t, cl, "/rules", keyForm("op", "save", "doc", mine, "rev", "x1", "csrf", csrf), origin); code != 400 || !strings.Contains(body, "rev") {
		t.Errorf("save with a malformed revision: %d\n%s", code, body)
	}
	// Read-only view of the rules page for a visitor without a session.
	code, body = f.get(t, "/rules?"+keyQ())
	if code != 200 || strings.Contains(body, "save the document") || !strings.Contains(body, "Log in with the write token") {
		t.Errorf("rules page without a session: %d\n%s", code, body)
	}
}

func TestRegistryDownShowsLastKnownState(t *testing.T) {
	f := start(t, "tok")
	f.waitBody(t, "/service?"+keyQ(), "127.0.0.1:9003")
	f.reg.down.Store(true)
	body := f.waitBody(t, "/service?"+keyQ(), "The registry is unreachable")
	for _, want := range []string{"127.0.0.1:9001", "127.0.0.1:9003", "Showing the last known state", "connection refused"} {
		if !strings.Contains(body, want) {
			t.Errorf("page with the registry down lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "hunter2") {
		t.Error("the registry error shows a password")
	}
	body = f.waitBody(t, "/", "The registry is unreachable")
	if !strings.Contains(body, `data-n="3"`) {
		t.Errorf("services page with the registry down lost the last known state:\n%s", body)
	}
	// A write while it is down fails with a registry error, and says so.
	code, body := f.post(t, nil, "/provider", keyForm("action", "disable", "addr", "127.0.0.1:9001"), map[string]string{"X-Storks-Token": "tok"})
	if code != 502 || !strings.Contains(body, "registry: writing the rules of") || strings.Contains(body, "hunter2") {
		t.Errorf("write while down: %d\n%s", code, body)
	}
	f.reg.down.Store(false)
	body = f.waitBody(t, "/", `class="updated"`)
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(body, "The registry is unreachable") {
		if time.Now().After(deadline) {
			t.Fatal("the banner stays after the registry is back")
		}
		time.Sleep(20 * time.Millisecond)
		_, body = f.get(t, "/")
	}
}

// The live region is pushed as server-sent events when the registry
// changes.
func TestEventsPushChanges(t *testing.T) {
	f := start(t, "")
	resp, err := http.Get(f.srv.URL + "/events?view=service&" + keyQ())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	events := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var ev strings.Builder
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				events <- ev.String()
				ev.Reset()
				continue
			}
			if d, ok := strings.CutPrefix(line, "data: "); ok {
				ev.WriteString(d + "\n")
			}
		}
		close(events)
	}()
	next := func(want string, present bool) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("event stream ended")
				}
				if strings.Contains(ev, want) == present {
					return
				}
			case <-timeout:
				t.Fatalf("no event with %q present=%v", want, present)
			}
		}
	}
	next("127.0.0.1:9003", true)
	start := time.Now()
	if err := f.reg.Deregister(context.Background(), provider(3)); err != nil {
		t.Fatal(err)
	}
	next("127.0.0.1:9003", false)
	t.Logf("a deregistered provider left the live page after %v", time.Since(start))
}

// Close stops every goroutine the console started, live pages included.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	reg := registry.NewInproc()
	defer reg.Close()
	if err := reg.Register(context.Background(), provider(1)); err != nil {
		t.Fatal(err)
	}
	before := goruntime.NumGoroutine()
	c, err := console.New(reg, console.Options{Refresh: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	resp, err := http.Get(srv.URL + "/events?view=services")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	if n := goruntime.NumGoroutine(); n <= before {
		t.Fatalf("no goroutines started? before %d, now %d", before, n)
	}
	c.Close()
	io.Copy(io.Discard, resp.Body) // the event stream ends
	resp.Body.Close()
	srv.Close()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			b := make([]byte, 1<<20)
			n := goruntime.Stack(b, true)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, goruntime.NumGoroutine(), b[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
