package runtime

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// The settings exchange of protocol version 2 (docs/protocol.md, "Settings
// exchange" and "Compatibility").

// newLoggedClient returns a client with opts whose log is captured.
func newLoggedClient(t *testing.T, opts ...ClientOption) (*Client, *registrytest.LogBuffer) {
	t.Helper()
	log := &registrytest.LogBuffer{}
	c, err := NewClient(append(opts, WithLogger(log.Logger()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, log
}

type settingsEcho struct{ calls atomic.Int64 }

var settingsEchoDesc = ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []MethodDesc{{
		Name:       "Echo",
		NewRequest: func() any { return new(wrapperspb.StringValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			srv.(*settingsEcho).calls.Add(1)
			return wrapperspb.String("echo:" + req.(*wrapperspb.StringValue).GetValue()), nil
		},
	}},
}

// startSettingsServer serves the echo service and returns its address.
func startSettingsServer(t *testing.T, log *registrytest.LogBuffer, opts ...ServerOption) (*Server, string) {
	t.Helper()
	reg := registry.NewInproc()
	t.Cleanup(func() { reg.Close() })
	s := NewServer(append([]ServerOption{WithRegistry(reg), WithLogger(log.Logger()), WithShutdownWait(10 * time.Millisecond)}, opts...)...)
	if _, err := s.Export(&settingsEchoDesc, &settingsEcho{}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return s, l.Addr().String()
}

func (s *Server) onlyConn(t *testing.T) *serverConn {
	t.Helper()
	var sc *serverConn
	waitSettled(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			sc = c
		}
		return len(s.conns) == 1 && sc.version.Load() != 0
	})
	return sc
}

func waitSettled(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func echoRequest(id uint64, s string) []byte {
	b := appendHeader(nil, frameRequest, id, 0)
	b = appendRequestHeader(b, "test.Echo", "Echo", 0, nil)
	p, _ := proto.Marshal(wrapperspb.String(s))
	b = append(b, p...)
	setBodyLen(b)
	return b
}

// anyFrame is a frame of type t, ID id and body body.
func anyFrame(t frameType, id uint64, body []byte) []byte {
	return append(appendHeader(nil, t, id, len(body)), body...)
}

func settingsFrame(body []byte) []byte {
	b := appendHeader(nil, frameSettings, 0, len(body))
	return append(b, body...)
}

func clientSettingsBody(maxMsg int) []byte {
	st := defaultSettings()
	st.maxStreams = 0
	st.maxMessage = maxMsg
	return appendSettings(nil, st)
}

func TestSettingsV2Negotiated(t *testing.T) {
	log := &registrytest.LogBuffer{}
	s, addr := startSettingsServer(t, log, WithMaxMessageSize(2<<20))
	c, err := NewClient(WithMaxMessageSize(3<<20), WithLogger(log.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	cc, err := c.dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.close(wrapError(CodeCanceled, ErrClientClosed, "test over"))
	// A call right behind the settings, without waiting for the server's.
	reply := new(wrapperspb.StringValue)
	if _, err := cc.invoke(ctx, "test.Echo", "/test.Echo/Echo", "Echo", wrapperspb.String("a"), reply); err != nil || reply.GetValue() != "echo:a" {
		t.Fatalf("call: %q, %v", reply.GetValue(), err)
	}
	waitSettled(t, func() bool { return cc.version.Load() == 2 })
	if p := cc.peer.Load(); p == nil || p.maxMessage != 2<<20 || p.maxStreams != DefaultMaxConcurrentStreams || p.version != 2 {
		t.Errorf("client's peer settings %+v", p)
	}
	sc := s.onlyConn(t)
	if v := sc.version.Load(); v != 2 {
		t.Errorf("server conn version %d, want 2", v)
	}
	if p := sc.peer.Load(); p == nil || p.maxMessage != 3<<20 || p.maxStreams != 0 {
		t.Errorf("server's peer settings %+v", p)
	}
}

// A client that sends no settings (version 1) gets its calls answered and
// never a settings frame.
func TestSettingsV1ClientUnchanged(t *testing.T) {
	log := &registrytest.LogBuffer{}
	s, addr := startSettingsServer(t, log)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ping := appendHeader(nil, framePing, 9, 0)
	nc.Write(append(append(echoRequest(7, "x"), ping...), echoRequest(8, "y")...))
	r := bufio.NewReader(nc)
	got := map[uint64]frameType{}
	for range 3 {
		fh, body, err := readFrame(r, 1<<20, acceptV1) // a settings frame fails here
		if err != nil {
			t.Fatalf("read: %v (got so far %v)", err, got)
		}
		got[fh.id] = fh.typ
		putBuf(body)
	}
	if got[7] != frameResponse || got[8] != frameResponse || got[9] != framePong {
		t.Errorf("frames %v", got)
	}
	if v := s.onlyConn(t).version.Load(); v != 1 {
		t.Errorf("server conn version %d, want 1", v)
	}
	// A settings frame later is an unknown type, as in version 1.
	nc.Write(settingsFrame(clientSettingsBody(DefaultMaxMessageSize)))
	expectClosed(t, r)
	waitSettled(t, func() bool { return strings.Contains(log.String(), "unknown frame type 8") })
}

// expectClosed reads until the connection closes; only goaway may come.
func expectClosed(t *testing.T, r *bufio.Reader) {
	t.Helper()
	for {
		fh, body, err := readFrame(r, 1<<20, acceptV2)
		if err != nil {
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
				t.Errorf("read: %v", err)
			}
			return
		}
		putBuf(body)
		if fh.typ != frameGoAway && fh.typ != frameSettings {
			t.Errorf("unexpected %s frame before the close", fh.typ)
		}
	}
}

// v2Conn dials addr and makes the settings exchange by hand.
func v2Conn(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.Write(settingsFrame(clientSettingsBody(DefaultMaxMessageSize)))
	r := bufio.NewReader(nc)
	fh, body, err := readFrame(r, 1<<20, acceptV2)
	if err != nil || fh.typ != frameSettings || fh.id != 0 {
		t.Fatalf("first frame from the server: %v %v", fh, err)
	}
	if _, err := parseSettings(*body); err != nil {
		t.Fatal(err)
	}
	putBuf(body)
	return nc, r
}

func TestSettingsUnknownFrameSkippedOnV2(t *testing.T) {
	log := &registrytest.LogBuffer{}
	_, addr := startSettingsServer(t, log)
	nc, r := v2Conn(t, addr)
	unknown := append(appendHeader(nil, frameType(200), 5, 10), make([]byte, 10)...)
	empty := appendHeader(nil, frameType(16), 0, 0)
	nc.Write(append(append(unknown, empty...), echoRequest(1, "z")...))
	fh, body, err := readFrame(r, 1<<20, acceptV2)
	if err != nil || fh.typ != frameResponse || fh.id != 1 {
		t.Fatalf("after unknown frames: %v %v", fh, err)
	}
	putBuf(body)
	// An open is refused, not executed; the stream is then closed, and a
	// reset for it is ignored.
	open := appendHeader(nil, frameOpen, 3, 0)
	open = appendRequestHeader(open, "test.Echo", "Echo", 0, nil)
	setBodyLen(open)
	reset := appendReset(appendHeader(nil, frameReset, 3, 0), CodeCanceled)
	setBodyLen(reset)
	nc.Write(append(append(open, reset...), echoRequest(4, "w")...))
	fh, body, err = readFrame(r, 1<<20, acceptV2)
	if err != nil || fh.typ != frameEnd || fh.id != 3 {
		t.Fatalf("answer to open: %v %v", fh, err)
	}
	e, err := parseEnd(*body)
	if err != nil || e.code != CodeUnimplemented || e.flags != errNotExecuted {
		t.Errorf("end %+v, %v", e, err)
	}
	putBuf(body)
	fh, body, err = readFrame(r, 1<<20, acceptV2)
	if err != nil || fh.typ != frameResponse || fh.id != 4 {
		t.Fatalf("after open and reset: %v %v", fh, err)
	}
	putBuf(body)
}

func TestSettingsHostileFromClient(t *testing.T) {
	pairs := func(kv ...uint64) []byte {
		b := binary.AppendUvarint(nil, uint64(len(kv)/2))
		for _, v := range kv {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	many := binary.AppendUvarint(nil, 33)
	for i := range 33 {
		many = binary.AppendUvarint(many, uint64(100+i))
		many = binary.AppendUvarint(many, 0)
	}
	good := settingsFrame(clientSettingsBody(DefaultMaxMessageSize))
	withID := append([]byte(nil), good...)
	withID[11] = 1
	for _, tc := range []struct {
		name, frames, reason string
	}{
		{"duplicate IDs", string(settingsFrame(pairs(4, 4096, 4, 4096))), "appears twice"},
		{"count over 32", string(settingsFrame(many)), "33 settings"},
		{"window too small", string(settingsFrame(pairs(4, 10))), "initial stream window"},
		{"window too large", string(settingsFrame(pairs(5, 1<<31))), "initial connection window"},
		{"version 1", string(settingsFrame(pairs(1, 1))), "protocol version"},
		{"trailing bytes", string(settingsFrame(append(pairs(2, 0), 0))), "after its last setting"},
		{"count past the end", string(settingsFrame([]byte{5, 1})), "runs past the end"},
		{"ID not 0", string(withID), "settings frame with ID 1"},
		{"second settings", string(good) + string(good), "second settings frame"},
		{"settings not first", string(appendHeader(nil, framePing, 1, 0)) + string(good), "unknown frame type 8"},
		{"stream frame for an unknown stream", string(good) + string(appendHeader(nil, frameHalfClose, 9, 0)), "unknown stream 9"},
		{"end to a server", string(good) + string(appendHeader(nil, frameEnd, 1, 0)), "end frame from the client (only servers send it)"},
		{"unknown type on v1", string(appendHeader(nil, framePing, 1, 0)) + string(appendHeader(nil, frameType(16), 0, 0)), "unknown frame type 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &registrytest.LogBuffer{}
			_, addr := startSettingsServer(t, log)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write([]byte(tc.frames))
			r := bufio.NewReader(nc)
			for {
				fh, body, err := readFrame(r, 1<<20, acceptV2)
				if err != nil {
					break
				}
				putBuf(body)
				if fh.typ != frameGoAway && fh.typ != frameSettings && fh.typ != framePong {
					t.Errorf("unexpected %s frame", fh.typ)
				}
			}
			waitSettled(t, func() bool { return strings.Contains(log.String(), tc.reason) })
		})
	}
}

// fakeV1Server behaves as a version 1 server: a settings frame first is an
// unknown frame type, answered with goaway and a close without reading
// further; otherwise it answers echo requests. It counts the executions of
// each request value.
type fakeV1Server struct {
	l         net.Listener
	mu        sync.Mutex
	executed  map[string]int
	conns     []string // "settings" or "v1", in order
	pipelined int      // request frames found (and not executed) behind settings
	unread    bool     // do not read what follows the settings (the close then resets)
	settingsV bool     // send a settings frame first on a v1 connection (hostile)
}

func startFakeV1(t *testing.T) *fakeV1Server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeV1Server{l: l, executed: map[string]int{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				f.serve(nc)
			}()
		}
	}()
	return f
}

func (f *fakeV1Server) serve(nc net.Conn) {
	r := bufio.NewReader(nc)
	first := true
	for {
		maxType := acceptV1
		if first {
			maxType = acceptFirst // to skip a settings body and count what follows
		}
		fh, body, err := readFrame(r, 1<<20, maxType)
		if err == nil && fh.typ == frameSettings {
			// A version 1 server: "unknown frame type 8".
			putBuf(body)
			err = errors.New("unknown frame type 8")
		}
		if err != nil {
			if first && strings.Contains(err.Error(), "unknown frame type 8") {
				f.mu.Lock()
				f.conns = append(f.conns, "settings")
				f.mu.Unlock()
				// Let the client queue requests behind its settings, and
				// count them (without executing them) for the test.
				time.Sleep(50 * time.Millisecond)
				nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				f.mu.Lock()
				unread := f.unread
				f.mu.Unlock()
				n := 0
				for !unread {
					fh, body, err := readFrame(r, 1<<20, acceptV1)
					if err != nil {
						break
					}
					putBuf(body)
					if fh.typ == frameRequest {
						n++
					}
				}
				f.mu.Lock()
				f.pipelined += n
				f.mu.Unlock()
				nc.Write(appendHeader(nil, frameGoAway, 0, 0))
			}
			return
		}
		if first {
			f.mu.Lock()
			f.conns = append(f.conns, "v1")
			send := f.settingsV
			f.mu.Unlock()
			if send {
				nc.Write(settingsFrame(clientSettingsBody(DefaultMaxMessageSize)))
			}
			first = false
		}
		if fh.typ != frameRequest {
			putBuf(body)
			continue
		}
		rh, err := parseRequest(*body)
		if err != nil {
			return
		}
		var in wrapperspb.StringValue
		proto.Unmarshal(rh.payload, &in)
		putBuf(body)
		f.mu.Lock()
		f.executed[in.GetValue()]++
		f.mu.Unlock()
		p, _ := proto.Marshal(wrapperspb.String("v1:" + in.GetValue()))
		nc.Write(append(appendHeader(nil, frameResponse, fh.id, len(p)), p...))
	}
}

func TestSettingsV2ClientFallsBackToV1Server(t *testing.T) {
	t.Run("requests read", func(t *testing.T) { testFallback(t, false) })
	// As a real version 1 server: the requests behind the settings stay
	// unread, so closing resets the connection.
	t.Run("requests unread", func(t *testing.T) { testFallback(t, true) })
}

func testFallback(t *testing.T, unread bool) {
	f := startFakeV1(t)
	f.mu.Lock()
	f.unread = unread
	f.mu.Unlock()
	c, _ := newLoggedClient(t)
	ep := &endpoint{addr: f.l.Addr().String()}
	defer ep.closeConn()
	ref := &Reference{cl: c, keyStr: "test.Echo"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 50
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := string(rune('A'+i%26)) + string(rune('a'+i/26))
			reply := new(wrapperspb.StringValue)
			if _, err := ref.attempt(ctx, ep, nil, "/test.Echo/Echo", "Echo", wrapperspb.String(v), reply, 1); err != nil || reply.GetValue() != "v1:"+v {
				failed.Add(1)
				t.Errorf("call %s: %q, %v", v, reply.GetValue(), err)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	f.mu.Lock()
	if len(f.executed) != n {
		t.Errorf("%d distinct calls executed, want %d", len(f.executed), n)
	}
	for v, k := range f.executed {
		if k != 1 {
			t.Errorf("call %s executed %d times", v, k)
		}
	}
	if f.pipelined == 0 && !unread {
		t.Error("no request was pipelined behind the settings")
	}
	t.Logf("%d of %d calls were pipelined behind the settings and sent again", f.pipelined, n)
	if len(f.conns) != 2 || f.conns[0] != "settings" || f.conns[1] != "v1" {
		t.Errorf("connections %v, want [settings v1]", f.conns)
	}
	f.mu.Unlock()
	if cc := ep.cc.Load(); cc == nil || cc.version.Load() != 1 || cc.probing {
		t.Errorf("connection after the fallback: %+v", cc)
	}
	c.mu.Lock()
	if len(c.v1Next) != 0 {
		t.Errorf("v1 memory not consumed by the redial: %v", c.v1Next)
	}
	c.mu.Unlock()
}

// A server that sends settings to a client that sent none is a connection
// error; so is a bad or second settings frame from a server.
func TestSettingsHostileFromServer(t *testing.T) {
	t.Run("to a client that sent none", func(t *testing.T) {
		f := startFakeV1(t)
		f.mu.Lock()
		f.settingsV = true
		f.mu.Unlock()
		c, log := newLoggedClient(t)
		c.speaksV1(f.l.Addr().String())
		cc, err := c.dial(context.Background(), f.l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if cc.probing {
			t.Fatal("dial after speaksV1 sent settings")
		}
		cc.invoke(context.Background(), "test.Echo", "/test.Echo/Echo", "Echo", wrapperspb.String("q"), new(wrapperspb.StringValue))
		waitSettled(t, func() bool { return cc.broken.Load() && strings.Contains(log.String(), "unknown frame type 8") })
	})
	for _, tc := range []struct{ name, frames, reason string }{
		{"bad settings", string(settingsFrame([]byte{2, 4, 1, 4, 1})), "initial stream window"},
		{"second settings", string(settingsFrame(clientSettingsBody(1))) + string(settingsFrame(clientSettingsBody(1))), "second settings frame"},
		{"stream frame for a stream not opened", string(settingsFrame(clientSettingsBody(1))) + string(anyFrame(frameEnd, 1, appendEnd(nil, streamEnd{}))), "end frame for unknown stream 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				nc, err := l.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				nc.Write([]byte(tc.frames))
				io.Copy(io.Discard, nc)
			}()
			c, log := newLoggedClient(t)
			cc, err := c.dial(context.Background(), l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			waitSettled(t, func() bool { return cc.broken.Load() && strings.Contains(log.String(), tc.reason) })
		})
	}
}
