package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// One accepted connection of a Server: the read loop (serve), the dispatch
// of each request to a handler goroutine (request; handlers.go), the
// handler's run and reply (handle), and goaway. The limits that guard the
// connection are in limits.go, its TLS handshake in tls.go.

// serverConn is one accepted connection.
type serverConn struct {
	s      *Server
	c      net.Conn // as accepted; closing it ends the connection
	ip     string   // the client's IP, counted with WithMaxConnectionsPerIP
	rw     net.Conn // frames are read from and written to it: TLS over in, or c
	in     connReader
	lr     lazyReader // the read buffer, held while frames arrive; connread.go
	w      connWriter
	ctx    context.Context
	cancel context.CancelFunc

	peerAddr string // the client's address, for the stats handler only (stats.go)

	ready     atomic.Bool  // TLS handshake done (if any): frames may be written
	closing   atomic.Bool  // closed by the watchdog, which logged why
	started   atomic.Int64 // requests handed to a handler; written by the reader goroutine
	finished  atomic.Int64 // of those, answered
	readSince atomic.Int64 // see connReader
	wd        struct {     // the watchdog's own state
		seen     int64 // started at the last sweep
		busy     int64 // tick when a request last ran or started
		goAwayAt int64 // tick when goaway was sent for idleness
	}

	mu      sync.Mutex
	running map[uint64]*callCtx // nil once the connection is closing

	// The protocol version, decided by the connection's first frame, or
	// by a goaway sent before it (version 1; docs/protocol.md, "Settings
	// exchange"). verMu orders the server's settings frame before a goaway
	// sent from another goroutine.
	verMu    sync.Mutex
	version  atomic.Int32             // 0 until decided, then 1 or 2
	peer     atomic.Pointer[settings] // the client's settings, on a version 2 connection
	lastOpen uint64                   // largest stream ID opened; the reader goroutine's

	// Streams (serverstream.go): the flow-control state shared by the
	// connection's streams, set by the settings exchange, and the open
	// streams (under mu; nil once the connection is closing).
	link     streamLink
	streams  map[uint64]*serverStream
	nstreams atomic.Int64 // streams whose handler runs
}

// newConn returns the new connection c, or nil if it was closed (the
// server is closed) or is being refused (connection limits; connlimit.go).
func (s *Server) newConn(c net.Conn) *serverConn {
	ctx, cancel := context.WithCancel(s.ctx)
	sc := &serverConn{s: s, c: c, ctx: ctx, cancel: cancel, running: make(map[uint64]*callCtx), streams: make(map[uint64]*serverStream)}
	sc.in = connReader{Conn: c, sc: sc}
	if s.cfg.stats != nil {
		sc.peerAddr = c.RemoteAddr().String()
	}
	sc.rw = c
	if s.cfg.sec.tls != nil {
		sc.rw = tls.Server(&sc.in, s.cfg.sec.tls)
	}
	sc.w = connWriter{conn: sc.rw, limit: maxQueuedReplies, clock: &s.tick}
	sc.wd.busy = s.tick.Load()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		c.Close()
		return nil
	}
	if why := s.admitLocked(sc); why != "" {
		s.mu.Unlock()
		cancel()
		s.refuse(c, why)
		return nil
	}
	s.conns[sc] = struct{}{}
	s.bg.Add(1)
	s.handlers.startJanitor(s)
	s.mu.Unlock()
	return sc
}

