package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/testservers"
	storks "github.com/storks-rpc/storks/runtime"
)

const (
	callers = 200
	// The registry lease outlives every test below: the killed provider
	// stays listed, so what keeps calls away from it is the client's
	// ejection, not the registry.
	killTTL = 30 * time.Second
)

// SIGKILL one of three providers under 200 concurrent callers of an
// idempotent method (Greeter.SayHello, NO_SIDE_EFFECTS) with Failover: no
// call fails, and no attempt goes to the dead address later than 1 s after
// the kill.
func TestKillWithFailoverLosesNoIdempotentCall(t *testing.T) {
	url := testservers.EtcdRegistryURL(t, killTTL)
	ps := startProcs(t, url, 3)
	victim := ps[0]
	rec := newRecorder(victim.addr)
	ref := refer(t, url, greeterv1.Greeter_ServiceName, []storks.ClientOption{rec.option()}, storks.Failover(2))
	waitListed(t, ref, ps...)
	g := greeterv1.NewGreeterClient(ref)

	l := startLoad(callers, 5*time.Millisecond, func(w, seq int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := g.SayHello(ctx, &greeterv1.HelloRequest{Name: fmt.Sprintf("w%d-%d", w, seq)})
		return err
	})
	time.Sleep(time.Second)
	before := l.started.Load()
	rec.arm()
	killed := victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 5*time.Second)
	time.Sleep(3 * time.Second)
	l.finish(t, 15*time.Second)

	calls, failed := l.done.Load(), l.failed.Load()
	late := rec.attemptsBetween(killed.Add(time.Second), time.Now())
	after := rec.attemptsBetween(killed, time.Now())
	ej := rec.healthEvents(storks.EventEjected, victim.addr, killed)
	ejectedAfter := "never"
	if len(ej) > 0 {
		ejectedAfter = ms(ej[0].at.Sub(killed))
	}
	probes := len(rec.healthEvents(storks.EventProbe, victim.addr, killed))
	figures(t, "%d callers, %d calls (%d after the kill), %d failed; in flight on the killed provider at the kill: %d",
		callers, calls, calls-before, failed, rec.peak.Load())
	figures(t, "attempts on the killed provider after the kill: %d (last %v after it), more than 1s after: %d; ejected %s after the kill; %d probes since",
		after, ms(rec.lastAttempt().Sub(killed)), late, ejectedAfter, probes)
	figures(t, "attempts per provider: %s; retried after a broken connection: %d", rec.perAddr(ps...), rec.stats(victim.addr).broken.Load())
	if failed != 0 {
		t.Errorf("%d of %d calls failed:%s", failed, calls, l.firstFailures(5))
	}
	if late != 0 {
		t.Errorf("%d attempts on the killed provider more than 1s after the kill", late)
	}
}

// The same with a non-idempotent method (Echo.Echo) under Failover: a call
// fails only if it was in flight on the killed provider, and no request is
// executed twice (every provider logs the request bodies it runs, and every
// call's body is unique).
func TestKillRunsNoNonIdempotentCallTwice(t *testing.T) {
	url := testservers.EtcdRegistryURL(t, killTTL)
	ps := startProcs(t, url, 3)
	victim := ps[0]
	rec := newRecorder(victim.addr)
	ref := refer(t, url, echov1.Echo_ServiceName, []storks.ClientOption{rec.option()}, storks.Failover(2))
	waitListed(t, ref, ps...)
	e := echov1.NewEchoClient(ref)

	succeeded := make([][]string, callers) // per caller: the bodies of its successful calls
	l := startLoad(callers, 5*time.Millisecond, func(w, seq int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		body := fmt.Sprintf("w%d-%d", w, seq)
		out, err := e.Echo(ctx, &commonv1.Text{Body: body})
		if err == nil {
			if out.GetBody() != body {
				return fmt.Errorf("reply %q to %q", out.GetBody(), body)
			}
			succeeded[w] = append(succeeded[w], body)
		}
		return err
	})
	time.Sleep(time.Second)
	rec.arm()
	killed := victim.signal(t, syscall.SIGKILL)
	victim.wait(t, 5*time.Second)
	time.Sleep(3 * time.Second)
	l.finish(t, 15*time.Second)

	// Every request any provider ran, with the number of runs.
	runs := make(map[string]int)
	perProc := make([]string, len(ps))
	for i, p := range ps {
		lines := p.readLog(t)
		perProc[i] = fmt.Sprintf("%s %d", p.name, len(lines))
		for _, line := range lines {
			if body, ok := strings.CutPrefix(line, "Echo "); ok {
				runs[body]++
			}
		}
	}
	twice := 0
	for body, n := range runs {
		if n > 1 {
			twice++
			if twice <= 5 {
				t.Errorf("request %s ran %d times", body, n)
			}
		}
	}
	notRun := 0
	ok := 0
	for _, bodies := range succeeded {
		for _, body := range bodies {
			ok++
			if runs[body] != 1 {
				notRun++
			}
		}
	}
	calls, failed := l.done.Load(), l.failed.Load()
	inflight := rec.peak.Load()
	figures(t, "%d callers, %d calls, %d failed; in flight on the killed provider at the kill: %d; requests run per provider: %s; run twice: %d",
		callers, calls, failed, inflight, strings.Join(perProc, ", "), twice)
	figures(t, "attempts on the killed provider more than 1s after the kill: %d; attempts per provider: %s",
		rec.attemptsBetween(killed.Add(time.Second), time.Now()), rec.perAddr(ps...))
	// Every failed call must have failed on the killed provider's broken
	// connection: at most the attempts that broke there. (The in-flight
	// peak is a figure, not a bound: a call sent on the dead connection
	// after the first break was seen, before the client closed it, breaks
	// too.)
	if broke := rec.stats(victim.addr).broken.Load(); failed > broke {
		t.Errorf("%d calls failed, more than the %d attempts that broke on the killed provider (%d in flight at the kill):%s", failed, broke, inflight, l.firstFailures(5))
	}
	for _, f := range l.failuresSnapshot() {
		if !errors.Is(f.err, storks.ErrConnClosed) || storks.CodeOf(f.err) != storks.CodeUnavailable {
			t.Errorf("a call failed otherwise than on the killed provider's broken connection: %v", f.err)
			break
		}
	}
	if notRun != 0 {
		t.Errorf("%d of %d successful calls do not appear exactly once in the providers' logs", notRun, ok)
	}
}
