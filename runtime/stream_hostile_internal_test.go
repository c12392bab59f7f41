package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// Hostile stream frames (issue 9, "Bad input"): a raw TCP client that makes
// the settings exchange and then sends malformed or hostile stream frames
// to a real server, and a fake server that sends them to a real client.
// Each case checks the reason logged, whether the connection went (goaway,
// close) or only the stream (an end frame with its code, the connection
// still answering), and that a normal client can still call and stream on
// the same server afterwards. docs/protocol.md, "Stream states", "Stream
// errors and connection errors" and "Flow control", say what each must be.

// The server of these tests announces 4 streams and 32 KiB messages, so
// that the limits are reached with few frames.
const (
	hostileMaxStreams = 4
	hostileMaxMessage = 32 << 10
)

// hostileSvc is a small test.Stream service: unary Echo (which blocks on
// "block" until its context ends), bidi Chat (echoes each message), and
// bidi Hold (reads nothing and waits for its context), which leaves what
// the client sends queued and its credit held, and server-streaming Flood
// (sends 16000-byte messages for as long as it can).
type hostileSvc struct {
	blocking chan struct{} // a value for each "block" call that started
	held     atomic.Int64  // Hold handlers running
}

var hostileDesc = ServiceDesc{
	ServiceName: "test.Stream",
	HandlerType: (*any)(nil),
	Methods: []MethodDesc{{
		Name:       "Echo",
		NewRequest: func() any { return new(wrapperspb.StringValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			v := req.(*wrapperspb.StringValue).GetValue()
			if v == "block" {
				select {
				case srv.(*hostileSvc).blocking <- struct{}{}:
				default:
				}
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return wrapperspb.String("echo:" + v), nil
		},
	}},
	Streams: []StreamDesc{
		{
			StreamName: "Chat",
			Handler: func(_ any, st ServerStream) error {
				for {
					m := new(wrapperspb.BytesValue)
					if err := st.RecvMsg(m); err == io.EOF {
						return nil
					} else if err != nil {
						return err
					}
					if err := st.SendMsg(m); err != nil {
						return err
					}
				}
			},
			ServerStreams: true,
			ClientStreams: true,
		},
		{
			StreamName: "Hold",
			Handler: func(srv any, st ServerStream) error {
				svc := srv.(*hostileSvc)
				svc.held.Add(1)
				defer svc.held.Add(-1)
				<-st.Context().Done()
				return st.Context().Err()
			},
			ServerStreams: true,
			ClientStreams: true,
		},
		{
			StreamName: "Flood",
			Handler: func(_ any, st ServerStream) error {
				m := wrapperspb.Bytes(make([]byte, 16000))
				for {
					if err := st.SendMsg(m); err != nil {
						return err
					}
				}
			},
			ServerStreams: true,
		},
	},
}

// startHostileServer serves hostileDesc on lis, with the limits above.
func startHostileServer(t testing.TB, lis net.Listener, logger *slog.Logger) (*Server, *hostileSvc, registry.Registry) {
	t.Helper()
	reg := registry.NewInproc()
	t.Cleanup(func() { reg.Close() })
	s := NewServer(WithRegistry(reg), WithLogger(logger), WithShutdownWait(10*time.Millisecond),
		WithMaxConcurrentStreams(hostileMaxStreams), WithMaxMessageSize(hostileMaxMessage))
	svc := &hostileSvc{blocking: make(chan struct{}, 1)}
	if _, err := s.Export(&hostileDesc, svc); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return s, svc, reg
}

// Frames, as a hostile client writes them.

func hOpenKey(id uint64, key, method string, md Metadata) []byte {
	b := appendRequestHeader(appendHeader(nil, frameOpen, id, 0), key, method, 0, md)
	setBodyLen(b)
	return b
}

func hOpen(id uint64, method string) []byte { return hOpenKey(id, "test.Stream", method, nil) }

func hData(id uint64, flags byte, chunk []byte) []byte {
	return anyFrame(frameData, id, append([]byte{flags}, chunk...))
}

func hMsg(id uint64, payload []byte) []byte { return hData(id, dataEndOfMessage, payload) }

func hHalfClose(id uint64) []byte { return anyFrame(frameHalfClose, id, nil) }

func hReset(id, code uint64) []byte {
	return anyFrame(frameReset, id, binary.AppendUvarint(nil, code))
}

func hWindow(id, n uint64) []byte {
	return anyFrame(frameWindowUpdate, id, binary.AppendUvarint(nil, n))
}

func hEcho(id uint64, s string) []byte {
	b := appendRequestHeader(appendHeader(nil, frameRequest, id, 0), "test.Stream", "Echo", 0, nil)
	p, _ := proto.Marshal(wrapperspb.String(s))
	b = append(b, p...)
	setBodyLen(b)
	return b
}

func hCat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func hRepeat(n int, f func(i int) []byte) []byte {
	var b []byte
	for i := range n {
		b = append(b, f(i)...)
	}
	return b
}

// hBytesMsg is an encoded BytesValue, a message Chat takes.
func hBytesMsg(s string) []byte {
	p, _ := proto.Marshal(wrapperspb.Bytes([]byte(s)))
	return p
}

// What a case expects of the connection.
type hostileOutcome int

const (
	hStream   hostileOutcome = iota // the connection stays: ping answered
	hConnErr                        // goaway, then the connection closes
	hConnGone                       // the connection closes (the client half-closed it)
)

// hostileEnd is an end frame a case expects.
type hostileEnd struct {
	id      uint64
	code    Code
	notExec bool
	msg     string // substring of the end's message
}

type hostileCase struct {
	name   string
	before func(t *testing.T, h *hostileRaw) // optional, after the settings exchange
	frames []byte                            // then these
	// closeWrite half-closes the TCP connection after the frames.
	closeWrite bool
	outcome    hostileOutcome
	ends       []hostileEnd
	reason     string // logged by the server; "" if nothing need be
	maxWarn    int    // warnings the case may log; 0 means 1
}

// hostileRaw is the hostile client's connection, after the settings
// exchange.
type hostileRaw struct {
	t   *testing.T
	nc  net.Conn
	r   *bufio.Reader
	s   *Server
	svc *hostileSvc
}

func (h *hostileRaw) send(b []byte) {
	h.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := h.nc.Write(b); err != nil {
		// The server may close the connection before it read everything.
		h.t.Logf("write: %v", err)
	}
}

// next reads the next frame, with a copy of its body.
func (h *hostileRaw) next() (frameHeader, []byte, error) {
	h.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	fh, body, err := readFrame(h.r, 1<<20, acceptV2)
	if err != nil {
		return fh, nil, err
	}
	var b []byte
	if body != nil {
		b = append([]byte(nil), *body...)
		putBuf(body)
	}
	return fh, b, nil
}

// waitEnd reads until the end frame of stream id, which it returns.
func (h *hostileRaw) waitEnd(id uint64) streamEnd {
	h.t.Helper()
	for {
		fh, body, err := h.next()
		if err != nil {
			h.t.Fatalf("waiting for the end of stream %d: %v", id, err)
		}
		if fh.typ == frameEnd && fh.id == id {
			e, err := parseEnd(body)
			if err != nil {
				h.t.Fatal(err)
			}
			return e
		}
	}
}

// serverConn is the server's side of the connection.
func (h *hostileRaw) serverConn() *serverConn {
	h.t.Helper()
	var sc *serverConn
	waitSettled(h.t, func() bool {
		h.s.mu.RLock()
		defer h.s.mu.RUnlock()
		for c := range h.s.conns {
			if c.c.RemoteAddr().String() == h.nc.LocalAddr().String() {
				sc = c
			}
		}
		return sc != nil
	})
	return sc
}

func hostileCases() []hostileCase {
	big := bytes.Repeat([]byte{'x'}, defaultMaxChunk)
	openMD := hOpenKey(1, "test.Stream", "Hold", Metadata{"key": "value"})
	truncatedMD := anyFrame(frameOpen, 1, openMD[headerSize:len(openMD)-2])
	openPayload := anyFrame(frameOpen, 1, append(append([]byte(nil), hOpen(1, "Hold")[headerSize:]...), 'p', 'q'))
	return []hostileCase{
		// Frames for streams that do not exist.
		{name: "data for an unknown stream", frames: hMsg(7, nil), outcome: hConnErr, reason: "data frame for unknown stream 7"},
		{name: "half-close for an unknown stream", frames: hHalfClose(9), outcome: hConnErr, reason: "half-close frame for unknown stream 9"},
		{name: "reset for an unknown stream", frames: hReset(11, uint64(CodeCanceled)), outcome: hConnErr, reason: "reset frame for unknown stream 11"},
		{name: "window update for an unknown stream", frames: hWindow(13, 100), outcome: hConnErr, reason: "window update frame for unknown stream 13"},
		{name: "data above the last open stream", frames: hCat(hOpen(1, "Hold"), hMsg(3, nil)), outcome: hConnErr, reason: "data frame for unknown stream 3"},
		{name: "data with stream ID 0", frames: hMsg(0, nil), outcome: hConnErr, reason: "data frame with stream ID 0"},
		{name: "open with stream ID 0", frames: hOpen(0, "Hold"), outcome: hConnErr, reason: "open frame with stream ID 0"},
		{name: "half-close with stream ID 0", frames: hHalfClose(0), outcome: hConnErr, reason: "half-close frame with stream ID 0"},
		{name: "reset with stream ID 0", frames: hReset(0, 1), outcome: hConnErr, reason: "reset frame with stream ID 0"},

		// Flow control.
		{name: "data past the stream window", frames: hCat(hOpen(1, "Hold"), hRepeat(16, func(int) []byte { return hMsg(1, big) })), outcome: hConnErr, reason: "stream window: peer sent 16385 bytes of data with 16369 bytes of credit (window 262144)"},
		{
			// The server grants connection credit again as soon as a frame
			// is off the connection, so 16 KiB chunks never get past its
			// 1 MiB: the window is filled first, as by a peer that sent
			// data the server has not taken yet.
			name: "data past the connection window",
			before: func(t *testing.T, h *hostileRaw) {
				h.serverConn().link.recv.used.Add(defaultConnWindow - 100)
			},
			frames:  hCat(hOpen(1, "Hold"), hMsg(1, make([]byte, 200))),
			outcome: hConnErr, reason: "connection window: peer sent 201 bytes of data with 100 bytes of credit",
		},
		{name: "stream window update of 0", frames: hCat(hOpen(1, "Hold"), hWindow(1, 0)), outcome: hConnErr, reason: "window increment 0 (must be 1 to 2147483647)"},
		{name: "connection window update of 0", frames: hWindow(0, 0), outcome: hConnErr, reason: "window increment 0 (must be 1 to 2147483647)"},
		{name: "window update of 2^31", frames: hCat(hOpen(1, "Hold"), hWindow(1, 1<<31)), outcome: hConnErr, reason: "window increment 2147483648 (must be"},
		{name: "window update of 2^64-1 (10-byte uvarint)", frames: hCat(hOpen(1, "Hold"), hWindow(1, 1<<64-1)), outcome: hConnErr, reason: "window increment 18446744073709551615 (must be"},
		{name: "connection window update of 2^63 (negative as int64)", frames: hWindow(0, 1<<63), outcome: hConnErr, reason: "window increment 9223372036854775808 (must be"},
		{name: "window update with an 11-byte uvarint", frames: anyFrame(frameWindowUpdate, 0, bytes.Repeat([]byte{0xff}, 11)), outcome: hConnErr, reason: "malformed window increment length"},
		{name: "window update with trailing bytes", frames: anyFrame(frameWindowUpdate, 0, []byte{1, 0}), outcome: hConnErr, reason: "window update frame has 1 bytes after its increment"},
		{name: "stream window overflow by increments", frames: hCat(hOpen(1, "Hold"), hWindow(1, maxWindow-defaultStreamWindow), hWindow(1, 1)), outcome: hConnErr, reason: "stream window: window update of 1 overflows the window (2147483647 + 1 > 2147483647)"},
		{name: "connection window overflow by increments", frames: hCat(hWindow(0, maxWindow/2), hWindow(0, maxWindow/2-defaultConnWindow+1), hWindow(0, 1)), outcome: hConnErr, reason: "connection window: window update of 1 overflows the window"},
		{name: "data chunk over the max chunk size", frames: hCat(hOpen(1, "Hold"), hMsg(1, append(big, 'x'))), outcome: hConnErr, reason: "data chunk of 16385 bytes is over the max chunk size (16384)"},
		{name: "data with reserved flag bits", frames: hCat(hOpen(1, "Hold"), hData(1, 0x83, []byte("x"))), outcome: hConnErr, reason: "data frame has reserved flags 0x82 set"},
		{name: "data without its flags byte", frames: hCat(hOpen(1, "Hold"), anyFrame(frameData, 1, nil)), outcome: hConnErr, reason: "data frame has no flags byte"},

		// Stream states and directions.
		{
			name: "data after half-close", frames: hCat(hOpen(1, "Hold"), hHalfClose(1), hMsg(1, hBytesMsg("late")), hMsg(1, nil)),
			ends:   []hostileEnd{{id: 1, code: CodeInternal, msg: "data frame on stream 1 after half-close"}},
			reason: "ending stream: data frame on stream 1 after half-close",
		},
		{
			name: "second half-close", frames: hCat(hOpen(1, "Hold"), hHalfClose(1), hHalfClose(1)),
			ends:   []hostileEnd{{id: 1, code: CodeInternal, msg: "second half-close on stream 1"}},
			reason: "ending stream: second half-close on stream 1",
		},
		{name: "headers from the client", frames: hCat(hOpen(1, "Hold"), anyFrame(frameHeaders, 1, []byte{0})), outcome: hConnErr, reason: "headers frame from the client (only servers send it)"},
		{name: "end from the client", frames: hCat(hOpen(1, "Hold"), anyFrame(frameEnd, 1, appendEnd(nil, streamEnd{}))), outcome: hConnErr, reason: "end frame from the client (only servers send it)"},
		{name: "half-close with a body", frames: hCat(hOpen(1, "Hold"), anyFrame(frameHalfClose, 1, []byte{0})), outcome: hConnErr, reason: "half-close frame has a 1-byte body"},
		{name: "reset code out of range", frames: hCat(hOpen(1, "Hold"), hReset(1, 1<<32)), outcome: hConnErr, reason: "reset code 4294967296 out of range"},
		{
			name: "frames for a stream the server ended are ignored",
			before: func(t *testing.T, h *hostileRaw) {
				h.send(hCat(hOpen(1, "Chat"), hMsg(1, hBytesMsg("a")), hHalfClose(1)))
				if e := h.waitEnd(1); e.code != CodeOK {
					t.Fatalf("Chat ended with %+v", e)
				}
			},
			frames:  hCat(hMsg(1, hBytesMsg("late")), hWindow(1, 100), hHalfClose(1), hReset(1, uint64(CodeCanceled))),
			maxWarn: -1,
		},

		// Opens.
		{
			name: "open flood past WithMaxConcurrentStreams",
			frames: hCat(
				hRepeat(hostileMaxStreams, func(i int) []byte { return hOpen(uint64(2*i+1), "Hold") }),
				hRepeat(16, func(i int) []byte { return hOpen(uint64(101+2*i), "Hold") }),
				hRepeat(hostileMaxStreams, func(i int) []byte { return hReset(uint64(2*i+1), uint64(CodeCanceled)) }),
			),
			ends: func() (ends []hostileEnd) {
				for i := range 16 {
					ends = append(ends, hostileEnd{id: uint64(101 + 2*i), code: CodeResourceExhausted, notExec: true, msg: "4 streams are already open on this connection"})
				}
				return ends
			}(),
			maxWarn: -1,
		},
		{name: "open with a decreasing ID", frames: hCat(hOpen(5, "Hold"), hOpen(3, "Hold")), outcome: hConnErr, reason: "open of stream 3, not above the last one (5)"},
		{name: "open reusing a stream ID", frames: hCat(hOpen(5, "Hold"), hOpen(5, "Chat")), outcome: hConnErr, reason: "open of stream 5, not above the last one (5)"},
		{
			name: "open with the ID of a unary call in progress",
			before: func(t *testing.T, h *hostileRaw) {
				h.send(hEcho(9, "block"))
				select {
				case <-h.svc.blocking:
				case <-time.After(5 * time.Second):
					t.Fatal("the blocking call did not start")
				}
			},
			frames:  hOpen(9, "Hold"),
			outcome: hConnErr, reason: "open of stream 9, the ID of a call in progress",
		},
		{
			// Right behind the request, before its handler goroutine runs.
			name: "open right behind a unary call of the same ID", frames: hCat(hEcho(9, "block"), hOpen(9, "Hold")),
			outcome: hConnErr, reason: "open of stream 9, the ID of a call in progress",
		},
		{name: "request with the ID of an open stream", frames: hCat(hOpen(3, "Hold"), hEcho(3, "x")), outcome: hConnErr, reason: "request with the ID of open stream 3"},
		{name: "open with truncated metadata", frames: truncatedMD, outcome: hConnErr, reason: "metadata value length 5 runs past the end of the frame"},
		{name: "open with a payload", frames: openPayload, outcome: hConnErr, reason: "open frame has 2 bytes after its metadata"},
		{name: "open with an empty method", frames: hOpen(1, ""), outcome: hConnErr, reason: "request has an empty method name"},
		{
			name: "open for an unknown service", frames: hOpenKey(1, "test.Nope", "Hold", nil),
			ends:    []hostileEnd{{id: 1, code: CodeUnimplemented, notExec: true, msg: "service test.Nope is not exported"}},
			maxWarn: -1,
		},
		{
			name: "open for a unary method", frames: hOpen(1, "Echo"),
			ends:    []hostileEnd{{id: 1, code: CodeUnimplemented, notExec: true, msg: "method Echo of service test.Stream is unary"}},
			maxWarn: -1,
		},
		{
			name: "open for an unknown method", frames: hOpen(1, "Nope"),
			ends:    []hostileEnd{{id: 1, code: CodeUnimplemented, notExec: true, msg: "unknown method Nope for service test.Stream"}},
			maxWarn: -1,
		},

		// Messages.
		{
			name:   "message over the max size, in chunks",
			frames: hCat(hOpen(1, "Hold"), hData(1, 0, big), hData(1, 0, big), hData(1, dataEndOfMessage, []byte("x"))),
			ends:   []hostileEnd{{id: 1, code: CodeResourceExhausted, msg: "received message larger than max (32769 vs. 32768)"}},
			reason: "ending stream: received message larger than max (32769 vs. 32768)",
		},
		{
			// Within the credit: held (each at the cost of its bytes),
			// never a reason to end the stream.
			name:    "10,000 empty messages queued unread",
			frames:  hCat(hOpen(1, "Hold"), hRepeat(10000, func(int) []byte { return hMsg(1, nil) })),
			maxWarn: -1,
		},
		{
			name:   "undecodable message",
			frames: hCat(hOpen(1, "Chat"), hMsg(1, []byte{0xff})),
			ends:   []hostileEnd{{id: 1, code: CodeInvalidArgument, msg: "stream /test.Stream/Chat: decode message"}},
			reason: "ending stream: stream /test.Stream/Chat: decode message",
		},

		// Storms.
		{
			name:    "10,000 resets for closed streams",
			frames:  hCat(hOpen(20001, "Nope"), hRepeat(10000, func(i int) []byte { return hReset(uint64(2*i+1), uint64(CodeCanceled)) })),
			ends:    []hostileEnd{{id: 20001, code: CodeUnimplemented, notExec: true}},
			maxWarn: -1,
		},
		{
			name:    "10,000 window updates and data frames for closed streams",
			frames:  hCat(hOpen(20001, "Nope"), hRepeat(5000, func(i int) []byte { return hCat(hWindow(uint64(2*i+1), maxWindow), hMsg(uint64(2*i+1), nil)) })),
			ends:    []hostileEnd{{id: 20001, code: CodeUnimplemented, notExec: true}},
			maxWarn: -1,
		},
		{
			name: "1,000 streams opened and reset",
			frames: hRepeat(1000, func(i int) []byte {
				return hCat(hOpen(uint64(2*i+1), "Hold"), hReset(uint64(2*i+1), uint64(CodeCanceled)))
			}),
			maxWarn: -1,
		},

		// Truncation.
		{name: "truncated data frame, then close", frames: hCat(hOpen(1, "Hold"), appendHeader(nil, frameData, 1, 100), []byte{1, 2, 3}), closeWrite: true, outcome: hConnGone, reason: "truncated frame"},
		{name: "truncated header, then close", frames: hCat(hOpen(1, "Hold"), appendHeader(nil, frameData, 1, 100)[:9]), closeWrite: true, outcome: hConnGone, reason: "truncated frame"},
	}
}

func TestStreamHostileFromClient(t *testing.T) {
	log := &registrytest.LogBuffer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, svc, reg := startHostileServer(t, l, log.Logger())
	cl, err := NewClient(WithRegistry(reg), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref, err := cl.Refer(ctx, "test.Stream", WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	waitSettled(t, func() bool { return len(ref.Providers()) == 1 })
	healthy(t, ref)

	cases := hostileCases()
	if len(cases) < 24 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			from := len(log.String())
			nc, r := v2Conn(t, l.Addr().String())
			h := &hostileRaw{t: t, nc: nc, r: r, s: s, svc: svc}
			sc := h.serverConn()
			if tc.before != nil {
				tc.before(t, h)
			}
			h.send(tc.frames)
			if tc.closeWrite {
				nc.(*net.TCPConn).CloseWrite()
			}
			checkHostileOutcome(t, h, tc)
			if tc.reason != "" {
				waitSettled(t, func() bool { return strings.Contains(log.String()[from:], tc.reason) })
			}
			nc.Close()
			// The connection and its streams and calls are all gone.
			waitSettled(t, func() bool {
				s.mu.RLock()
				_, open := s.conns[sc]
				s.mu.RUnlock()
				return !open && s.openStreams.Load() == 0 && s.inflight.Load() == 0 && svc.held.Load() == 0
			})
			logged := log.String()[from:]
			limit := tc.maxWarn
			if limit == 0 {
				limit = 1
			} else if limit < 0 {
				limit = 0
			}
			if n := strings.Count(logged, "level=WARN") + strings.Count(logged, "level=ERROR"); n > limit {
				t.Errorf("%d warnings logged (at most %d):\n%s", n, limit, logged)
			}
			t.Logf("logged: %s", strings.TrimSpace(logged))
			healthy(t, ref)
		})
	}
}

// checkHostileOutcome reads what the server sends after a case's frames.
func checkHostileOutcome(t *testing.T, h *hostileRaw, tc hostileCase) {
	t.Helper()
	want := map[uint64]hostileEnd{}
	for _, e := range tc.ends {
		want[e.id] = e
	}
	if tc.outcome != hStream {
		goaway := false
		for {
			fh, _, err := h.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
					t.Fatalf("the connection was not closed: %v", err)
				}
				break
			}
			switch fh.typ {
			case frameGoAway:
				goaway = true
			case frameEnd:
				if _, ok := want[fh.id]; !ok {
					t.Errorf("unexpected end of stream %d", fh.id)
				}
			}
		}
		if tc.outcome == hConnErr && !goaway {
			t.Error("connection closed without goaway")
		}
		return
	}
	// A ping after the frames: its pong comes once the server read them
	// all. An end from a handler may come after it.
	const pingID = 1 << 40
	h.send(anyFrame(framePing, pingID, nil))
	got := map[uint64]bool{}
	pong := false
	for !pong || len(got) < len(want) {
		fh, body, err := h.next()
		if err != nil {
			t.Fatalf("the connection did not stay (ends so far %v): %v", got, err)
		}
		switch fh.typ {
		case frameGoAway:
			t.Fatal("goaway: the connection did not stay")
		case frameEnd:
			e, err := parseEnd(body)
			if err != nil {
				t.Fatal(err)
			}
			w, ok := want[fh.id]
			if !ok {
				t.Errorf("unexpected end of stream %d: %+v", fh.id, e)
				continue
			}
			got[fh.id] = true
			if e.code != w.code || (e.flags&errNotExecuted != 0) != w.notExec || !strings.Contains(e.message, w.msg) {
				t.Errorf("stream %d ended with %s %q (flags %#x), want %s %q (not executed: %v)", fh.id, e.code, e.message, e.flags, w.code, w.msg, w.notExec)
			}
		case framePong:
			pong = pong || fh.id == pingID
		}
	}
}

