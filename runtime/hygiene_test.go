package runtime_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
)

// warnings counts the connection warnings in logs that contain substr and
// the warnings of kind the summaries say were suppressed.
func warnings(logs, substr, kind string) (logged, suppressed, summaries int) {
	re := regexp.MustCompile(`suppressed (\d+) similar warnings in the last [^"]+" kind="?` + regexp.QuoteMeta(kind))
	for _, line := range strings.Split(logs, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			suppressed += n
			summaries++
		} else if strings.Contains(line, substr) {
			logged++
		}
	}
	return logged, suppressed, summaries
}

// A thousand hostile connections (each a protocol error the server closes
// with a warning) log a bounded number of lines, and summaries account for
// every warning they suppressed.
func TestConnectionWarningsAreRateLimited(t *testing.T) {
	const hostile = 1000
	reg := newRegistry(t)
	var logs logBuffer
	srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithLogger(logs.logger())})
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for range hostile {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [64]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					return // closed by the server
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	const what = "not a Storks peer"
	waitFor(t, func() bool {
		logged, suppressed, _ := warnings(logs.String(), what, "protocol error")
		return logged+suppressed == hostile
	})
	logged, suppressed, summaries := warnings(logs.String(), what, "protocol error")
	lines := strings.Count(logs.String(), "\n")
	t.Logf("%d hostile connections in %v: %d lines logged (%d warnings, %d summaries of %d suppressed)", hostile, elapsed.Round(time.Millisecond), lines, logged, summaries, suppressed)
	// At most 10 warnings per second, and a summary per second after the
	// first.
	windows := int(elapsed/time.Second) + 2
	if logged > 10*windows || summaries > windows || lines > logged+summaries {
		t.Errorf("%d warnings and %d summaries in %v, want at most %d and %d", logged, summaries, elapsed, 10*windows, windows)
	}
	if suppressed == 0 || !strings.Contains(logs.String(), "similar warnings in the last") {
		t.Errorf("no summary of the suppressed warnings:\n%s", logs.String())
	}
}

// occupy opens a connection to addr from the local address local (nil: any)
// and makes sure the server serves it: it answers a ping with a pong, not
// with the goaway of a refusal.
func occupy(t *testing.T, addr string, local net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: local}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ping := []byte{'S', 'K', 1, 4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	if _, err := c.Write(ping); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [16]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("no answer to a ping: %v", err)
	}
	if h[3] != 5 {
		t.Fatalf("answer to a ping is frame type %d, want a pong (5): the connection was refused", h[3])
	}
	c.SetReadDeadline(time.Time{})
	return c
}

// Beyond WithMaxConnections a connection is answered with goaway and a
// not-executed error naming the limit: a client fails over to another
// instance, or gets that error if there is none. Closing a connection
// frees its place.
func TestMaxConnections(t *testing.T) {
	reg := newRegistry(t)
	var logs logBuffer
	full := &echoImpl{name: "full"}
	srv, _ := startProvider(t, reg, full, []storks.ServerOption{storks.WithLogger(logs.logger()), storks.WithMaxConnections(2)})
	a := occupy(t, srv.Addr(), nil)
	occupy(t, srv.Addr(), nil)

	// The only provider is full: the call fails, naming the limit.
	_, ref := refer(t, reg, nil)
	_, err := callEcho(context.Background(), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "the server is at its limit of 2 connections (WithMaxConnections)")
	if !strings.Contains(logs.String(), "refusing connection: the server is at its limit of 2 connections") {
		t.Errorf("refusal not logged:\n%s", logs.String())
	}

	// With another provider, every call fails over to it; none runs on
	// the full one.
	other := &echoImpl{name: "other"}
	startProvider(t, reg, other, nil)
	waitFor(t, func() bool { return len(instances(t, reg)) == 2 })
	_, ref2 := refer(t, reg, nil)
	for i := range 20 {
		if got, err := callEcho(context.Background(), ref2, "y"); err != nil || got != "other:y" {
			t.Fatalf("call %d: %q, %v", i, got, err)
		}
	}
	if n := full.calls.Load(); n != 0 {
		t.Fatalf("%d calls ran on the full server", n)
	}

	// A connection closed frees its place: the first client's next call
	// gets in.
	a.Close()
	waitFor(t, func() bool {
		got, err := callEcho(context.Background(), ref, "z")
		return err == nil && got == "full:z"
	})
}