func (sc *serverConn) serve() {
	s := sc.s
	defer s.bg.Done()
	defer func() {
		sc.cancel()
		sc.cancelAll()
		sc.closeStreams()
		sc.c.Close()
		s.mu.Lock()
		s.dropConnLocked(sc)
		s.mu.Unlock()
	}()
	if !sc.handshake() {
		return
	}
	sc.ready.Store(true)
	var src io.Reader = &sc.in
	if sc.rw != sc.c {
		src = sc.rw
	}
	sc.lr.pre.src = src
	defer sc.releaseReader()
	limit := s.cfg.maxMessageSize
	maxType, first := acceptFirst, true
	for {
		r, err := sc.nextFrame(limit, maxType)
		if err != nil {
			sc.readFailed(frameHeader{}, err)
			return
		}
		if first && !s.cfg.grpc.off {
			if b, _ := r.Peek(1); len(b) == 1 && b[0] == http2Preface[0] && sc.toGRPC() {
				return
			}
		}
		sc.in.frameStarted()
		fh, body, err := readFrame(r, limit, maxType)
		sc.in.frameDone()
		if err != nil {
			sc.readFailed(fh, err)
			return
		}
		if first {
			// The first frame decides the connection's version: settings
			// make it version 2, anything else version 1 for good.
			first, maxType = false, acceptV1
			if fh.typ == frameSettings {
				if !sc.settings(fh, body) {
					return
				}
				maxType = acceptV2
				continue
			}
			sc.decide(1, nil)
		}
		switch fh.typ {
		case frameRequest:
			if !sc.request(fh.id, body) {
				return
			}
			if sc.w.congested.Load() {
				// The client does not read its replies as fast as it sends
				// requests: take no more until they flow.
				sc.w.awaitRoom()
			}
		case framePing:
			putBuf(body)
			sc.writeEmpty(framePong, fh.id)
		case frameCancel:
			putBuf(body)
			sc.mu.Lock()
			c := sc.running[fh.id]
			sc.mu.Unlock()
			if c != nil {
				c.cancel(context.Canceled)
			}
		case frameSettings: // only on a version 2 connection: its first frame was settings
			putBuf(body)
			sc.connError("a second settings frame")
			return
		case frameOpen, frameHeaders, frameData, frameHalfClose, frameEnd, frameReset, frameWindowUpdate:
			// Only on a version 2 connection: readFrame refuses them on
			// version 1.
			if !sc.streamFrame(fh, body) {
				return
			}
		default:
			if fh.typ >= firstUnknownV2 {
				continue // only on a version 2 connection; readFrame skipped the body
			}
			putBuf(body)
			s.warn(warnProtocol, "storks: closing connection: unexpected frame from client", "remote", sc.c.RemoteAddr().String(), "frame", fh.typ.String())
			return
		}
	}
}

// decide records the connection's version, unless it is decided already
// (a goaway sent before the first frame decides version 1), and reports
// whether it did. For version 2 it writes the server's settings frame,
// under verMu, so that a goaway from another goroutine comes after it.
func (sc *serverConn) decide(v int32, settingsFrame []byte) bool {
	sc.verMu.Lock()
	defer sc.verMu.Unlock()
	if sc.version.Load() != 0 {
		return false
	}
	sc.version.Store(v)
	if settingsFrame != nil {
		sc.w.writeNoWait(settingsFrame)
	}
	return true
}

// ourSettings are the settings a server announces.
func (s *Server) ourSettings() settings {
	st := defaultSettings()
	st.maxStreams = s.cfg.maxStreams
	st.maxMessage = s.cfg.maxMessageSize
	return st
}

// settings handles the settings frame that opens a version 2 connection:
// it applies the client's settings, then writes the server's before
// anything else. It returns false if the connection must be closed.
func (sc *serverConn) settings(fh frameHeader, body *[]byte) bool {
	defer putBuf(body)
	if fh.id != 0 {
		sc.decide(1, nil)
		sc.connError(fmt.Sprintf("settings frame with ID %d (want 0)", fh.id))
		return false
	}
	peer, err := parseSettings(*body)
	if err != nil {
		sc.decide(1, nil)
		sc.connError(err.Error())
		return false
	}
	sc.peer.Store(&peer)
	sc.link.init(&sc.w, sc.s.cfg.codec, sc.s.ourSettings(), peer, sc.s.cfg.maxMessageSize)
	var b [headerSize + 64]byte
	f := appendSettings(appendHeader(b[:0], frameSettings, 0, 0), sc.s.ourSettings())
	setBodyLen(f)
	if !sc.decide(2, f) {
		// A goaway went out before this first frame was read, which made
		// the connection version 1: a settings frame is an unknown type
		// there, and the client, whose first frame received is that
		// goaway, sends its calls again on a new connection.
		sc.connError("unknown frame type 8 (settings) after goaway on a connection without settings")
		return false
	}
	return true
}

// connError logs a connection error found by the serve loop and sends
// goaway; the caller closes the connection.
func (sc *serverConn) connError(reason string) {
	sc.s.warn(warnProtocol, "storks: closing connection: "+reason, "remote", sc.c.RemoteAddr().String())
	sc.goAway()
}