// healthy makes a unary call and a stream on ref.
func healthy(t *testing.T, ref *Reference) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply := new(wrapperspb.StringValue)
	if err := ref.Invoke(ctx, "/test.Stream/Echo", wrapperspb.String("ok"), reply); err != nil || reply.GetValue() != "echo:ok" {
		t.Fatalf("call after the case: %q, %v", reply.GetValue(), err)
	}
	st, err := ref.NewStream(ctx, &hostileDesc.Streams[0], "/test.Stream/Chat")
	if err != nil {
		t.Fatalf("stream after the case: %v", err)
	}
	in := new(wrapperspb.BytesValue)
	if err := st.SendMsg(wrapperspb.Bytes([]byte("ok"))); err != nil {
		t.Fatalf("send after the case: %v", err)
	}
	if err := st.RecvMsg(in); err != nil || string(in.GetValue()) != "ok" {
		t.Fatalf("receive after the case: %q, %v", in.GetValue(), err)
	}
	st.CloseSend()
	if err := st.RecvMsg(in); err != io.EOF {
		t.Fatalf("end after the case: %v", err)
	}
}

// The client side: a fake server makes the settings exchange, reads the
// client's open, and answers it with hostile frames.

// clientFrame is a frame the fake server received after the open.
type clientFrame struct {
	fh   frameHeader
	body []byte
}

