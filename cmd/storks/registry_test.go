package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

// newInproc returns the URL of an in-process registry of this test and a
// handle onto it. Commands run in-process (runInProcess, run) see what is
// registered through the handle; in-process registries are Listers.
func newInproc(t *testing.T) (string, registry.Registry) {
	t.Helper()
	u := "inproc://" + strings.NewReplacer("/", "-", " ", "_", "#", "_").Replace(t.Name())
	reg, err := registry.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if _, ok := reg.(registry.Lister); !ok {
		t.Fatalf("%T does not implement registry.Lister", reg)
	}
	return u, reg
}

// runInProcess runs the command line in this process, as the binary would.
func runInProcess(ctx context.Context, args ...string) result {
	var out, errOut syncBuffer
	code := run(ctx, args, strings.NewReader(""), &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func mustRegister(t *testing.T, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		if err := r.Register(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

func inst(service, version, group, id, addr string, md map[string]string) registry.Instance {
	return registry.Instance{
		Key: registry.ServiceKey{Service: service, Version: version, Group: group},
		ID:  id, Addr: addr, Weight: registry.DefaultWeight, Metadata: md,
	}
}

// tableRows returns the rows of a table printed by ls, split into fields.
func tableRows(t *testing.T, out string) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SERVICE") {
		t.Fatalf("no table header:\n%s", out)
	}
	var rows [][]string
	for _, l := range lines[1:] {
		rows = append(rows, columnGap.Split(strings.TrimSpace(l), -1))
	}
	return rows
}

// columnGap separates the columns of a table: two spaces or more (a cell,
// such as LOAD, may hold single spaces).
var columnGap = regexp.MustCompile(`\s{2,}`)

func TestLsWithLister(t *testing.T) {
	u, reg := newInproc(t)
	mustRegister(t, reg,
		inst("a.Greeter", "v1", "", "g1", "10.0.0.1:1", map[string]string{"zone": "b", "name": "p1"}),
		inst("a.Greeter", "v1", "", "g2", "10.0.0.2:1", nil),
		inst("a.Greeter", "v2", "blue", "g3", "10.0.0.3:1", nil),
		inst("a.Echo", "", "", "e1", "10.0.0.4:1", nil),
	)
	ctx := context.Background()

	r := runInProcess(ctx, "registry", "ls", "--registry", u)
	mustSucceed(t, r)
	want := [][]string{
		{"a.Echo", "-", "-", "e1", "10.0.0.4:1", "100", "-", "-", "-"},
		{"a.Greeter", "v1", "-", "g1", "10.0.0.1:1", "100", "-", "-", "name=p1,zone=b"},
		{"a.Greeter", "v1", "-", "g2", "10.0.0.2:1", "100", "-", "-", "-"},
		{"a.Greeter", "v2", "blue", "g3", "10.0.0.3:1", "100", "-", "-", "-"},
	}
	if got := tableRows(t, r.stdout); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("ls:\n%s\nwant rows %q", r.stdout, want)
	}

	// One service: every version and group.
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "a.Greeter")
	mustSucceed(t, r)
	if got := tableRows(t, r.stdout); !slices.EqualFunc(got, want[1:], slices.Equal) {
		t.Errorf("ls a.Greeter:\n%s\nwant rows %q", r.stdout, want[1:])
	}

	// One key.
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "--version", "v2", "--group", "blue", "a.Greeter")
	mustSucceed(t, r)
	if got := tableRows(t, r.stdout); !slices.EqualFunc(got, want[3:], slices.Equal) {
		t.Errorf("ls a.Greeter v2 blue:\n%s\nwant rows %q", r.stdout, want[3:])
	}

	// JSON.
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "-o", "json", "--version", "v1", "a.Greeter")
	mustSucceed(t, r)
	var got []struct {
		Service, Version string
		Instances        []struct {
			ID, Addr string
			Weight   int
			Metadata map[string]string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("ls -o json: %v\n%s", err, r.stdout)
	}
	if len(got) != 1 || got[0].Service != "a.Greeter" || got[0].Version != "v1" || len(got[0].Instances) != 2 ||
		got[0].Instances[0].ID != "g1" || got[0].Instances[0].Metadata["zone"] != "b" || got[0].Instances[1].Weight != 100 {
		t.Errorf("ls -o json:\n%s", r.stdout)
	}

	// Nothing there.
	r = runInProcess(ctx, "registry", "ls", "--registry", u, "b.Nothing")
	if r.code != 0 || r.stdout != "" || r.stderr != "storks: no instances of b.Nothing in any version or group\n" {
		t.Errorf("ls of an unknown service: %s", r)
	}
}