func (sc *serverConn) readFailed(fh frameHeader, err error) {
	sc.decide(1, nil) // a first frame that fails is not settings
	s := sc.s
	remote := sc.c.RemoteAddr().String()
	var tl *TooLargeError
	var fe *FrameError
	switch {
	case errors.As(err, &tl):
		s.warn(warnTooLarge, "storks: closing connection: request frame too large", "remote", remote, "size", tl.Size, "limit", tl.Limit)
		// Goaway first, so the client sends nothing more on a connection
		// that is about to close.
		sc.goAway()
		sc.writeError(tl.ID, Errorf(CodeResourceExhausted, "received message larger than max (%d vs. %d)", tl.Size, tl.Limit), errNotExecuted)
	case errors.As(err, &fe):
		s.warn(warnProtocol, "storks: closing connection: "+fe.Reason, "remote", remote)
		sc.goAway()
	case sc.closing.Load(), errors.Is(err, io.EOF), sc.ctx.Err() != nil, errors.Is(err, net.ErrClosed):
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.warn(warnTruncated, "storks: closing connection: truncated frame", "remote", remote)
	default:
		s.cfg.logger.Debug("storks: connection read failed", "remote", remote, "err", err)
	}
}

// request dispatches one request frame. It returns false if the connection
// must be closed.
func (sc *serverConn) request(id uint64, body *[]byte) bool {
	s := sc.s
	rh, err := parseRequest(*body)
	if err != nil {
		putBuf(body)
		s.warn(warnProtocol, "storks: closing connection: "+err.Error(), "remote", sc.c.RemoteAddr().String())
		return false
	}
	if sc.nstreams.Load() > 0 {
		sc.mu.Lock()
		open := sc.streams[id] != nil
		sc.mu.Unlock()
		if open {
			putBuf(body)
			sc.connError(fmt.Sprintf("request with the ID of open stream %d", id))
			return false
		}
	}
	s.inflight.Add(1)
	if s.refusing.Load() {
		s.inflight.Add(-1)
		sc.refuse(id, &rh, body, wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr()))
		return true
	}
	exp := s.lookup(rh.key)
	if exp == nil {
		s.inflight.Add(-1)
		sc.refuse(id, &rh, body, s.notExported(rh.key))
		return true
	}
	m := exp.methods[string(rh.method)]
	if m == nil {
		s.inflight.Add(-1)
		sc.refuse(id, &rh, body, Errorf(CodeUnimplemented, "unknown method %s for service %s", rh.method, exp.keyStr))
		return true
	}
	started := sc.started.Load()
	if limit := s.cfg.sec.maxConcurrent; limit > 0 && started-sc.finished.Load() >= int64(limit) {
		s.inflight.Add(-1)
		sc.refuse(id, &rh, body, Errorf(CodeResourceExhausted, "%d requests are already running on this connection to %s, the limit (WithMaxConcurrentRequests)", limit, s.Addr()))
		return true
	}
	sc.started.Store(started + 1)
	c := newCallCtx(sc.ctx, rh.timeout)
	c.sc, c.id, c.m, c.rh, c.body = sc, id, m, rh, body
	// Registered here, not by the handler goroutine, so that a cancel or an
	// open with this ID right behind the request finds it.
	sc.mu.Lock()
	sc.running[id] = c
	sc.mu.Unlock()
	s.dispatch(c)
	return true
}

// refuse answers request id with e, unexecuted, and reports it to the
// stats handler, if any, as rejected.
func (sc *serverConn) refuse(id uint64, rh *requestHeader, body *[]byte, e *Error) {
	if sc.s.cfg.stats != nil {
		sc.s.rejectStats(sc.ctx, sc, rh.key, rh.method, false, e)
	}
	putBuf(body)
	sc.writeError(id, e, errNotExecuted)
}

// dispatch runs a request on a handler goroutine; see handlerPool.
func (s *Server) dispatch(c *callCtx) { s.handlers.run(s, c) }

