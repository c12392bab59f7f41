package chaos

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	"github.com/storks-rpc/storks/internal/testservers"
	storks "github.com/storks-rpc/storks/runtime"
)

// A rolling restart under load: each of three providers in turn gets
// SIGTERM (the provider calls Shutdown: deregister, wait 1 s, refuse new
// calls, drain, close) and a replacement starts on a new port. Every call
// takes 1.5 s, longer than the shutdown wait, so calls are still running
// when each provider starts to drain. The method is not idempotent
// (Echo.Echo) and the fail mode is the default, Failfast: only calls that
// provably did not run may be sent again. No call fails and every call in
// flight completes.
func TestRollingRestartLosesNoCall(t *testing.T) {
	const latency = 1500 * time.Millisecond
	url := testservers.EtcdRegistryURL(t, killTTL)
	args := []string{"-latency", latency.String(), "-shutdown-wait", "1s"}
	ps := startProcs(t, url, 3, args...)
	rec := newRecorder("")
	ref := refer(t, url, echov1.Echo_ServiceName, []storks.ClientOption{rec.option()})
	waitListed(t, ref, ps...)
	e := echov1.NewEchoClient(ref)

	l := startLoad(150, 0, func(w, seq int) error {
		if seq == 0 {
			// Spread the callers over the call time, so that calls start
			// and end at every moment of a restart.
			time.Sleep(time.Duration(w) * latency / 150)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		body := fmt.Sprintf("w%d-%d", w, seq)
		out, err := e.Echo(ctx, &commonv1.Text{Body: body})
		if err == nil && out.GetBody() != body {
			return fmt.Errorf("reply %q to %q", out.GetBody(), body)
		}
		return err
	})
	time.Sleep(latency + 500*time.Millisecond)
	live := append([]*proc(nil), ps...)
	var steps []string
	all := append([]*proc(nil), ps...)
	for i, old := range ps {
		inflight := rec.stats(old.addr).inflight.Load()
		termed := old.signal(t, syscall.SIGTERM)
		repl := startProc(t, url, fmt.Sprintf("p%d-new", i+1), args...)
		all = append(all, repl)
		old.wait(t, 30*time.Second)
		exited := time.Since(termed)
		live[i] = repl
		waitListed(t, ref, live...)
		steps = append(steps, fmt.Sprintf("%s: %d in flight at SIGTERM, exited after %v", old.name, inflight, ms(exited)))
	}
	time.Sleep(latency + 500*time.Millisecond)
	l.finish(t, 2*latency+10*time.Second)

	figures(t, "150 callers, %v per call; %d calls, %d failed", latency, l.done.Load(), l.failed.Load())
	figures(t, "%s", strings.Join(steps, "; "))
	figures(t, "attempts per provider: %s", rec.perAddr(all...))
	if f := l.failed.Load(); f != 0 {
		t.Errorf("%d calls failed during the rolling restart:%s", f, l.firstFailures(5))
	}
}
