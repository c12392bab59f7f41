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
