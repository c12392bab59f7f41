package loadtest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoadCountsCallsAndFailures(t *testing.T) {
	var n atomic.Int64
	boom := errors.New("boom")
	l := Start(4, time.Second, 0, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline")
		}
		if n.Add(1)%10 == 0 {
			return boom
		}
		return nil
	})
	for n.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	r := l.Stop()
	if r.Calls != n.Load() || r.Failed != r.Calls/10 || !errors.Is(r.FirstErr, boom) {
		t.Fatalf("result %+v after %d calls", r, n.Load())
	}
}

func TestLogAnswered(t *testing.T) {
	var n atomic.Int64
	boom := errors.New("boom")
	before := time.Now()
	l := StartLog(2, time.Second, time.Millisecond, func(ctx context.Context) (string, error) {
		switch n.Add(1) % 3 {
		case 0:
			return "", boom
		case 1:
			return "a", nil
		}
		return "b", nil
	})
	for n.Load() < 30 {
		time.Sleep(time.Millisecond)
	}
	r := l.Stop()
	after := time.Now()
	na, all, first, last := l.Answered("a", before, after)
	nb, _, _, _ := l.Answered("b", before, after)
	if all != int(r.Calls-r.Failed) || na+nb != all || na == 0 || nb == 0 || r.Failed == 0 {
		t.Fatalf("a %d, b %d, all %d; result %+v", na, nb, all, r)
	}
	if first.Before(before) || last.Before(first) || !last.Before(after) {
		t.Fatalf("first %v, last %v not within [%v, %v)", first, last, before, after)
	}
	if n, all, first, _ := l.Answered("a", after, after.Add(time.Hour)); n != 0 || all != 0 || !first.IsZero() {
		t.Fatalf("an empty window: %d of %d, first %v", n, all, first)
	}
}