// startHostileStreamServer accepts one connection and answers the first
// open with frames(id); with closeAfter it then closes the connection.
// What the client sends afterwards comes on the channel, which is closed
// when the connection is.
func startHostileStreamServer(t *testing.T, frames func(id uint64) []byte, closeAfter bool) (string, <-chan clientFrame) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan clientFrame, 64)
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		defer close(got)
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		go func() { <-t.Context().Done(); nc.Close() }()
		r := bufio.NewReader(nc)
		if fh, body, err := readFrame(r, 1<<20, acceptFirst); err != nil || fh.typ != frameSettings {
			t.Errorf("first frame from the client: %v %v", fh, err)
			return
		} else {
			putBuf(body)
		}
		nc.Write(settingsFrame(appendSettings(nil, defaultSettings())))
		for {
			fh, body, err := readFrame(r, 1<<20, acceptV2)
			if err != nil {
				return
			}
			putBuf(body)
			if fh.typ == frameOpen {
				nc.Write(frames(fh.id))
				break
			}
		}
		if closeAfter {
			return
		}
		for {
			fh, body, err := readFrame(r, 1<<20, acceptV2)
			if err != nil {
				return
			}
			f := clientFrame{fh: fh}
			if body != nil {
				f.body = append([]byte(nil), *body...)
				putBuf(body)
			}
			select {
			case got <- f:
			default:
			}
		}
	}()
	return l.Addr().String(), got
}