func (sc *serverConn) handle(cctx *callCtx) {
	s := sc.s
	id, m, rh, body := cctx.id, cctx.m, cctx.rh, cctx.body
	cctx.m, cctx.rh.payload, cctx.rh.key, cctx.rh.method, cctx.body = nil, nil, nil, nil, nil
	defer sc.finished.Add(1) // after the reply is queued: bounds the handlers waiting to write
	defer s.inflight.Add(-1)
	s.noteServed()
	defer sc.endCall(id, cctx) // request registered it
	var ctx context.Context = cctx
	if rh.metadata != nil {
		ctx = newIncomingContext(ctx, rh.metadata)
	}
	var st callStats // zero without a stats handler: stats.go
	if s.cfg.stats != nil {
		ctx, st = s.serverStats(ctx, sc, m.info.FullMethod, m.info.Key, false)
		st.payload(true, len(rh.payload))
	}
	req := m.desc.NewRequest()
	err := s.cfg.codec.Unmarshal(rh.payload, req)
	putBuf(body)
	if err != nil {
		e := Errorf(CodeInvalidArgument, "decode request for %s: %v", m.info.FullMethod, err)
		st.end(e, true, 0, "")
		sc.writeError(id, e, errNotExecuted)
		return
	}
	resp, err := s.call(ctx, m, req)
	if err != nil {
		e := toError(err)
		st.end(e, false, 0, "")
		sc.writeError(id, e, 0)
		return
	}
	buf := getBuf(headerSize + 1024)
	b := appendHeader(*buf, frameResponse, id, 0)
	buf, b, err = appendMessage(s.cfg.codec, buf, b, resp)
	if err == nil && len(b)-headerSize > s.cfg.maxMessageSize {
		err = Errorf(CodeResourceExhausted, "response message larger than max (%d vs. %d)", len(b)-headerSize, s.cfg.maxMessageSize)
	}
	if err != nil {
		*buf = b
		putBuf(buf)
		e := toError(fmt.Errorf("encode response of %s: %w", m.info.FullMethod, err))
		st.end(e, false, 0, "")
		sc.writeError(id, e, 0)
		return
	}
	setBodyLen(b)
	sc.w.write(b)
	if st.h != nil {
		st.payload(false, len(b)-headerSize)
		st.end(nil, false, 0, "")
	}
	*buf = b
	putBuf(buf)
}

// endCall forgets a finished request and releases its context.
func (sc *serverConn) endCall(id uint64, c *callCtx) {
	sc.mu.Lock()
	if sc.running != nil {
		delete(sc.running, id)
	}
	sc.mu.Unlock()
	c.cancel(context.Canceled)
}

// cancelAll ends the context of every running request: the connection is
// closing.
func (sc *serverConn) cancelAll() {
	sc.mu.Lock()
	running := sc.running
	sc.running = nil
	sc.mu.Unlock()
	for _, c := range running {
		c.cancel(context.Canceled)
	}
}

func (sc *serverConn) writeError(id uint64, e *Error, flags byte) {
	buf := getBuf(headerSize + 16 + len(e.Message))
	b := appendHeader(*buf, frameError, id, 0)
	b = appendErrorBody(b, e, flags)
	setBodyLen(b)
	sc.w.write(b)
	*buf = b
	putBuf(buf)
}

func (sc *serverConn) writeEmpty(t frameType, id uint64) {
	var b [headerSize]byte
	sc.w.write(appendHeader(b[:0], t, id, 0))
}

// goAway tells the client to take its calls elsewhere. It does not wait for
// room in the write queue, and does nothing before the TLS handshake is done.
func (sc *serverConn) goAway() {
	if !sc.ready.Load() || sc.version.Load() == versionGRPC {
		return // a gRPC connection gets grpc-go's GOAWAY
	}
	if sc.version.Load() == 0 {
		sc.verMu.Lock()
		if v := sc.version.Load(); v == versionGRPC {
			sc.verMu.Unlock()
			return
		} else if v == 0 {
			// Before the first frame (an idle connection, a shutdown): the
			// connection becomes version 1, so no settings frame may
			// follow this goaway (docs/protocol.md, "Compatibility").
			sc.version.Store(1)
		}
		sc.writeGoAway()
		sc.verMu.Unlock()
		return
	}
	sc.writeGoAway()
}

func (sc *serverConn) writeGoAway() {
	var b [headerSize]byte
	sc.w.writeNoWait(appendHeader(b[:0], frameGoAway, 0, 0))
}
