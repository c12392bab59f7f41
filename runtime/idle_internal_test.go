package runtime

import (
	"io"
	"log/slog"
	"net"
	goruntime "runtime"
	"syscall"
	"testing"
	"time"
)

// heapAlloc returns the live heap after two collections (the second frees
// what sync.Pool kept from the first).
func heapAlloc() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc
}

// connsFor returns how many connections of each kind a test may open: each
// takes two descriptors here (both ends are in this process).
func connsFor(t *testing.T, want, kinds int) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Logf("getrlimit: %v; assuming 1024 descriptors", err)
		lim.Cur = 1024
	}
	n := want
	if room := (int(lim.Cur) - 200) / (2 * kinds); room < n {
		n = max(room, 10)
		t.Logf("the descriptor limit (ulimit -n) is %d: %d connections of each kind instead of %d", lim.Cur, n, want)
	}
	return n
}

// startQuietServer serves s on a loopback listener and returns its address.
func startQuietServer(t *testing.T, opts ...ServerOption) (*Server, string) {
	t.Helper()
	s := NewServer(append([]ServerOption{WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, opts...)...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(lis); close(done) }()
	t.Cleanup(func() { s.Close(); <-done })
	return s, lis.Addr().String()
}

func (s *Server) connCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.conns)
}

// An idle connection costs the server a few KiB at most: no read buffer is
// held for a connection that sent nothing, nor for one that sent only a
// frame header, whatever body it announced.
func TestIdleConnectionsAreCheap(t *testing.T) {
	const want = 2000
	n := connsFor(t, want, 3)
	saved := idleRelease
	idleRelease = 100 * time.Millisecond
	t.Cleanup(func() { idleRelease = saved })
	s, addr := startQuietServer(t)
	header := appendHeader(nil, frameRequest, 1, 64<<10)
	ping := appendHeader(nil, framePing, 1, 0)
	measure := func(what string, first []byte, answered bool) {
		deadline := time.Now().Add(30 * time.Second)
		for s.connCount() > 0 { // the last measurement's, closing
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still open", s.connCount())
			}
			time.Sleep(10 * time.Millisecond)
		}
		base := heapAlloc()
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			if first != nil {
				if _, err := c.Write(first); err != nil {
					t.Fatal(err)
				}
			}
		}
		if answered {
			for _, c := range conns {
				var pong [headerSize]byte
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, pong[:]); err != nil || pong[3] != byte(framePong) {
					t.Fatalf("no pong: %x, %v", pong, err)
				}
			}
		}
		for s.connCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d connections accepted", s.connCount(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Every connection's goroutine waits for bytes, and those that were
		// answered have found themselves idle.
		time.Sleep(200*time.Millisecond + 3*idleRelease)
		grew := float64(int64(heapAlloc())-int64(base)) / float64(n)
		t.Logf("%d connections that %s: heap +%.1f KiB each (both ends: the client's side is in this process too)", n, what, grew/1024)
		if grew > 8<<10 {
			t.Errorf("%d connections that %s: heap +%.1f KiB each, want < 8 KiB", n, what, grew/1024)
		}
	}
	measure("sent nothing", nil, false)
	measure("sent a header announcing 64 KiB", header, false)
	measure("were answered a ping, then went idle", ping, true)
}

// SetIdleReleaseForTest sets how long an idle connection keeps its read
// buffer, for the tests of package runtime_test, until the returned
// function restores it. Servers started meanwhile use it.
func SetIdleReleaseForTest(d time.Duration) (restore func()) {
	saved := idleRelease
	idleRelease = d
	return func() { idleRelease = saved }
}

type emptyReader struct{ reads int }

func (r *emptyReader) Read([]byte) (int, error) { r.reads++; return 0, nil }

// A source that returns nothing, and no error, forever does not hang the
// wait for a frame.
func TestAwaitBytesNoProgress(t *testing.T) {
	var sc serverConn
	src := &emptyReader{}
	sc.lr.pre.src = src
	if err := sc.awaitBytes(1<<20, acceptV1); err != io.ErrNoProgress || src.reads != 100 {
		t.Fatalf("awaitBytes: %v after %d reads, want io.ErrNoProgress after 100", err, src.reads)
	}
}
