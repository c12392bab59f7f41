//go:build race

package main

// raceEnabled tells TestMain to build the binary with -race too.
const raceEnabled = true
