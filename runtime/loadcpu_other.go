//go:build !unix

package runtime

import "time"

// processCPUTime is not available here: published loads carry no CPU share.
func processCPUTime() (time.Duration, bool) { return 0, false }
