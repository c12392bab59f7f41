package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	storks "github.com/storks-rpc/storks/runtime"
)

// mdnsTTL is the record TTL of the provider processes of TestMDNSProviderProcesses.
const mdnsTTL = 2 * time.Second

// Three examples/provider processes and a consumer, all through mdns:// on
// the loopback interface (real multicast, each process its own socket on
// port 5353): round-robin reaches all three evenly; a provider killed with
// SIGKILL (no goodbye) is gone from the consumer within TTL + 2 s; one
// stopped with SIGTERM (Deregister: goodbye packets) within 1 s.
func TestMDNSProviderProcesses(t *testing.T) {
	bin, err := providerBin()
	if err != nil {
		t.Fatal(err)
	}
	// The binary is shared with the other tests of the package
	// (TestKilledProviderDisappears removes it when it is done).
	version := fmt.Sprintf("mdns-e2e-%d", time.Now().UnixNano())
	provURL := fmt.Sprintf("mdns://?iface=lo&ttl=%d", int(mdnsTTL/time.Second))
	type proc struct {
		cmd *exec.Cmd
		out *strings.Builder
	}
	procs := map[string]proc{}
	for i := range 3 {
		name := fmt.Sprintf("mdns-%d", i+1)
		cmd := exec.Command(bin, "-registry", provURL, "-name", name, "-version", version, "-listen", "127.0.0.1:0", "-shutdown-wait", "0s")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		procs[name] = proc{cmd, &out}
	}
	cli, err := storks.NewClient(storks.WithRegistry(openURL(t, "mdns://?iface=lo")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithVersion(version), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(ref.Providers()) != 3 {
		if time.Now().After(deadline) {
			var logs strings.Builder
			for name, p := range procs {
				fmt.Fprintf(&logs, "--- %s:\n%s\n", name, p.out.String())
			}
			t.Fatalf("the consumer sees %d of 3 provider processes through mdns:// (does multicast work on lo? see registry/mdns's tests)\n%s", len(ref.Providers()), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := greeterv1.NewGreeterClient(ref)
	seen := map[string]int{}
	for range 30 {
		seen[hello(t, c)]++
	}
	for name := range procs {
		if seen[name] != 10 {
			t.Fatalf("round robin through mdns://: %v, want 10 each", seen)
		}
	}

	gone := func(n int, limit time.Duration, what string, start time.Time) time.Duration {
		t.Helper()
		for len(ref.Providers()) != n {
			if time.Since(start) > limit {
				t.Fatalf("%s: the provider is still listed %v later (limit %v)", what, time.Since(start), limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	if err := procs["mdns-3"].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := gone(2, mdnsTTL+2*time.Second, "SIGKILL", time.Now())
	for range 10 {
		if p := hello(t, c); p == "mdns-3" {
			t.Fatal("the killed provider answered")
		}
	}
	start := time.Now()
	if err := procs["mdns-2"].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := gone(1, time.Second, "SIGTERM (graceful)", start)
	for range 10 {
		if p := hello(t, c); p != "mdns-1" {
			t.Fatalf("reply from %q, want mdns-1", p)
		}
	}
	t.Logf("figures: mdns:// 3 provider processes: round robin %v; SIGKILL: gone from the consumer after %v (TTL %v); SIGTERM (graceful Deregister): gone after %v",
		seen, killed.Round(time.Millisecond), mdnsTTL, stopped.Round(time.Millisecond))
}
