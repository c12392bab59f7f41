package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/loadtest"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
	storks "github.com/storks-rpc/storks/runtime"
)

// storksBin builds the storks command once: the governance tests write
// their rules through it, as an operator does.
var storksBin = sync.OnceValues(func() (string, error) { return buildBin("storks", "github.com/storks-rpc/storks/cmd/storks") })

// storksCLI runs the storks command and fails the test if it fails.
func storksCLI(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := storksBin()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("storks %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// proc is a provider or consumer process.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

// startRegistered starts an examples/provider process registered in url
// and returns it once it serves.
func startRegistered(t *testing.T, url, name string, args ...string) *proc {
	t.Helper()
	bin, err := providerBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-registry", url, "-name", name, "-shutdown-wait", "300ms"}, args...)...)
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
		return &proc{cmd: cmd, addr: a}
	case <-time.After(30 * time.Second):
		t.Fatalf("provider %s not ready after 30s", name)
	}
	return nil
}

// startCalls calls c from callers goroutines until Stop, recording which
// provider answered each call and when it started.
func startCalls(c greeterv1.GreeterClient, callers int) *loadtest.Log {
	return loadtest.StartLog(callers, 5*time.Second, 2*time.Millisecond, func(ctx context.Context) (string, error) {
		reply, err := c.SayHello(ctx, &greeterv1.HelloRequest{Name: "gov"})
		return reply.GetProvider(), err
	})
}

// Governance through each real registry with real provider processes and
// the storks command: disabling and enabling a provider under load, a 1:1:8
// weight rule, a timeout rule and its deletion, tag routing, rules across a
// provider restart and a registry outage, and consumer records.
func TestGovernanceEndToEnd(t *testing.T) {
	for _, rs := range restartable {
		t.Run(rs.name, func(t *testing.T) {
			srv := rs.start(t)
			url := srv.url
			const svc = greeterv1.Greeter_ServiceName
			const version = "gov"
			key := registry.ServiceKey{Service: svc, Version: version}
			var ps []*proc
			for i := range 3 {
				ps = append(ps, startRegistered(t, url, fmt.Sprintf("gov-%d", i+1), "-version", version))
			}
			cli, err := storks.NewClient(storks.WithRegistry(openURL(t, url)), storks.WithApplication("e2e-consumer"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cli.Close() })
			ref, err := cli.Refer(context.Background(), svc, storks.WithVersion(version), storks.WithRemote())
			if err != nil {
				t.Fatal(err)
			}
			referred := time.Now()

			// The consumer record, seen by another registry client.
			other := openURL(t, url)
			for {
				list, _ := other.Discover(context.Background(), registry.ConsumerKey(key))
				if len(list) == 1 && list[0].Metadata[registry.MetadataApplication] == "e2e-consumer" {
					break
				}
				if time.Since(referred) > time.Second {
					t.Fatalf("the consumer record did not appear within 1s: %v", list)
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("%s: consumer record visible %v after Refer", rs.name, time.Since(referred).Round(time.Millisecond))
			if out := storksCLI(t, "registry", "ls", "--registry", url, svc); !strings.Contains(out, "e2e-consumer") {
				t.Fatalf("storks registry ls does not show the consumer:\n%s", out)
			}

			waitProviders(t, ref, 3)
			c := greeterv1.NewGreeterClient(ref)
			flags := []string{"--registry", url, "--service", svc, "--version", version}

			// Disable gov-2 under load, then enable it again.
			calls := startCalls(c, 4)
			time.Sleep(300 * time.Millisecond)
			disabled := time.Now() // the rule is written while the command runs
			storksCLI(t, append(append([]string{"provider", "disable"}, flags...), ps[1].addr)...)
			time.Sleep(2 * time.Second)
			enabled := time.Now() // the rule goes while the command runs
			storksCLI(t, append(append([]string{"provider", "enable"}, flags...), ps[1].addr)...)
			time.Sleep(1500 * time.Millisecond)
			res := calls.Stop()
			if res.Failed > 0 {
				t.Fatalf("%d of %d calls failed while disabling and enabling a provider; first: %v", res.Failed, res.Calls, res.FirstErr)
			}
			late, _, _, _ := calls.Answered("gov-2", disabled.Add(time.Second), enabled)
			if late > 0 {
				t.Fatalf("the disabled provider got %d calls more than 1s after the rule was written", late)
			}
			_, _, _, last := calls.Answered("gov-2", disabled, enabled)
			if lag := last.Sub(disabled); !last.IsZero() && lag > time.Second {
				t.Fatalf("the disabled provider got a call %v after the rule was written", lag)
			}
			back, _, first, _ := calls.Answered("gov-2", enabled, time.Now())
			if back == 0 || first.Sub(enabled) > time.Second {
				t.Fatalf("the enabled provider came back after %v (%d calls)", first.Sub(enabled), back)
			}
			total := res.Calls
			lastCall := "none after the command began"
			if !last.IsZero() {
				lastCall = last.Sub(disabled).Round(time.Millisecond).String() + " after the command began"
			}
			t.Logf("%s: %d calls, 0 failed; last call to the disabled provider: %s; back %v after enable began",
				rs.name, total, lastCall, first.Sub(enabled).Round(time.Millisecond))

			// 1:1:8 with a weighted balancer.
			wref, err := cli.Refer(context.Background(), svc, storks.WithVersion(version), storks.WithRemote(),
				storks.WithBalancer(storks.WeightedRoundRobin()))
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range []string{"1", "1", "8"} {
				storksCLI(t, append(append([]string{"provider", "weight"}, flags...), ps[i].addr, w)...)
			}
			waitFor(t, 2*time.Second, func() bool {
				for _, in := range wref.Providers() {
					if in.Addr == ps[2].addr {
						return in.Weight == 8
					}
				}
				return false
			})
			wc := greeterv1.NewGreeterClient(wref)
			per := map[string]int{}
			for range 1000 {
				per[hello(t, wc)]++
			}
			share := float64(per["gov-3"]) / 1000
			if share < 0.77 || share > 0.83 {
				t.Fatalf("weights 1:1:8: %v (%.1f%% on the heavy one, want 80±3%%)", per, 100*share)
			}
			t.Logf("%s: weights 1:1:8 gave %v, %.1f%% on the heavy one", rs.name, per, 100*share)
			storksCLI(t, "rule", "rm", "--registry", url, "--version", version, svc)

			// A timeout rule on a 200 ms provider, and its deletion.
			slowVersion := "gov-slow"
			startRegistered(t, url, "slow", "-version", slowVersion, "-latency", "200ms")
			sref, err := cli.Refer(context.Background(), svc, storks.WithVersion(slowVersion), storks.WithRemote())
			if err != nil {
				t.Fatal(err)
			}
			waitProviders(t, sref, 1)
			sc := greeterv1.NewGreeterClient(sref)
			if _, err := sc.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "slow"}); err != nil {
				t.Fatalf("the slow method before the rule: %v", err)
			}
			storksCLI(t, "rule", "set", "--registry", url, "--version", slowVersion, svc, "--method", "SayHello", "--call-timeout", "50ms")
			written := time.Now()
			for {
				_, err := sc.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "slow"})
				if storks.CodeOf(err) == storks.CodeDeadlineExceeded {
					break
				}
				if time.Since(written) > time.Second {
					t.Fatalf("the timeout rule did not apply within 1s: %v", err)
				}
			}
			t.Logf("%s: the 50ms timeout rule applied %v after it was written", rs.name, time.Since(written).Round(time.Millisecond))
			storksCLI(t, "rule", "rm", "--registry", url, "--version", slowVersion, svc)
			removed := time.Now()
			for {
				_, err := sc.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "slow"})
				if err == nil {
					break
				}
				if time.Since(removed) > 2*time.Second {
					t.Fatalf("deleting the timeout rule did not restore the old behaviour: %v", err)
				}
			}

			// Tag routing: gov-3 tagged canary by the command line.
			storksCLI(t, append(append([]string{"provider", "tag"}, flags...), ps[2].addr, "canary")...)
			canary := storks.NewTagContext(context.Background(), "canary")
			waitFor(t, 2*time.Second, func() bool { return tagOf(ref, ps[2].addr) == "canary" })
			for range 30 {
				if p := hello(t, c); p == "gov-3" {
					t.Fatal("an untagged call reached the tagged provider")
				}
				r, err := c.SayHello(canary, &greeterv1.HelloRequest{Name: "tag"})
				if err != nil || r.GetProvider() != "gov-3" {
					t.Fatalf("a tagged call: %v from %q", err, r.GetProvider())
				}
			}
			blue := storks.NewTagContext(context.Background(), "blue")
			if r, err := c.SayHello(blue, &greeterv1.HelloRequest{Name: "tag"}); err != nil || r.GetProvider() == "gov-3" {
				t.Fatalf("a call tagged blue (no such provider) with fallback: %v from %q", err, r.GetProvider())
			}
			storksCLI(t, "rule", "set", "--registry", url, "--version", version, svc, "--tag-fallback=false")
			waitFor(t, 2*time.Second, func() bool {
				_, err := c.SayHello(blue, &greeterv1.HelloRequest{Name: "tag"})
				return storks.CodeOf(err) == storks.CodeUnavailable
			})
			storksCLI(t, "rule", "rm", "--registry", url, "--version", version, svc)
			waitFor(t, 2*time.Second, func() bool { return tagOf(ref, ps[2].addr) == "" })

			// A rule outlives the provider's restart and a registry outage.
			storksCLI(t, append(append([]string{"provider", "disable"}, flags...), ps[0].addr)...)
			waitProviders(t, ref, 2)
			ps[0].cmd.Process.Signal(os.Interrupt)
			ps[0].cmd.Wait()
			ps[0] = startRegistered(t, url, "gov-1", "-version", version, "-listen", ps[0].addr)
			time.Sleep(time.Second) // the registration reaches the consumer; the rule keeps it out
			for range 30 {
				if p := hello(t, c); p == "gov-1" {
					t.Fatal("the restarted provider got a call while disabled")
				}
			}
			srv.stop()
			time.Sleep(3 * ttl)
			for range 30 {
				if p := hello(t, c); p == "gov-1" {
					t.Fatal("during the registry outage the disabled provider got a call: the last good rules were lost")
				}
			}
			if err := srv.start(); err != nil {
				t.Fatal(err)
			}
			storksCLIRetry(t, 15*time.Second, append(append([]string{"provider", "enable"}, flags...), ps[0].addr)...)
			waitFor(t, 15*time.Second, func() bool { return hello(t, c) == "gov-1" })

			// A consumer process killed with SIGKILL leaves no record
			// behind after the TTL.
			consumerBin, err := consumerBinary()
			if err != nil {
				t.Fatal(err)
			}
			cp := exec.Command(consumerBin, "-registry", url, "-version", version, "-calls", "1000000", "-interval", "20ms", "-streams=false")
			cout, _ := cp.StdoutPipe()
			if err := cp.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cp.Process.Kill(); cp.Wait() })
			go io.Copy(io.Discard, cout)
			// The test's own references have records too (application
			// e2e-consumer); the process's says "consumer".
			processRecords := func() int {
				list, _ := other.Discover(context.Background(), registry.ConsumerKey(key))
				n := 0
				for _, in := range list {
					if in.Metadata[registry.MetadataApplication] == "consumer" {
						n++
					}
				}
				return n
			}
			waitFor(t, 15*time.Second, func() bool { return processRecords() == 1 })
			cp.Process.Kill()
			killed := time.Now()
			waitFor(t, ttl+2*time.Second, func() bool { return processRecords() == 0 })
			t.Logf("%s: killed consumer's record gone %v after SIGKILL (TTL %v)", rs.name, time.Since(killed).Round(time.Millisecond), ttl)

			// Operators change the weights of providers at once, each with
			// a storks process of their own: every edit lands, none is
			// lost to another's write (rule edits are compare-and-swap).
			bin, err := storksBin()
			if err != nil {
				t.Fatal(err)
			}
			store, err := rule.Store(other)
			if err != nil {
				t.Fatal(err)
			}
			const operators = 8
			for round := range 3 {
				start := make(chan struct{})
				var wg sync.WaitGroup
				outs := make([]string, operators)
				errs := make([]error, operators)
				for i := range operators {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						addr := fmt.Sprintf("192.0.2.%d:9000", i+1) // documentation addresses: rules may name providers yet to come
						args := append(append([]string{"provider", "weight"}, flags...), addr, strconv.Itoa(100*(round+1)+i))
						out, err := exec.Command(bin, args...).CombinedOutput()
						outs[i], errs[i] = string(out), err
					}()
				}
				close(start)
				wg.Wait()
				for i := range operators {
					if errs[i] != nil {
						t.Fatalf("storks provider weight, operator %d: %v\n%s", i, errs[i], outs[i])
					}
				}
				set, err := rule.Load(context.Background(), store, key)
				if err != nil {
					t.Fatal(err)
				}
				for i := range operators {
					addr, want := fmt.Sprintf("192.0.2.%d:9000", i+1), 100*(round+1)+i
					found := false
					for _, o := range set.Overrides {
						if o.Match.Addr == addr && o.Weight != nil && *o.Weight == want {
							found = true
						}
					}
					if !found {
						var have []string
						for _, o := range set.Overrides {
							if o.Weight != nil {
								have = append(have, fmt.Sprintf("%s=%d", o.Match.Addr, *o.Weight))
							}
						}
						t.Fatalf("round %d: operator %d's weight %d for %s was lost; the rules weight %v", round, i, want, addr, have)
					}
				}
			}
			storksCLI(t, "rule", "rm", "--registry", url, "--version", version, svc)
		})
	}
}

// storksCLIRetry runs the storks command until it succeeds (the registry
// is coming back) or d has passed.
func storksCLIRetry(t *testing.T, d time.Duration, args ...string) {
	t.Helper()
	bin, err := storksBin()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(d)
	for {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storks %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var consumerBinary = sync.OnceValues(func() (string, error) {
	return buildBin("consumer", "github.com/storks-rpc/storks/examples/consumer")
})

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tagOf returns the routing tag the reference applies to the provider at
// addr (its effective instance, rules applied).
func tagOf(ref *storks.Reference, addr string) string {
	for _, in := range ref.Providers() {
		if in.Addr == addr {
			return in.Metadata[registry.MetadataTag]
		}
	}
	return ""
}
