package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
)

// The registry server is stopped for 3x its TTL (lease TTL for etcd,
// session timeout for ZooKeeper) while three provider processes serve a
// consumer process under load: no call fails, and the providers are
// registered again after the server comes back.
//
// The consumer is a process of its own (internal/chaos/loadgen, built
// without the race detector): the ZooKeeper client library has a known data
// race when it re-arms watches after a reconnection
// (github.com/go-zookeeper/zk: lastZxid, read by sendSetWatches while
// recvLoop writes it), which would fail a race-instrumented test binary
// whose own consumer reconnects.
func TestRegistryOutageLosesNoCall(t *testing.T) {
	const ttl = 2 * time.Second
	for _, rs := range []struct {
		name  string
		start func(t *testing.T) (url string, stop func(), start func() error)
	}{
		{"etcd", func(t *testing.T) (string, func(), func() error) {
			s := testservers.StartEtcd(t)
			return s.URL(fmt.Sprintf("/chaos-%d?ttl=%s", time.Now().UnixNano(), ttl)), s.Stop, s.Start
		}},
		{"zookeeper", func(t *testing.T) (string, func(), func() error) {
			s := testservers.StartZooKeeper(t)
			return s.URL(fmt.Sprintf("/chaos-%d?session-timeout=%s", time.Now().UnixNano(), ttl)), s.Stop, s.Start
		}},
	} {
		t.Run(rs.name, func(t *testing.T) {
			url, stop, start := rs.start(t)
			startProcs(t, url, 3)
			lg := startLoadgen(t, url, "-callers", "50", "-providers", "3")
			time.Sleep(time.Second)
			stop()
			stopped := time.Now()
			time.Sleep(3 * ttl)
			if err := start(); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			// A fresh client (no watch to re-arm) finds every provider
			// registered again.
			fresh := openRegistry(t, url)
			var again time.Duration
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				list, _ := fresh.Discover(ctx, registry.ServiceKey{Service: greeterv1.Greeter_ServiceName})
				cancel()
				if len(list) == 3 {
					again = time.Since(back)
					break
				}
				if time.Since(back) > ttl+10*time.Second {
					t.Errorf("%d of 3 providers registered again %v after the server came back", len(list), time.Since(back))
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(time.Second)
			res := lg.result(t)
			figures(t, "%s down %v (3x TTL %v): 50 callers, %d calls, %d failed; the consumer listed at least %d providers throughout; all 3 registered again %v after the restart",
				rs.name, ms(back.Sub(stopped)), ttl, res.Calls, res.Failed, res.MinListed, ms(again))
			if res.Failed != 0 {
				t.Errorf("%d of %d calls failed across the registry outage; first:\n  %s", res.Failed, res.Calls, strings.Join(res.Errors, "\n  "))
			}
			if res.Calls == 0 {
				t.Error("no call was made")
			}
		})
	}
}

// loadgen is a running load generator process.
type loadgen struct{ p *proc }

var readyOnly = regexp.MustCompile(`(?m)^READY$`)

// startLoadgen starts a load generator (internal/chaos/loadgen) on the
// registry at url and waits until it calls.
func startLoadgen(t *testing.T, url string, args ...string) *loadgen {
	t.Helper()
	bin, err := loadgenBin()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: "loadgen", out: new(syncBuffer), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-registry", url}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("output of the load generator:\n%s", p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !readyOnly.MatchString(p.out.String()) {
		select {
		case <-p.exited:
			t.Fatalf("the load generator exited (%v):\n%s", p.exitErr, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load generator is not ready after 30s:\n%s", p.out.String())
		}
	}
	return &loadgen{p}
}

// loadResult is the load generator's Result.
type loadResult struct {
	Calls       int64    `json:"calls"`
	Failed      int64    `json:"failed"`
	Errors      []string `json:"errors"`
	MinListed   int      `json:"min_listed"`
	FinalListed int      `json:"final_listed"`
}

var resultLine = regexp.MustCompile(`(?m)^RESULT (.*)$`)

// result stops the load generator (SIGTERM: it waits for its calls in
// flight) and returns its figures.
func (l *loadgen) result(t *testing.T) loadResult {
	t.Helper()
	l.p.signal(t, syscall.SIGTERM)
	l.p.wait(t, 20*time.Second)
	m := resultLine.FindStringSubmatch(l.p.out.String())
	if m == nil {
		t.Fatalf("the load generator printed no result (%v):\n%s", l.p.exitErr, l.p.out.String())
	}
	var res loadResult
	if err := json.Unmarshal([]byte(m[1]), &res); err != nil {
		t.Fatal(err)
	}
	return res
}
