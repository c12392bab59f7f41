package mdns

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
	storks "github.com/storks-rpc/storks/runtime"
)

// Interoperability with software we did not write: Debian's
// python3-zeroconf (make deps-zeroconf), run by /usr/bin/python3.

const python = "/usr/bin/python3"

// zeroconfPython fails under CI=true, and skips elsewhere, when Debian's
// python3-zeroconf is not installed.
func zeroconfPython(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import zeroconf").Run(); err != nil {
		msg := "python3-zeroconf is not installed for " + python + " (make deps-zeroconf installs it): " + err.Error()
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// pyProc is a Python script whose output lines the test reads.
type pyProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startPython(t *testing.T, script string, args ...string) *pyProc {
	t.Helper()
	cmd := exec.Command(python, append([]string{"testdata/" + script}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pyProc{cmd: cmd, stdin: stdin, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// next returns the next output line that satisfies ok.
func (p *pyProc) next(t *testing.T, timeout time.Duration, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, open := <-p.lines:
			if !open {
				t.Fatalf("the Python process exited before %s", what)
			}
			if ok(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("no %s from the Python process within %v", what, timeout)
		}
	}
}

type pyEvent struct {
	Event      string            `json:"event"`
	Name       string            `json:"name"`
	Port       int               `json:"port"`
	Addresses  []string          `json:"addresses"`
	Properties map[string]string `json:"properties"`
}

func (p *pyProc) event(t *testing.T, timeout time.Duration, what string, ok func(pyEvent) bool) pyEvent {
	t.Helper()
	var ev pyEvent
	p.next(t, timeout, what, func(l string) bool {
		ev = pyEvent{}
		return json.Unmarshal([]byte(l), &ev) == nil && ok(ev)
	})
	return ev
}

// A python-zeroconf browser sees a Storks provider's instance, with its TXT
// entries and its address, and sees it go on Deregister.
func TestZeroconfBrowserSeesStorksProvider(t *testing.T) {
	zeroconfPython(t)
	prov := openLo(t, "")
	key := registrytest.UniqueKey(t)
	key.Version, key.Group = "1.2.3", "blue"
	stype := ServiceType(key) + ".local."
	py := startPython(t, "zc_browse.py", stype)
	py.event(t, 20*time.Second, "ready", func(e pyEvent) bool { return e.Event == "ready" })

	in := registry.Instance{Key: key, ID: "storks-provider-1", Addr: "127.0.0.1:20880", Weight: 42,
		Metadata: map[string]string{"zone": "eu-west-1a", registry.MetadataRegisteredAt: "1733480000123"}}
	register(t, prov, in)
	ev := py.event(t, 10*time.Second, "add event", func(e pyEvent) bool { return e.Event == "add" || e.Event == "update" })
	if ev.Name != "storks-provider-1."+stype {
		t.Errorf("python saw instance %q, want %q", ev.Name, "storks-provider-1."+stype)
	}
	if ev.Port != 20880 || !slices.Contains(ev.Addresses, "127.0.0.1") {
		t.Errorf("python saw port %d addresses %v, want 20880 and 127.0.0.1", ev.Port, ev.Addresses)
	}
	want := map[string]string{"txtvers": "1", "svc": key.Service, "ver": "1.2.3", "grp": "blue", "id": "storks-provider-1",
		"weight": "42", "m.zone": "eu-west-1a", "m.registered_at": "1733480000123"}
	for k, v := range want {
		if ev.Properties[k] != v {
			t.Errorf("python saw TXT %s=%q, want %q (all: %v)", k, ev.Properties[k], v, ev.Properties)
		}
	}
	t.Logf("python-zeroconf saw %s with TXT %v", ev.Name, ev.Properties)

	start := time.Now()
	if err := prov.Deregister(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	py.event(t, 5*time.Second, "remove event", func(e pyEvent) bool { return e.Event == "remove" && e.Name == ev.Name })
	d := time.Since(start)
	// python-zeroconf keeps a goodbye'd record for one second (RFC 6762
	// §10.1) before it reports the removal.
	t.Logf("figures: python-zeroconf browser reported the Deregister after %v", d.Round(time.Millisecond))
	if d > 3*time.Second {
		t.Errorf("python-zeroconf saw the Deregister after %v, want at most 3s", d)
	}
}

// A service announced by python-zeroconf with the documented TXT entries
// (the address of a Storks provider) is discovered by a Storks consumer and
// called; its goodbye removes it.
func TestZeroconfAnnouncedProviderIsCalled(t *testing.T) {
	zeroconfPython(t)
	key := registry.ServiceKey{Service: greeterv1.Greeter_ServiceName, Version: registrytest.UniqueKey(t).Service}
	// A Storks provider that registers nowhere: Python announces it.
	srv := storks.NewServer(storks.WithShutdownWait(0))
	g := &impl.Greeter{Name: "announced-by-python"}
	if _, err := greeterv1.RegisterGreeterServer(srv, g, storks.WithVersion(key.Version)); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	port := lis.Addr().(*net.TCPAddr).Port

	props, _ := json.Marshal(map[string]string{"svc": key.Service, "ver": key.Version, "id": "python-1", "weight": "7", "m.zone": "py"})
	py := startPython(t, "zc_announce.py", ServiceType(key)+".local.", "python provider", strconv.Itoa(port), string(props))
	py.next(t, 20*time.Second, "READY", func(l string) bool { return l == "READY" })

	cons := openLo(t, "")
	want := registry.Instance{Key: key, ID: "python-1", Addr: "127.0.0.1:" + strconv.Itoa(port), Weight: 7, Metadata: map[string]string{"zone": "py"}}
	registrytest.WaitDiscover(t, cons, key, 10*time.Second, func(list []registry.Instance) bool {
		return len(list) == 1 && registrytest.SameInstance(list[0], want)
	})

	cli, err := storks.NewClient(storks.WithRegistry(cons))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ref, err := cli.Refer(context.Background(), key.Service, storks.WithVersion(key.Version), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := greeterv1.NewGreeterClient(ref).SayHello(ctx, &greeterv1.HelloRequest{Name: "zeroconf"})
	if err != nil {
		t.Fatal(err)
	}
	if g.Calls.Load() != 1 {
		t.Errorf("reply %q, %d calls: want the provider that Python announced", reply.GetMessage(), g.Calls.Load())
	}

	w := watch(t, cons, key)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("python-1"))
	start := time.Now()
	py.stdin.Close() // python-zeroconf unregisters: goodbye packets
	registrytest.WaitFor(t, w, 10*time.Second, registrytest.HasIDs())
	t.Logf("figures: python-zeroconf unregister_service: gone from the Storks consumer after %v (includes python's own shutdown)", time.Since(start).Round(time.Millisecond))
}
