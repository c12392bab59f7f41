package chaos

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/testservers"
	storks "github.com/storks-rpc/storks/runtime"
)

// A provider that hangs (SIGSTOP: its sockets stay open, nothing answers)
// under calls with a 300 ms deadline: it is ejected after a few timeouts,
// gets no call while it is stopped, only probes, and after SIGCONT it is
// back in rotation, serving calls again, within 10 s.
func TestHungProviderIsEjectedAndComesBack(t *testing.T) {
	const (
		stopFor = 3 * time.Second
		// An attempt is counted as "after the ejection" if it started this
		// long after the ejection event was recorded: a caller that chose
		// the provider just before the ejection may record its attempt a
		// little after it.
		grace = 50 * time.Millisecond
	)
	url := testservers.EtcdRegistryURL(t, killTTL)
	ps := startProcs(t, url, 3)
	victim := ps[0]
	rec := newRecorder(victim.addr)
	ref := refer(t, url, greeterv1.Greeter_ServiceName,
		[]storks.ClientOption{rec.option(), storks.WithDefaultTimeout(300 * time.Millisecond)})
	waitListed(t, ref, ps...)
	g := greeterv1.NewGreeterClient(ref)

	l := startLoad(50, 5*time.Millisecond, func(w, seq int) error {
		// No deadline here: WithDefaultTimeout gives every call 300 ms.
		_, err := g.SayHello(context.Background(), &greeterv1.HelloRequest{Name: fmt.Sprintf("w%d-%d", w, seq)})
		return err
	})
	time.Sleep(time.Second)
	stopped := victim.signal(t, syscall.SIGSTOP)
	ejected := rec.waitHealth(t, storks.EventEjected, victim.addr, stopped, 5*time.Second)
	time.Sleep(time.Until(stopped.Add(stopFor)))
	resumed := victim.signal(t, syscall.SIGCONT)
	failedWhileStopped := l.failed.Load()

	deadline := resumed.Add(10 * time.Second)
	var served time.Time
	for {
		if at, ok := rec.firstOK(resumed); ok {
			served = at
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	l.finish(t, 10*time.Second)

	regular := rec.attemptsBetween(ejected.Add(grace), resumed)
	rawRegular := rec.attemptsBetween(ejected, resumed)
	probes := rec.healthEvents(storks.EventProbe, victim.addr, stopped)
	probesWhileStopped := 0
	for _, p := range probes {
		if p.at.Before(resumed) {
			probesWhileStopped++
		}
	}
	readmitted := rec.healthEvents(storks.EventReadmitted, victim.addr, resumed)
	readmittedAfter := "never"
	if len(readmitted) > 0 {
		readmittedAfter = ms(readmitted[0].at.Sub(resumed))
	}
	servedAfter := "not within 10s"
	if !served.IsZero() {
		servedAfter = ms(served.Sub(resumed))
	}
	ejections := len(rec.healthEvents(storks.EventEjected, victim.addr, stopped))
	figures(t, "50 callers, 300ms deadline; %d calls, %d failed (all while stopped: %d); stopped %v",
		l.done.Load(), l.failed.Load(), failedWhileStopped, stopFor)
	figures(t, "ejected %s after SIGSTOP; calls to it after the ejection until SIGCONT: %d (%d counting the first %v); probes while stopped: %d; ejection periods: %d",
		ms(ejected.Sub(stopped)), regular, rawRegular, grace, probesWhileStopped, ejections)
	figures(t, "after SIGCONT: readmitted %s later, first call served %s later; attempts per provider: %s",
		readmittedAfter, servedAfter, rec.perAddr(ps...))

	if regular != 0 {
		t.Errorf("%d calls sent to the stopped provider after its ejection", regular)
	}
	if probesWhileStopped == 0 {
		t.Errorf("the stopped provider was never probed")
	}
	if len(rec.healthEvents(storks.EventReadmitted, victim.addr, stopped)) != len(readmitted) {
		t.Errorf("the stopped provider was readmitted before SIGCONT")
	}
	if served.IsZero() {
		t.Errorf("the provider serves no call within 10s of SIGCONT")
	}
	if f := l.failed.Load() - failedWhileStopped; f > 0 {
		// Calls sent just before SIGCONT may still time out; none later.
		for _, f := range l.failuresSnapshot() {
			if f.at.After(resumed.Add(time.Second)) {
				t.Errorf("call failed %v after SIGCONT: %v", ms(f.at.Sub(resumed)), f.err)
				break
			}
		}
	}
}
