package runtime

import (
	"testing"
	"time"
)

// Each kind gets warnBurst lines per window; the next window's first
// warning, or a flush once the window is over, reports what was suppressed.
func TestWarnLimiter(t *testing.T) {
	var l warnLimiter
	t0 := time.Unix(1000, 0)
	allowed := 0
	for i := range warnBurst + 5 {
		ok, sum := l.allow(warnProtocol, "bad frame", t0.Add(time.Duration(i)*time.Millisecond))
		if ok {
			allowed++
		}
		if sum.suppressed != 0 {
			t.Fatalf("summary within the window: %+v", sum)
		}
	}
	if allowed != warnBurst {
		t.Fatalf("%d of %d warnings allowed in one window, want %d", allowed, warnBurst+5, warnBurst)
	}
	if ok, _ := l.allow(warnTLS, "handshake", t0); !ok {
		t.Fatal("another kind was limited by the first")
	}
	if sums := l.flush(t0.Add(warnWindow/2), false); len(sums) != 0 {
		t.Fatalf("flush within the window: %+v", sums)
	}
	ok, sum := l.allow(warnProtocol, "bad frame", t0.Add(warnWindow+time.Millisecond))
	if !ok || sum.suppressed != 5 || sum.kind != warnProtocol || sum.last != "bad frame" {
		t.Fatalf("first warning of the next window: allowed %v, summary %+v; want allowed and 5 suppressed", ok, sum)
	}
	for range warnBurst + 2 {
		l.allow(warnProtocol, "again", t0.Add(warnWindow+2*time.Millisecond))
	}
	sums := l.flush(t0.Add(3*warnWindow), false)
	if len(sums) != 1 || sums[0].suppressed != 3 || sums[0].kind != warnProtocol {
		t.Fatalf("flush after the window: %+v, want one summary of 3", sums)
	}
	for range warnBurst + 1 {
		l.allow(warnLimit, "refused", t0.Add(4*warnWindow))
	}
	if sums := l.flush(t0.Add(4*warnWindow), true); len(sums) != 1 || sums[0].suppressed != 1 {
		t.Fatalf("forced flush: %+v, want one summary of 1", sums)
	}
}
