package browsertest

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/storks-rpc/storks/console"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/loadtest"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/etcd"
	"github.com/storks-rpc/storks/registry/rule"
	storks "github.com/storks-rpc/storks/runtime"
)

var updateDocs = flag.Bool("update-docs", false, "also write the service page's screenshot to docs/console.png")

const (
	svc     = greeterv1.Greeter_ServiceName
	version = "console"
	token   = "browser-test-token"
	ttl     = 3 * time.Second
)

var key = registry.ServiceKey{Service: svc, Version: version}

// chromium returns the browser to drive: $CHROMIUM, or chromium on $PATH.
// Without one the test fails under CI=true and skips elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	msg := "chromium is not installed (make deps-chromium installs Debian's; or set $CHROMIUM)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping (CI=true makes this a failure)")
	return ""
}

var providerBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "storks-console-browser-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "provider")
	// Built in the main module (the repository's root), with its go.sum.
	cmd := exec.Command("go", "build", "-o", bin, "./examples/provider")
	cmd.Dir = filepath.Join("..", "..")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build examples/provider: %v\n%s", err, out)
	}
	return bin, nil
})

var readyRE = regexp.MustCompile(`^READY (\S+) (\S+)$`)

type proc struct {
	name, addr string
	cmd        *exec.Cmd
}

// startProvider starts an examples/provider process registered in url.
func startProvider(t *testing.T, url, name string) *proc {
	t.Helper()
	bin, err := providerBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-registry", url, "-name", name, "-version", version,
		"-load-report", "500ms", "-shutdown-wait", "200ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[2]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("provider %s exited before serving", name)
		}
		return &proc{name: name, addr: a, cmd: cmd}
	case <-time.After(30 * time.Second):
		t.Fatalf("provider %s not ready after 30s", name)
	}
	return nil
}

// startCalls calls c from callers goroutines until Stop, recording which
// provider answered each call and when it started.
func startCalls(c greeterv1.GreeterClient, callers int) *loadtest.Log {
	return loadtest.StartLog(callers, 5*time.Second, 3*time.Millisecond, func(ctx context.Context) (string, error) {
		reply, err := c.SayHello(ctx, &greeterv1.HelloRequest{Name: "console"})
		return reply.GetProvider(), err
	})
}

// browser starts a headless chromium with a fresh profile.
func browser(t *testing.T, bin string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 820),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(acancel)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	// Start the browser now, so that its start-up is not in a timing.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	return ctx
}

// run runs browser actions with a timeout, failing the test on error.
func run(t *testing.T, ctx context.Context, what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// get runs one browser action that returns a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// eval evaluates JavaScript in the page, awaiting a promise.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return get(t, ctx, js, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
}