func TestStreamHostileFromServer(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, defaultMaxChunk)
	headers := func(id uint64) []byte { return anyFrame(frameHeaders, id, appendMetadata(nil, Metadata{"k": "v"})) }
	for _, tc := range []struct {
		name       string
		frames     func(id uint64) []byte
		closeAfter bool
		opts       []ClientOption
		connErr    bool   // the connection fails; else only the stream
		code       Code   // of RecvMsg's error; OK for io.EOF
		msg        string // in RecvMsg's error
		reason     string // logged; "" if nothing may be
		reset      Code   // the code of the client's reset, for a stream error; OK for none
	}{
		{name: "data for an unknown stream", frames: func(id uint64) []byte { return hMsg(id+100, nil) }, connErr: true, code: CodeUnavailable, reason: "data frame for unknown stream"},
		{name: "end for an unknown stream", frames: func(id uint64) []byte { return anyFrame(frameEnd, id+100, appendEnd(nil, streamEnd{})) }, connErr: true, code: CodeUnavailable, reason: "end frame for unknown stream"},
		{name: "data with stream ID 0", frames: func(uint64) []byte { return hMsg(0, nil) }, connErr: true, code: CodeUnavailable, reason: "data frame with stream ID 0"},
		{name: "open from the server", frames: func(id uint64) []byte { return hOpen(id+2, "Chat") }, connErr: true, code: CodeUnavailable, reason: "open frame from the server (only clients send it)"},
		{name: "half-close from the server", frames: hHalfClose, connErr: true, code: CodeUnavailable, reason: "half-close frame from the server (only clients send it)"},
		{name: "data past the stream window", frames: func(id uint64) []byte { return hRepeat(16, func(int) []byte { return hMsg(id, big) }) }, connErr: true, code: CodeUnavailable, reason: "stream window: peer sent 16385 bytes of data with 16369 bytes of credit (window 262144)"},
		{name: "data chunk over the max chunk size", frames: func(id uint64) []byte { return hMsg(id, append(big, 'x')) }, connErr: true, code: CodeUnavailable, reason: "data chunk of 16385 bytes is over the max chunk size (16384)"},
		{name: "end with reserved flags", frames: func(id uint64) []byte { return anyFrame(frameEnd, id, []byte{byte(CodeInternal), 0x02, 0, 0}) }, connErr: true, code: CodeUnavailable, reason: "end frame has reserved flags 0x02 set"},
		{name: "end OK and not executed", frames: func(id uint64) []byte { return anyFrame(frameEnd, id, []byte{0, errNotExecuted, 0, 0}) }, connErr: true, code: CodeUnavailable, reason: "end frame has code OK and the not-executed flag"},
		{name: "stream window overflow by increments", frames: func(id uint64) []byte { return hCat(hWindow(id, maxWindow-defaultStreamWindow), hWindow(id, 1)) }, connErr: true, code: CodeUnavailable, reason: "stream window: window update of 1 overflows the window"},
		{name: "connection window overflow", frames: func(uint64) []byte { return hWindow(0, maxWindow) }, connErr: true, code: CodeUnavailable, reason: "window update of 2147483647 overflows the window"},
		{name: "window update of 0", frames: func(id uint64) []byte { return hWindow(id, 0) }, connErr: true, code: CodeUnavailable, reason: "window increment 0 (must be 1 to 2147483647)"},
		{name: "window update of 2^64-1", frames: func(id uint64) []byte { return hWindow(id, 1<<64-1) }, connErr: true, code: CodeUnavailable, reason: "window increment 18446744073709551615"},
		{name: "truncated frame, then close", frames: func(id uint64) []byte { return appendHeader(nil, frameData, id, 100)[:10] }, closeAfter: true, connErr: true, code: CodeUnavailable, msg: "unexpected EOF", reason: "closing connection: truncated frame"},
		{name: "headers twice", frames: func(id uint64) []byte { return hCat(headers(id), headers(id)) }, code: CodeInternal, msg: "the server sent headers after headers", reason: "resetting stream: stream /test.Stream/Chat: the server sent headers after headers", reset: CodeInternal},
		{name: "headers after data", frames: func(id uint64) []byte { return hCat(hMsg(id, hBytesMsg("a")), headers(id)) }, code: CodeInternal, msg: "the server sent headers after data", reason: "resetting stream: stream /test.Stream/Chat: the server sent headers after data", reset: CodeInternal},
		{
			name:   "message over the client's max size, in chunks",
			frames: func(id uint64) []byte { return hCat(hData(id, 0, big), hData(id, 0, big), hMsg(id, []byte("x"))) },
			opts:   []ClientOption{WithMaxMessageSize(32 << 10)},
			code:   CodeResourceExhausted, msg: "received message larger than max (32769 vs. 32768)",
			reason: "resetting stream: received message larger than max (32769 vs. 32768)", reset: CodeResourceExhausted,
		},
		{name: "reset by the server", frames: func(id uint64) []byte { return hReset(id, uint64(CodeAborted)) }, code: CodeAborted, msg: "was reset by the provider"},
		{
			name: "frames after the end are ignored",
			frames: func(id uint64) []byte {
				return hCat(anyFrame(frameEnd, id, appendEnd(nil, streamEnd{})), hMsg(id, nil), headers(id), hWindow(id, 5), hReset(id, 1), anyFrame(frameEnd, id, appendEnd(nil, streamEnd{})))
			},
			code: CodeOK,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, got := startHostileStreamServer(t, tc.frames, tc.closeAfter)
			c, log := newLoggedClient(t, tc.opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cc, err := c.dial(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.close(wrapError(CodeCanceled, ErrClientClosed, "test over"))
			want := tc.msg
			if want == "" {
				want = tc.reason
			}
			cs, _, err := cc.openStream(ctx, "test.Stream", "/test.Stream/Chat", "Chat")
			if err != nil {
				// The frames can break the connection before the write of
				// the open returns: then the open fails, as clearly.
				if e, ok := err.(*Error); !tc.connErr || !ok || e.Code != tc.code || !strings.Contains(e.Message, want) || strings.Count(e.Message, "broke") != 1 {
					t.Fatalf("open: %v", err)
				}
				t.Logf("open: %v", err)
				return
			}
			if tc.reason != "" {
				waitSettled(t, func() bool { return strings.Contains(log.String(), tc.reason) })
			}
			if tc.connErr {
				waitSettled(t, cc.broken.Load)
			} else if tc.reset != CodeOK {
				for f := range got {
					if f.fh.typ != frameReset || f.fh.id != cs.id {
						continue
					}
					if code, err := parseReset(f.body); err != nil || code != tc.reset {
						t.Errorf("the client reset with %v, %v; want %v", code, err, tc.reset)
					}
					break
				}
			}
			// The stream fails (or ends) at once, without hanging.
			// The stream fails (or ends) at once, without hanging, once the
			// messages it received before are read.
			recv := make(chan error, 1)
			go func() {
				for {
					if err := cs.RecvMsg(new(wrapperspb.BytesValue)); err != nil {
						recv <- err
						return
					}
				}
			}()
			select {
			case err = <-recv:
			case <-time.After(5 * time.Second):
				t.Fatal("RecvMsg hangs")
			}
			if tc.code == CodeOK {
				if err != io.EOF {
					t.Errorf("RecvMsg: %v, want io.EOF", err)
				}
			} else if e, ok := err.(*Error); !ok || e.Code != tc.code || !strings.Contains(e.Message, strings.TrimPrefix(want, "resetting stream: ")) {
				t.Errorf("RecvMsg: %v, want %s with %q", err, tc.code, want)
			}
			if tc.connErr {
				if err := cs.SendMsg(wrapperspb.Bytes(nil)); err == nil {
					t.Error("SendMsg on a broken connection succeeded")
				}
			} else {
				// The connection stays: another stream opens on it.
				if cc.broken.Load() {
					t.Fatal("a stream error broke the connection")
				}
				cs2, _, err := cc.openStream(ctx, "test.Stream", "/test.Stream/Chat", "Chat")
				if err != nil {
					t.Fatalf("second stream: %v", err)
				}
				for f := range got {
					if f.fh.typ == frameOpen && f.fh.id == cs2.id {
						break
					}
				}
			}
			limit := 1
			if tc.reason == "" {
				limit = 0
			}
			if n := strings.Count(log.String(), "level=WARN"); n > limit {
				t.Errorf("%d warnings logged (at most %d):\n%s", n, limit, log.String())
			}
			t.Logf("RecvMsg: %v; logged: %s", err, strings.TrimSpace(log.String()))
		})
	}
}

