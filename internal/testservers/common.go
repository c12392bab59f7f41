package testservers

import (
	"fmt"
	"net"
	"os"
)

// TB is the part of testing.TB the starters use; *testing.T and *testing.B
// satisfy it.
type TB interface {
	Helper()
	Cleanup(func())
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// failOrSkip fails the test under CI=true, where a server that cannot start
// is a failure, and skips it otherwise, saying how to make it a failure.
func failOrSkip(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s", msg)
		return
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Keep every listener open until all ports are known, so that
		// they are distinct.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
