//go:build race

package runtime_test

// raceEnabled says the tests run with the race detector, which makes them
// several times slower: load tests do less.
const raceEnabled = true