func TestLsWithoutLister(t *testing.T) {
	// A static registry cannot list its services but discovers any key.
	r := runStorks(t, "registry", "ls", "--registry", "static://10.0.0.1:80,10.0.0.2:80", "--version", "v1", "a.Greeter")
	mustSucceed(t, r)
	want := [][]string{
		{"a.Greeter", "v1", "-", "10.0.0.1:80", "10.0.0.1:80", "100", "-", "-", "-"},
		{"a.Greeter", "v1", "-", "10.0.0.2:80", "10.0.0.2:80", "100", "-", "-", "-"},
	}
	if got := tableRows(t, r.stdout); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("ls:\n%s\nwant rows %q", r.stdout, want)
	}
	r = runStorks(t, "registry", "ls", "--registry", "static://10.0.0.1:80")
	checkOneLineError(t, r, 1, "this registry cannot list its services (it does not implement registry.Lister)")
}

// watchEvent is a line of "registry watch -o json".
type watchEvent struct {
	Key struct {
		Service, Version, Group string
	}
	Instances, Added, Removed []struct {
		ID, Addr string
		Weight   int
		Metadata map[string]string
	}
}

func ids(list []struct {
	ID, Addr string
	Weight   int
	Metadata map[string]string
}) []string {
	out := []string{}
	for _, in := range list {
		out = append(out, in.ID)
	}
	return out
}

// waitEvent waits for the JSON line after the first from lines of out and
// decodes it.
func waitEvent(t *testing.T, out *syncBuffer, from int) (watchEvent, int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		lines := strings.Split(out.String(), "\n")
		// The last element is the unfinished line (or "").
		if len(lines)-1 > from {
			var ev watchEvent
			if err := json.Unmarshal([]byte(lines[from]), &ev); err != nil {
				t.Fatalf("watch line %q: %v", lines[from], err)
			}
			return ev, from + 1
		}
		if time.Now().After(deadline) {
			t.Fatalf("no watch event %d within 20s; output:\n%s", from+1, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchInProcess(t *testing.T) {
	u, reg := newInproc(t)
	p1 := inst("a.Greeter", "v1", "", "p1", "10.0.0.1:1", nil)
	mustRegister(t, reg, p1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"registry", "watch", "--registry", u, "--version", "v1", "-o", "json", "a.Greeter"},
			strings.NewReader(""), &out, &errOut)
	}()

	ev, n := waitEvent(t, &out, 0)
	if ev.Key.Service != "a.Greeter" || ev.Key.Version != "v1" ||
		!slices.Equal(ids(ev.Instances), []string{"p1"}) || !slices.Equal(ids(ev.Added), []string{"p1"}) {
		t.Errorf("first event %+v", ev)
	}

	mustRegister(t, reg, inst("a.Greeter", "v1", "", "p2", "10.0.0.2:1", nil))
	ev, n = waitEvent(t, &out, n)
	if !slices.Equal(ids(ev.Instances), []string{"p1", "p2"}) || !slices.Equal(ids(ev.Added), []string{"p2"}) || len(ev.Removed) != 0 {
		t.Errorf("after adding p2: %+v", ev)
	}

	// A changed instance is removed and added.
	p1.Metadata = map[string]string{"zone": "a"}
	mustRegister(t, reg, p1)
	ev, n = waitEvent(t, &out, n)
	if !slices.Equal(ids(ev.Added), []string{"p1"}) || !slices.Equal(ids(ev.Removed), []string{"p1"}) || ev.Instances[0].Metadata["zone"] != "a" {
		t.Errorf("after changing p1: %+v", ev)
	}

	if err := reg.Deregister(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	ev, _ = waitEvent(t, &out, n)
	if !slices.Equal(ids(ev.Instances), []string{"p2"}) || !slices.Equal(ids(ev.Removed), []string{"p1"}) || len(ev.Added) != 0 {
		t.Errorf("after removing p1: %+v", ev)
	}

	cancel() // as SIGINT does
	select {
	case code := <-done:
		if code != 0 || errOut.String() != "" {
			t.Errorf("watch ended with exit code %d, stderr %q; want 0 and nothing", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end within 10s of its context")
	}
}

func TestWatchTable(t *testing.T) {
	u, reg := newInproc(t)
	mustRegister(t, reg, inst("a.Greeter", "", "", "p1", "10.0.0.1:1", map[string]string{"name": "one"}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"registry", "watch", "--registry", u, "a.Greeter"}, strings.NewReader(""), &out, &errOut)
	}()
	waitOutput(t, &out, "(current list)")
	mustRegister(t, reg, inst("a.Greeter", "", "", "p2", "10.0.0.2:1", nil))
	waitOutput(t, &out, "(+1 -0)")
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d", code)
	}
	lines := strings.Split(out.String(), "\n")
	// first event: header and p1; second: header, "+ p2", p1, p2.
	want := []string{
		" a.Greeter: 1 instance (current list)",
		"  p1  10.0.0.1:1  weight=100  name=one",
		" a.Greeter: 2 instances (+1 -0)",
		"+ p2  10.0.0.2:1  weight=100  -",
		"  p1  10.0.0.1:1  weight=100  name=one",
		"  p2  10.0.0.2:1  weight=100  -",
		"",
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i], w) {
			t.Errorf("line %d = %q, want it to end in %q", i+1, lines[i], w)
		}
	}
}