// waitJS polls a JavaScript condition in the page until it is true, and
// returns how long that took.
func waitJS(t *testing.T, ctx context.Context, what, cond string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+cond+")"))
		if err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
		if ok {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
			t.Fatalf("browser: %s: not true after %v: %s\npage:\n%s", what, timeout, cond, html)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ruleDoc(t *testing.T, store registry.RuleStore) string {
	t.Helper()
	doc, err := store.GetRule(context.Background(), key)
	if errors.Is(err, registry.ErrNoRule) {
		return "(none)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// The web console in a real browser, against three examples/provider
// processes and a consumer on an embedded etcd: the services page, a
// write refused without the token and a forged cross-site write, disable
// and enable with one click observed in the consumer's calls, a provider
// killed with SIGKILL leaving the page without a reload, and a screenshot.
func TestConsoleInBrowser(t *testing.T) {
	bin := chromium(t)
	url := testservers.EtcdRegistryURL(t, ttl)
	if url == "" {
		return
	}
	ps := make([]*proc, 3)
	for i := range ps {
		ps[i] = startProvider(t, url, fmt.Sprintf("p%d", i+1))
	}
	ctx := context.Background()
	reg, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	store, err := rule.Store(reg)
	if err != nil {
		t.Fatalf("the etcd registry keeps no rules: %v", err)
	}
	// The consumer: a storks client in this process, which registers its
	// consumer record, and calls in a loop.
	creg, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { creg.Close() })
	cli, err := storks.NewClient(storks.WithRegistry(creg), storks.WithApplication("browser-test-consumer"),
		storks.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ref, err := cli.Refer(ctx, svc, storks.WithVersion(version), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	calls := startCalls(greeterv1.NewGreeterClient(ref), 2)
	t.Cleanup(func() { calls.Stop() })

	// The console, served on loopback.
	logs := &syncWriter{}
	c, err := console.New(reg, console.Options{
		Token: token, RegistryURL: url, Refresh: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(func() { srv.Close(); c.Close() })
	b := browser(t, bin)

	// 1. The services page lists the service with 3 providers and 1
	// consumer.
	row := fmt.Sprintf(`tr[data-service="%s"][data-version="%s"]`, svc, version)
	run(t, b, "open the services page", 20*time.Second, chromedp.Navigate(srv.URL+"/"))
	took := waitJS(t, b, "the service with 3 providers and 1 consumer",
		`document.querySelector('`+row+` td.providers[data-n="3"]') && document.querySelector('`+row+` td.consumers[data-n="1"]')`, 20*time.Second)
	t.Logf("services page: %s with 3 providers and 1 consumer (%v after load)", key, took.Round(time.Millisecond))
	saveShot(t, "console-services.png", get(t, b, "screenshot", chromedp.FullScreenshot(100)))

	// 2. A write without the token, from the console's own page: refused,
	// nothing changed.
	before := ruleDoc(t, store)
	status := eval[int](t, b, fmt.Sprintf(`fetch("/provider", {method: "POST", body: new URLSearchParams({service: %q, version: %q, addr: %q, action: "disable"})}).then(r => r.status)`,
		svc, version, ps[0].addr))
	if status != http.StatusForbidden {
		t.Fatalf("write without the token: status %d, want 403", status)
	}
	if after := ruleDoc(t, store); after != before {
		t.Fatalf("a write without the token changed the rules: %s", after)
	}
	t.Logf("write without the token: 403, rules unchanged (%s)", before)

	// Log in with the token.
	run(t, b, "log in", 20*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#login input[name="token"]`), token),
		chromedp.Click(chromedp.CSS(`#login button`)),
		chromedp.WaitVisible(chromedp.CSS(`#mode`)),
	)

	// 3. A forged cross-site request: a page of another origin posts a
	// form to the console while the browser is logged in.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/provider">
<input name="service" value="%s"><input name="version" value="%s"><input name="addr" value="%s"><input name="action" value="disable">
</form><script>document.getElementById("f").submit()</script>`, srv.URL, svc, version, ps[0].addr)
	}))
	t.Cleanup(evil.Close)
	run(t, b, "the forged cross-site request", 20*time.Second,
		chromedp.Navigate(evil.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#error`)),
	)
	forged := get(t, b, "the refusal", chromedp.Text(chromedp.CSS(`#error`)))
	if !strings.Contains(forged, "Cross-site request refused") {
		t.Fatalf("forged cross-site request: the page says %q", forged)
	}
	if after := ruleDoc(t, store); after != before {
		t.Fatalf("a forged cross-site request changed the rules: %s", after)
	}
	t.Logf("forged cross-site request from %s: refused (%q), rules unchanged", evil.URL, forged)

	// 4. Disable p2 with one click: its consumer sends it no call within
	// 1 s; then enable it again.
	target := ps[1]
	prow := fmt.Sprintf(`tr[data-addr="%s"]`, target.addr)
	run(t, b, "open the service page", 20*time.Second,
		chromedp.Navigate(srv.URL+"/service?service="+svc+"&version="+version),
		chromedp.WaitVisible(chromedp.CSS(prow+` button.disable`)),
	)
	waitJS(t, b, "every provider has answered", `document.querySelectorAll("tr.provider").length === 3`, 10*time.Second)
	if n, _, _, _ := calls.Answered(target.name, time.Now().Add(-time.Second), time.Now()); n == 0 {
		t.Fatalf("%s answered no call before it was disabled", target.name)
	}
	clicked := time.Now()
	run(t, b, "click disable", 20*time.Second, chromedp.Click(chromedp.CSS(prow+` button.disable`)))
	shown := waitJS(t, b, "the provider shown disabled", `document.querySelector('`+prow+`[data-state="disabled"]')`, 10*time.Second)
	if !strings.Contains(ruleDoc(t, store), `"disabled": true`) {
		t.Fatalf("rules after the click: %s", ruleDoc(t, store))
	}
	time.Sleep(2500 * time.Millisecond)
	_, _, _, last := calls.Answered(target.name, clicked, time.Now())
	n, all, _, _ := calls.Answered(target.name, clicked.Add(time.Second), time.Now())
	if n > 0 || all == 0 {
		t.Fatalf("%s answered %d of %d calls started 1 s to 2.5 s after the click on disable", target.name, n, all)
	}
	lastMs := "none after the click"
	if !last.IsZero() {
		lastMs = fmt.Sprintf("the last started %v after the click", last.Sub(clicked).Round(time.Millisecond))
	}
	t.Logf("disable clicked: page showed it in %v; %s answered no call of %d from 1 s to 2.5 s after the click (%s)",
		shown.Round(time.Millisecond), target.name, all, lastMs)
	// A screenshot of the service page with the disabled provider and
	// the load charts (for docs/, after a longer chart).
	if *updateDocs {
		time.Sleep(25 * time.Second)
	} else {
		time.Sleep(1500 * time.Millisecond)
	}
	png := get(t, b, "screenshot", chromedp.FullScreenshot(100))
	saveShot(t, "console-service.png", png)
	if *updateDocs {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "console.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	enabled := time.Now()
	run(t, b, "click enable", 20*time.Second, chromedp.Click(chromedp.CSS(prow+` button.enable`)))
	waitJS(t, b, "the provider shown enabled", `document.querySelector('`+prow+`[data-state="enabled"]')`, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n, _, first, _ := calls.Answered(target.name, enabled, time.Now()); n > 0 {
			t.Logf("enable clicked: %s answered again from %v after the click", target.name, first.Sub(enabled).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s answered no call within 5 s of the click on enable", target.name)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A bad rule typed into the rules page is refused with the message of
	// storks rule set, and nothing is stored.
	before = ruleDoc(t, store)
	bad := `{"version": 1, "overrides": [{"match": {"addr": "` + target.addr + `"}, "weight": 2000000}]}`
	run(t, b, "save a bad rule", 20*time.Second,
		chromedp.Navigate(srv.URL+"/rules?service="+svc+"&version="+version),
		chromedp.WaitVisible(chromedp.CSS(`#edit-rules textarea`)),
		chromedp.SetValue(chromedp.CSS(`#edit-rules textarea`), bad),
		chromedp.Click(chromedp.CSS(`#edit-rules button`)),
		chromedp.WaitVisible(chromedp.CSS(`#error`)),
	)
	refused := get(t, b, "the refusal", chromedp.Text(chromedp.CSS(`#error`)))
	_, perr := rule.Parse([]byte(bad))
	if perr == nil || !strings.Contains(refused, perr.Error()) {
		t.Fatalf("bad rule: the page says %q, want %v", refused, perr)
	}
	if after := ruleDoc(t, store); after != before {
		t.Fatalf("a bad rule was stored: %s", after)
	}
	t.Logf("bad rule on the rules page: refused with %q, rules unchanged", perr)
	// Back to the service page, for the live update of a killed provider.
	run(t, b, "open the service page", 20*time.Second,
		chromedp.Navigate(srv.URL+"/service?service="+svc+"&version="+version),
		chromedp.WaitVisible(chromedp.CSS(prow)),
	)

	// 5. SIGKILL a provider: it leaves the page, without a reload, within
	// the TTL (and the console's refresh).
	victim := ps[2]
	vrow := fmt.Sprintf(`tr[data-addr="%s"]`, victim.addr)
	eval[bool](t, b, `window.__noReload = true`)
	// The load figures and charts move without a reload too.
	lrow := fmt.Sprintf(`tr[data-addr="%s"]`, ps[0].addr)
	load0 := eval[string](t, b, `document.querySelector('`+lrow+` td.load').textContent + document.querySelector('`+lrow+` polyline.load').getAttribute("points")`)
	moved := waitJS(t, b, "the load of "+ps[0].name+" moves", `(document.querySelector('`+lrow+` td.load').textContent + document.querySelector('`+lrow+` polyline.load').getAttribute("points")) !== `+strconv.Quote(load0), 10*time.Second)
	t.Logf("live: the load figures and chart of %s changed %v later without a reload (now %q)", ps[0].name, moved.Round(time.Millisecond),
		eval[string](t, b, `document.querySelector('`+lrow+` td.load').textContent`))
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	gone := waitJS(t, b, "the killed provider leaves the page", `!document.querySelector('`+vrow+`')`, ttl+5*time.Second)
	if !eval[bool](t, b, `window.__noReload === true`) {
		t.Fatal("the page was reloaded")
	}
	if gone > ttl+2*time.Second {
		t.Fatalf("the killed provider left the page after %v, more than the TTL %v + 2 s", gone, ttl)
	}
	t.Logf("SIGKILLed %s left the page %v after the kill (TTL %v), without a reload", victim.addr, time.Since(killed).Round(time.Millisecond), ttl)

	logged := logs.String()
	for _, want := range []string{"action=disable", "action=enable", "provider=" + target.addr, "who=\"session", "write refused"} {
		if !strings.Contains(logged, want) {
			t.Errorf("the console's log lacks %q:\n%s", want, logged)
		}
	}
}

// saveShot writes a screenshot under $STORKS_TEST_OUTPUT (make
// test-console: test-output/console/), or the test's temporary directory.
func saveShot(t *testing.T, name string, png []byte) {
	t.Helper()
	dir := os.Getenv("STORKS_TEST_OUTPUT")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
