package ctxutil

import (
	"context"
	"time"
)

// Sleep waits for d, or until ctx is done, and reports whether d passed.
// Its timer is stopped either way.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