func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within 20s:\n%s", want, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchSIGINT runs the binary against a static registry, whose list
// never changes, and interrupts it.
func TestWatchSIGINT(t *testing.T) {
	cmd := storksCmd(context.Background(), "registry", "watch", "--registry", "static://10.0.0.1:80", "a.Greeter")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lr := newLineReader(stdout)
	lr.waitFor(t, 0, "the current list", func(l string) bool { return strings.Contains(l, "10.0.0.1:80") })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Errorf("after SIGINT: %v; stderr:\n%s", err, errOut.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("watch did not stop within 20s of SIGINT")
	}
}

// TestRegistryEtcd runs ls, watch and call against "storks dev". It needs
// the etcd adapter in the binary (registry/all importing registry/etcd)
// and skips itself until then.
func TestRegistryEtcd(t *testing.T) {
	d := startDev(t)
	ctx := context.Background()
	reg, err := registry.Open(ctx, d.url+"?ttl=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	p1 := startProvider(t, reg, "p1", storks.WithVersion("v1"), storks.WithMetadata(map[string]string{"name": "p1"}))
	waitInstances(t, reg, registry.ServiceKey{Service: greeterService, Version: "v1"}, 1)

	// ls of the exact key works with any registry.
	r := runStorks(t, "registry", "ls", "--registry", d.url, "--version", "v1", greeterService)
	mustSucceed(t, r)
	rows := tableRows(t, r.stdout)
	if len(rows) != 1 || rows[0][0] != greeterService || rows[0][1] != "v1" || rows[0][4] != p1.addr || rows[0][8] != `name=p1,protocols="storks,grpc"` {
		t.Errorf("ls:\n%s", r.stdout)
	}

	// ls of everything (the etcd adapter is a registry.Lister).
	r = runStorks(t, "registry", "ls", "--registry", d.url)
	mustSucceed(t, r)
	rows = tableRows(t, r.stdout)
	if len(rows) != 2 || rows[0][0] != "storks.examples.echo.v1.Echo" || rows[1][0] != greeterService {
		t.Errorf("ls:\n%s", r.stdout)
	}

	// call through the registry.
	got := decodeJSON(t, runStorks(t, "call", "--registry", d.url, "--version", "v1", "-I", examplesProto,
		"--proto", greeterProto, sayHello, `{"name":"etcd"}`))
	if got["message"] != "Hello, etcd" || got["provider"] != "p1" {
		t.Errorf("call: %v", got)
	}
	// Without the version, the error says which one the registry has.
	r = runStorks(t, "call", "--registry", d.url, "-I", examplesProto, "--proto", greeterProto, sayHello, `{"name":"etcd"}`)
	checkOneLineError(t, r, 1, "the registry has "+greeterService+":v1 with 1 provider; pass --version v1\n")

	// watch follows a second provider coming and going.
	cmd := storksCmd(ctx, "registry", "watch", "--registry", d.url, "--version", "v1", "-o", "json", greeterService)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lr := newLineReader(stdout)
	n := lr.waitFor(t, 0, "the current list", func(l string) bool { return strings.Contains(l, p1.addr) })

	reg2, err := registry.Open(ctx, d.url+"?ttl=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close()
	in2 := inst(greeterService, "v1", "", "second", "127.0.0.1:9", nil)
	mustRegister(t, reg2, in2)
	n = lr.waitFor(t, n+1, "an added instance", func(l string) bool {
		return strings.Contains(l, `"added":[{"id":"second"`)
	})
	if err := reg2.Deregister(ctx, in2); err != nil {
		t.Fatal(err)
	}
	lr.waitFor(t, n+1, "a removed instance", func(l string) bool {
		return strings.Contains(l, `"removed":[{"id":"second"`)
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch after SIGINT: %v", err)
	}
}

func waitInstances(t *testing.T, reg registry.Registry, key registry.ServiceKey, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list, err := reg.Discover(context.Background(), key)
		if err == nil && len(list) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d instances after 20s (err %v), want %d", key, len(list), err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The demo's setup: three provider processes (examples/provider) register
// in `storks dev`; `storks registry ls` shows all three.
func TestRegistryLsShowsDemoProviders(t *testing.T) {
	d := startDev(t)
	bin := filepath.Join(t.TempDir(), "provider")
	if out, err := exec.Command(goTool(), "build", "-o", bin, "../../examples/provider").CombinedOutput(); err != nil {
		t.Fatalf("building the example provider: %v\n%s", err, out)
	}
	for i := 1; i <= 3; i++ {
		cmd := exec.Command(bin, "-registry", d.url, "-name", fmt.Sprintf("provider-%d", i), "-shutdown-wait", "0s")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	}
	var rows [][]string
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := runStorks(t, "registry", "ls", "--registry", d.url, greeterService)
		mustSucceed(t, r)
		out, rows = r.stdout, tableRows(t, r.stdout)
		if len(rows) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	names := map[string]bool{}
	addrs := map[string]bool{}
	for _, row := range rows {
		if len(row) < 9 || row[0] != greeterService {
			t.Fatalf("unexpected row %q in:\n%s", row, out)
		}
		addrs[row[4]] = true
		names[strings.SplitN(row[8], ",", 2)[0]] = true // name=...,protocols=...
	}
	if len(rows) != 3 || len(addrs) != 3 || !names["name=provider-1"] || !names["name=provider-2"] || !names["name=provider-3"] {
		t.Fatalf("want the three demo providers, got:\n%s", out)
	}
}

// ls shows the registration time as AGE and the published load as LOAD,
// and leaves both out of METADATA.
func TestLsAgeAndLoad(t *testing.T) {
	now := time.UnixMilli(1_765_000_000_000)
	at := func(ago time.Duration) string { return strconv.FormatInt(now.Add(-ago).UnixMilli(), 10) }
	key := registry.ServiceKey{Service: "a.Greeter"}
	md := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	ins := []registry.Instance{
		inst("a.Greeter", "", "", "a", "10.0.0.1:1", md(registry.MetadataRegisteredAt, at(3*time.Minute+12*time.Second+400*time.Millisecond),
			registry.MetadataLoad, "cps=1234.5,inflight=3,at=1", "zone", "b")),
		inst("a.Greeter", "", "", "b", "10.0.0.2:1", md(registry.MetadataRegisteredAt, at(26*time.Hour+5*time.Minute),
			registry.MetadataLoad, "cps=0.0,inflight=0,cpu=0.420,at=1")),
		inst("a.Greeter", "", "", "c", "10.0.0.3:1", md(registry.MetadataRegisteredAt, at(-time.Minute), // skew
			registry.MetadataLoad, "cps=12.25,inflight=1,at=1")),
		inst("a.Greeter", "", "", "d", "10.0.0.4:1", md(registry.MetadataRegisteredAt, "soon", registry.MetadataLoad, "busy")),
		inst("a.Greeter", "", "", "e", "10.0.0.5:1", md(registry.MetadataRegisteredAt, at(75*time.Hour),
			registry.MetadataLoad, "cps=2500000,inflight=9,at=1")),
	}
	var b bytes.Buffer
	if err := printTableAt(&b, []keyInstances{{key, ins}}, now); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"a.Greeter", "-", "-", "a", "10.0.0.1:1", "100", "3m12s", "1.2k cps, 3 in flight", "zone=b"},
		{"a.Greeter", "-", "-", "b", "10.0.0.2:1", "100", "26h5m", "0 cps, 0 in flight, cpu 42%", "-"},
		{"a.Greeter", "-", "-", "c", "10.0.0.3:1", "100", "0s", "12.2 cps, 1 in flight", "-"},
		{"a.Greeter", "-", "-", "d", "10.0.0.4:1", "100", "-", `"busy"`, "-"},
		{"a.Greeter", "-", "-", "e", "10.0.0.5:1", "100", "3d3h", "2.5M cps, 9 in flight", "-"},
	}
	if got := tableRows(t, b.String()); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("table:\n%s\nwant rows %q", b.String(), want)
	}

	// Through ls, with a real clock.
	u, reg := newInproc(t)
	mustRegister(t, reg, ins[0])
	r := runInProcess(context.Background(), "registry", "ls", "--registry", u)
	mustSucceed(t, r)
	rows := tableRows(t, r.stdout)
	if len(rows) != 1 || rows[0][6] == "-" || rows[0][7] != "1.2k cps, 3 in flight" || rows[0][8] != "zone=b" {
		t.Errorf("ls:\n%s", r.stdout)
	}
}
