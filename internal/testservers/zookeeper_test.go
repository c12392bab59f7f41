package testservers

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestZooKeeperRestart checks that the server starts, answers the
// four-letter commands, and that Stop, Kill and Start restart it on the same
// port, leaving no JVM behind.
func TestZooKeeperRestart(t *testing.T) {
	start := time.Now()
	s := StartZooKeeper(t)
	t.Logf("first start took %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.FourLetter(ctx, "ruok"); err != nil || out != "imok" {
		t.Fatalf("ruok = %q, %v; want imok", out, err)
	}
	for i, stop := range []func(){s.Stop, s.Kill} {
		pid := s.pid()
		begin := time.Now()
		stop()
		t.Logf("restart %d: stop took %v", i+1, time.Since(begin))
		if s.Running() {
			t.Fatalf("restart %d: still running after stop", i+1)
		}
		if _, err := s.FourLetter(ctx, "srvr"); err == nil {
			t.Fatalf("restart %d: the stopped server still answers", i+1)
		}
		if zkProcessAlive(pid) {
			t.Fatalf("restart %d: the JVM (pid %d) is still alive", i+1, pid)
		}
		begin = time.Now()
		if err := s.Start(); err != nil {
			t.Fatalf("restart %d: Start: %v", i+1, err)
		}
		t.Logf("restart %d: start took %v", i+1, time.Since(begin))
		if out, err := s.FourLetter(ctx, "srvr"); err != nil || !strings.Contains(out, "Mode: standalone") {
			t.Fatalf("restart %d: srvr = %q, %v", i+1, out, err)
		}
	}
	if got, want := s.URL("/x?session-timeout=2s"), "zookeeper://"+s.Addr()+"/x?session-timeout=2s"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if err := s.ExpireSession(ctx, 0x12345, make([]byte, 16)); err == nil {
		t.Errorf("ExpireSession of an unknown session: no error")
	}
	pid := s.pid()
	s.Close()
	if zkProcessAlive(pid) {
		t.Fatalf("the JVM (pid %d) is still alive after Close", pid)
	}
}

func (s *ZooKeeper) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// zkProcessAlive reports whether a process with that pid exists (and is not
// a zombie).
func zkProcessAlive(pid int) bool {
	if pid == 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'

}
