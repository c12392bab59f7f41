package runtime

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// pipeListener hands the server the far ends of net.Pipe connections, so
// that fuzzing a server's read loop uses no ports.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// dial returns the client's end of a new connection to the server.
func (l *pipeListener) dial(t *testing.T) net.Conn {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
	case <-time.After(5 * time.Second):
		t.Fatal("the server does not accept")
	}
	return c
}

// FuzzServerStreamFrames writes arbitrary bytes to a real server's read
// loop, after a valid settings frame, on the hostile test server (4
// streams, 32 KiB messages, the test.Stream service of
// stream_hostile_internal_test.go), then closes the connection. The server
// must not panic, must read everything or close the connection (a write
// that blocks is a hang), must forget the connection and end every handler
// it started once the client is gone, and must then answer a new client.
// The seeds are the frames of the hostile cases.
func FuzzServerStreamFrames(f *testing.F) {
	for _, tc := range hostileCases() {
		f.Add(tc.frames)
	}
	f.Add(hCat(hOpen(1, "Chat"), hMsg(1, hBytesMsg("a")), hHalfClose(1)))
	f.Add(hCat(hOpen(1, "Chat"), hData(1, 0, []byte{0x0a}), hData(1, dataEndOfMessage, []byte{0x01, 'b'}), hWindow(1, 10), hWindow(0, 10), hReset(1, 1)))
	f.Add(hCat(hEcho(1, "x"), hOpen(3, "Hold"), hMsg(3, nil), anyFrame(frameCancel, 1, nil), anyFrame(frameType(99), 3, []byte("skip")), hReset(3, 4)))
	f.Add([]byte{})

	lis := newPipeListener()
	s, svc, _ := startHostileServer(f, lis, slog.New(slog.DiscardHandler))
	settings := settingsFrame(clientSettingsBody(DefaultMaxMessageSize))
	settle := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.mu.RLock()
			n := len(s.conns)
			s.mu.RUnlock()
			if n == 0 && s.openStreams.Load() == 0 && s.inflight.Load() == 0 && svc.held.Load() == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("10s after the client closed: %d connections, %d streams, %d calls on the server", n, s.openStreams.Load(), s.inflight.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	alive := func(t *testing.T) {
		t.Helper()
		nc := lis.dial(t)
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		go nc.Write(hCat(settings, hEcho(1, "alive")))
		r := bufio.NewReader(nc)
		for {
			fh, body, err := readFrame(r, 1<<20, acceptV2)
			if err != nil {
				t.Fatalf("the server does not answer a new client: %v", err)
			}
			if fh.typ == frameResponse && fh.id == 1 {
				var v wrapperspb.StringValue
				err := proto.Unmarshal(*body, &v)
				putBuf(body)
				if err != nil || v.GetValue() != "echo:alive" {
					t.Fatalf("the server answers a new client with %q, %v", v.GetValue(), err)
				}
				return
			}
			putBuf(body)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		settle(t)
		nc := lis.dial(t)
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, nc)
			close(drained)
		}()
		nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := nc.Write(settings)
		if err == nil {
			_, err = nc.Write(in)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server stopped reading for 10s")
		}
		nc.Close()
		<-drained
		settle(t)
		alive(t)
	})
}
