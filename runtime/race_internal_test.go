//go:build race

package runtime

// raceEnabled: the race detector's sync.Pool drops a quarter of what is
// put in it, so tests of buffer reuse cannot count allocations.
const raceEnabled = true