// WithMaxConnectionsPerIP counts the connections of each client address.
func TestMaxConnectionsPerIP(t *testing.T) {
	reg := newRegistry(t)
	srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithMaxConnectionsPerIP(1)})
	occupy(t, srv.Addr(), nil) // from 127.0.0.1
	_, ref := refer(t, reg, nil)
	_, err := callEcho(context.Background(), ref, "x")
	wantCode(t, err, storks.CodeUnavailable, "the server is at its limit of 1 connections from 127.0.0.1 (WithMaxConnectionsPerIP)")
	// Another loopback address is another client.
	occupy(t, srv.Addr(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
}

// A refused connection whose client speaks version 1 (a request first)
// gets goaway, then an Unavailable error flagged as not executed for each
// request, and is closed.
func TestRefusedVersion1Client(t *testing.T) {
	reg := newRegistry(t)
	srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithMaxConnections(1)})
	occupy(t, srv.Addr(), nil)
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append(requestFrame(7, "a"), requestFrame(9, "b")...))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil || h[3] != 7 {
		t.Fatalf("first frame %x (%v), want goaway", h, err)
	}
	for _, id := range []byte{7, 9} {
		if _, err := io.ReadFull(r, h[:]); err != nil || h[3] != 3 || h[11] != id {
			t.Fatalf("frame %x (%v), want an error frame for request %d", h, err, id)
		}
		body := make([]byte, binary.BigEndian.Uint32(h[12:16]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		// uvarint code 14 (Unavailable), flags 1 (not executed), message.
		if body[0] != 14 || body[1] != 1 || !strings.Contains(string(body[2:]), "WithMaxConnections") {
			t.Fatalf("error body %q, want Unavailable, not executed, naming the limit", body)
		}
	}
}

// A connection that gives its read buffer back when idle keeps working:
// calls after idle pauses succeed, over TLS too (the idle wait ends inside
// the TLS reader), and a frame whose bytes pause for longer than the idle
// release in the middle is read whole.
func TestIdleReleaseKeepsConnectionsWorking(t *testing.T) {
	const release = 30 * time.Millisecond
	t.Cleanup(storks.SetIdleReleaseForTest(release))
	_, serverConf, clientConf := tlsPeers(t)
	for _, tc := range []struct {
		name string
		sopt []storks.ServerOption
		copt []storks.ClientOption
	}{
		{"plaintext", nil, nil},
		{"TLS", []storks.ServerOption{storks.WithTLSConfig(serverConf)}, []storks.ClientOption{storks.WithTLSConfig(clientConf)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t)
			srv, lis := startProvider(t, reg, &echoImpl{name: "p"}, tc.sopt)
			_, ref := refer(t, reg, tc.copt)
			for i := range 6 {
				if got, err := callEcho(context.Background(), ref, "x"); err != nil || got != "p:x" {
					t.Fatalf("call %d: %q, %v", i, got, err)
				}
				time.Sleep(time.Duration(i%3) * 3 * release)
			}
			if n := lis.accepted.Load(); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
			if tc.sopt != nil {
				return
			}
			// A request whose bytes stop in the middle, for longer than
			// the release, twice.
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			frame := requestFrame(5, "slow")
			for _, part := range [][]byte{frame[:10], frame[10:20], frame[20:]} {
				if _, err := c.Write(part); err != nil {
					t.Fatal(err)
				}
				time.Sleep(4 * release)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var h [16]byte
			if _, err := io.ReadFull(c, h[:]); err != nil || h[3] != 2 || h[11] != 5 {
				t.Fatalf("answer %x (%v), want the response to request 5", h, err)
			}
		})
	}
}
