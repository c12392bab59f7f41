package ctxutil_test

import (
	"context"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/ctxutil"
)

func TestSleep(t *testing.T) {
	start := time.Now()
	if !ctxutil.Sleep(context.Background(), 20*time.Millisecond) {
		t.Fatal("Sleep with a live context did not report that d passed")
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("Sleep returned after %v, before d", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if ctxutil.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with a done context reported that d passed")
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("Sleep with a done context took %v", d)
	}
}