// A client that reads nothing, has the server's writer blocked (a Flood
// stream under windows of 2^31-1) and sends opens that are refused, each
// naming a 16000-byte method the refusal repeats, holds at most the write
// queue's bound on the server: the reader stops taking frames instead of
// queueing end frames without end.
func TestStreamHostileRefusalsBounded(t *testing.T) {
	log := &registrytest.LogBuffer{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, svc, _ := startHostileServer(t, l, log.Logger())
	nc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	st := defaultSettings()
	st.maxStreams, st.streamWindow, st.connWindow = 0, maxWindow, maxWindow
	nc.Write(hCat(settingsFrame(appendSettings(nil, st)), hOpen(1, "Flood")))
	h := &hostileRaw{t: t, nc: nc, s: s, svc: svc}
	sc := h.serverConn()
	waitSettled(t, func() bool { return sc.w.busySince.Load() != 0 }) // Flood's write is stuck
	queued := func() int {
		sc.w.mu.Lock()
		defer sc.w.mu.Unlock()
		return len(sc.w.queue)
	}
	method := strings.Repeat("m", 16000)
	id := uint64(3)
	for round := range 4 {
		var b []byte
		for range 250 {
			b = append(b, hOpen(id, method)...)
			id += 2
		}
		nc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := nc.Write(b)
		q := queued()
		t.Logf("round %d: %d bytes queued on the server (write: %v)", round, q, err)
		if q > maxQueuedReplies+2*len(method) {
			t.Fatalf("%d bytes queued on the server, over the bound of %d", q, maxQueuedReplies)
		}
	}
}
