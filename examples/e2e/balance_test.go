package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

var readyRE = regexp.MustCompile(`^READY (\S+) (\S+)$`)

// startProviderProc starts an examples/provider process named name with
// extra flags and returns its address. Its registry is static:// (its
// registration does nothing): the consumer is given the addresses.
func startProviderProc(t *testing.T, name string, args ...string) string {
	t.Helper()
	return startRegistered(t, "static://127.0.0.1:1", name, args...).addr
}

// balanceRun is what one balancer did with the load.
type balanceRun struct {
	calls    int
	p50, p99 time.Duration
	per      map[string]int // calls per provider name
}

func (r balanceRun) share(name string) float64 { return float64(r.per[name]) / float64(r.calls) }

// runBalanced makes callers concurrent callers call SayHello through a
// new client with balancer f, each perCaller times with a pause of about pause (from pause/2 to
// 3/2 pause) after each call, after a warm-up of 10 calls each, and returns the figures of the
// calls after the warm-up.
func runBalanced(t *testing.T, reg registry.Registry, f storks.BalancerFactory, callers, perCaller int, pause time.Duration) balanceRun {
	t.Helper()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := context.Background()
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName, storks.WithBalancer(f))
	if err != nil {
		t.Fatal(err)
	}
	g := greeterv1.NewGreeterClient(ref)
	const warmup = 10
	lats := make([][]time.Duration, callers)
	names := make([][]string, callers)
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range warmup + perCaller {
				start := time.Now()
				reply, err := g.SayHello(ctx, &greeterv1.HelloRequest{Name: "lb"})
				d := time.Since(start)
				if err != nil {
					errs <- err
					return
				}
				if i >= warmup {
					lats[w] = append(lats[w], d)
					names[w] = append(names[w], reply.GetProvider())
				}
				time.Sleep(pause/2 + rand.N(pause)) // jittered: callers do not march in step
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var all []time.Duration
	run := balanceRun{per: map[string]int{}}
	for w := range callers {
		all = append(all, lats[w]...)
		for _, n := range names[w] {
			run.per[n]++
		}
	}
	slices.Sort(all)
	run.calls = len(all)
	run.p50, run.p99 = all[len(all)/2], all[len(all)*99/100]
	return run
}

// TestLeastLoadedAvoidsASlowProvider: among three provider processes, one
// with 5 ms of added latency, LeastLoaded halves round-robin's p99 and
// sends the slow one less than a third of its round-robin share. The
// callers pause between calls, so the machine is not saturated: the slow
// provider is then slow by its own fault, not because the fast ones queue.
// The share holds in every round; a p99 is the machine's as much as the
// balancer's (other test packages run beside this one), so the p99 bound
// must hold in one of up to three rounds, each measuring both balancers
// back to back, and every round is logged.
func TestLeastLoadedAvoidsASlowProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three provider processes")
	}
	addrs := []string{
		startProviderProc(t, "fast1"),
		startProviderProc(t, "fast2"),
		startProviderProc(t, "slow", "-latency", "5ms"),
	}
	reg, err := registry.NewStatic(addrs...)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const callers, perCaller, pause = 64, 80, 10 * time.Millisecond
	var p99s []string
	for round := 1; round <= 3; round++ {
		rr := runBalanced(t, reg, storks.RoundRobin(), callers, perCaller, pause)
		ll := runBalanced(t, reg, storks.LeastLoaded(), callers, perCaller, pause)
		for _, r := range []struct {
			name string
			run  balanceRun
		}{{"RoundRobin", rr}, {"LeastLoaded", ll}} {
			var shares []string
			for _, n := range []string{"fast1", "fast2", "slow"} {
				shares = append(shares, fmt.Sprintf("%s %.1f%%", n, 100*r.run.share(n)))
			}
			t.Logf("round %d: %-11s %d calls by %d callers: p50 %v, p99 %v; %s", round, r.name, r.run.calls, callers,
				r.run.p50.Round(10*time.Microsecond), r.run.p99.Round(10*time.Microsecond), strings.Join(shares, ", "))
		}
		if ll.share("slow") >= rr.share("slow")/3 {
			t.Fatalf("round %d: LeastLoaded sent the slow provider %.1f%% of the calls, RoundRobin %.1f%%: want less than a third", round, 100*ll.share("slow"), 100*rr.share("slow"))
		}
		if ll.p99 <= rr.p99/2 {
			return
		}
		p99s = append(p99s, fmt.Sprintf("round %d: LeastLoaded %v, RoundRobin %v", round, ll.p99, rr.p99))
	}
	t.Errorf("LeastLoaded's p99 was more than half of RoundRobin's in every round: %s", strings.Join(p99s, "; "))
}
