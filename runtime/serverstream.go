package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
)

// The server side of streams: the stream frames a connection's read loop
// hands over (serverConn.streamFrame), the handler goroutine of each open
// stream (runStream), and the ServerStream the handler uses. streamcore.go
// has the message flow both sides share.

// DefaultMaxConcurrentStreams is how many streams a client may have open on
// one connection to a server at once, unless WithMaxConcurrentStreams says
// otherwise.
const DefaultMaxConcurrentStreams = 100

// WithMaxConcurrentStreams sets how many streams a client may have open on
// one connection at once (default DefaultMaxConcurrentStreams). The server
// announces it in its settings, and a Storks client waits for a free slot
// instead of opening more; an open beyond it is refused, not executed, with
// CodeResourceExhausted. It must be 1 to 2^31-1.
func WithMaxConcurrentStreams(n int) ServerOption {
	if n < 1 || n > maxWindow {
		return reject("WithMaxConcurrentStreams", "must be 1 to %d (got %d)", maxWindow, n)
	}
	return serverFunc(func(c *serverConfig) { c.maxStreams = n })
}

// streamMethod is a streaming method of an export.
type streamMethod struct {
	desc *StreamDesc
	info StreamServerInfo
}

// serverStream is a stream a client opened on a server connection.
type serverStream struct {
	streamCore
	sc   *serverConn
	sm   *streamMethod
	cctx *callCtx
	ctx  context.Context // cctx with the client's metadata

	halfClosed bool // the client half-closed; the read loop's

	serverMeta       // header and trailer; its hmu also guards closed and closeErr
	closed     bool  // end or reset sent or received: nothing more goes out
	closeErr   error // why, for SendMsg after it
}

// refuseOpen refuses the open of stream id with e (refuseStream) and
// reports it to the stats handler, if any, as rejected.
func (sc *serverConn) refuseOpen(id uint64, rh *requestHeader, e *Error) {
	if sc.s.cfg.stats != nil {
		sc.s.rejectStats(sc.ctx, sc, rh.key, rh.method, true, e)
	}
	sc.refuseStream(id, e)
}

// refuseStream answers an open with end and the not-executed flag.
func (sc *serverConn) refuseStream(id uint64, e *Error) {
	sc.writeEnd(id, streamEnd{code: e.Code, flags: errNotExecuted, message: e.Message})
}

func (sc *serverConn) writeEnd(id uint64, end streamEnd) {
	buf := getBuf(headerSize + 64 + len(end.message))
	b := appendHeader(*buf, frameEnd, id, 0)
	b = appendEnd(b, end)
	setBodyLen(b)
	// Waits for room in the write queue: a client can make an end frame
	// for every open it sends, and must not queue them without bound.
	sc.w.write(b)
	*buf = b
	putBuf(buf)
}

func (sc *serverConn) writeHeaders(id uint64, md Metadata) {
	buf := getBuf(headerSize + 64)
	b := appendHeader(*buf, frameHeaders, id, 0)
	b = appendMetadata(b, md)
	setBodyLen(b)
	sc.w.write(b)
	*buf = b
	putBuf(buf)
}

// streamFrame handles a stream frame from the client on a version 2
// connection. It returns false if the connection must be closed.
func (sc *serverConn) streamFrame(fh frameHeader, body *[]byte) bool {
	var (
		err   error
		rh    requestHeader
		chunk []byte
		eom   bool
		code  Code
		incr  int
	)
	switch fh.typ {
	case frameOpen:
		rh, err = parseOpen(*body)
	case frameData:
		chunk, eom, err = parseData(*body, defaultMaxChunk)
	case frameHalfClose:
		err = parseHalfClose(*body)
	case frameReset:
		code, err = parseReset(*body)
	case frameWindowUpdate:
		incr, err = parseWindowUpdate(*body)
	default: // headers, end: server to client only
		err = &FrameError{Reason: fh.typ.String() + " frame from the client (only servers send it)"}
	}
	if err != nil {
		putBuf(body)
		sc.connError(strings.TrimPrefix(err.Error(), "storks protocol: "))
		return false
	}
	if fh.id == 0 {
		putBuf(body)
		if fh.typ != frameWindowUpdate {
			sc.connError(fh.typ.String() + " frame with stream ID 0")
			return false
		}
		if err := sc.link.send.add(incr); err != nil {
			sc.connError("connection window: " + err.(*FrameError).Reason)
			return false
		}
		return true
	}
	if fh.typ == frameOpen {
		ok := sc.open(fh.id, rh)
		putBuf(body)
		return ok
	}
	n := len(*body)
	if fh.typ == frameData {
		if err := sc.link.recv.consume(n); err != nil {
			putBuf(body)
			sc.connError("connection window: " + err.(*FrameError).Reason)
			return false
		}
	}
	sc.mu.Lock()
	ss := sc.streams[fh.id]
	sc.mu.Unlock()
	if ss == nil {
		putBuf(body)
		if fh.id > sc.lastOpen {
			sc.connError(fmt.Sprintf("%s frame for unknown stream %d", fh.typ, fh.id))
			return false
		}
		if fh.typ == frameData {
			sc.link.releaseConn(n) // a closed stream: the credit comes back at once
		}
		return true
	}
	switch fh.typ {
	case frameData:
		if err := ss.recv.consume(n); err != nil {
			putBuf(body)
			sc.connError("stream window: " + err.(*FrameError).Reason)
			return false
		}
		if ss.halfClosed {
			putBuf(body)
			ss.streamError(Errorf(CodeInternal, "data frame on stream %d after half-close", fh.id))
		} else if e := ss.onData(body, chunk, eom, n); e != nil {
			ss.streamError(e)
		}
		sc.link.releaseConn(n)
	case frameHalfClose:
		putBuf(body)
		if ss.halfClosed {
			ss.streamError(Errorf(CodeInternal, "second half-close on stream %d", fh.id))
			return true
		}
		ss.halfClosed = true
		ss.endRecv(io.EOF, false)
	case frameReset:
		putBuf(body)
		e := Errorf(CodeCanceled, "stream %s was reset by the client (%s)", ss.sm.info.FullMethod, code)
		if code == CodeDeadlineExceeded {
			e = Errorf(CodeDeadlineExceeded, "stream %s: the client's deadline passed", ss.sm.info.FullMethod)
		}
		ss.close(e, false)
	case frameWindowUpdate:
		putBuf(body)
		if err := ss.send.add(incr); err != nil {
			sc.connError("stream window: " + err.(*FrameError).Reason)
			return false
		}
	}
	return true
}

// open handles an open frame: the stream starts, or is refused. It
// returns false if the connection must be closed.
func (sc *serverConn) open(id uint64, rh requestHeader) bool {
	s := sc.s
	if id <= sc.lastOpen {
		sc.connError(fmt.Sprintf("open of stream %d, not above the last one (%d)", id, sc.lastOpen))
		return false
	}
	sc.mu.Lock()
	busy := sc.running[id] != nil
	n := len(sc.streams)
	sc.mu.Unlock()
	if busy {
		sc.connError(fmt.Sprintf("open of stream %d, the ID of a call in progress", id))
		return false
	}
	sc.lastOpen = id
	if s.refusing.Load() {
		sc.refuseOpen(id, &rh, wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr()))
		return true
	}
	exp := s.lookup(rh.key)
	if exp == nil {
		sc.refuseOpen(id, &rh, s.notExported(rh.key))
		return true
	}
	sm := exp.streams[string(rh.method)]
	if sm == nil {
		e := Errorf(CodeUnimplemented, "unknown method %s for service %s", rh.method, exp.keyStr)
		if exp.methods[string(rh.method)] != nil {
			e = Errorf(CodeUnimplemented, "method %s of service %s is unary: call it, do not open a stream", rh.method, exp.keyStr)
		}
		sc.refuseOpen(id, &rh, e)
		return true
	}
	if limit := s.cfg.maxStreams; n >= limit {
		sc.refuseOpen(id, &rh, Errorf(CodeResourceExhausted, "%d streams are already open on this connection to %s, the limit (WithMaxConcurrentStreams)", limit, s.Addr()))
		return true
	}
	peer := sc.peer.Load()
	ss := &serverStream{sc: sc, sm: sm}
	ss.method = sm.info.FullMethod
	ss.initCore(&sc.link, id, peer.streamWindow, s.ourSettings().streamWindow)
	ss.cctx = newCallCtx(sc.ctx, rh.timeout)
	ss.ctx = ss.cctx
	if rh.metadata != nil {
		ss.ctx = newIncomingContext(ss.cctx, rh.metadata)
	}
	if s.cfg.stats != nil { // stats.go
		var st callStats
		ss.ctx, st = s.serverStats(ss.ctx, sc, sm.info.FullMethod, sm.info.Key, true)
		ss.st = &st
	}
	sc.mu.Lock()
	if sc.streams == nil { // the connection is closing
		sc.mu.Unlock()
		if ss.st != nil {
			ss.st.end(wrapError(CodeUnavailable, ErrConnClosed, "stream %s: connection closing", sm.info.FullMethod), true, 0, "")
		}
		ss.cctx.cancel(context.Canceled)
		return true
	}
	sc.streams[id] = ss
	sc.mu.Unlock()
	sc.nstreams.Add(1)
	s.openStreams.Add(1)
	s.noteServed()
	ss.cctx.AfterFunc(ss.ctxDone)
	go ss.run()
	return true
}

// run runs the handler and ends the stream with its result.
func (ss *serverStream) run() {
	s := ss.sc.s
	defer s.openStreams.Add(-1)
	defer ss.sc.nstreams.Add(-1)
	err := ss.handle()
	if ss.st != nil {
		ss.st.end(err, false, 0, "")
	}
	var end streamEnd
	if err != nil {
		e := toError(err)
		end.code, end.message = e.Code, e.Message
	}
	ss.finish(end)
}

func (ss *serverStream) handle() error { return ss.sc.s.handleStream(ss.sm, ss) }

// finish sends the stream's status and trailers, unless it is closed
// already, and closes it.
func (ss *serverStream) finish(end streamEnd) {
	ss.hmu.Lock()
	if ss.closed {
		ss.hmu.Unlock()
		return
	}
	if !ss.headerSent && len(ss.header) > 0 {
		ss.sc.writeHeaders(ss.id, ss.header)
	}
	ss.headerSent = true
	end.trailers = ss.trailer
	ss.closed = true
	ss.closeErr = Errorf(CodeInternal, "stream %s has ended", ss.sm.info.FullMethod)
	ss.hmu.Unlock()
	ss.sc.writeEnd(ss.id, end)
	ss.release(ss.closeErr)
}

// close ends the stream without sending end: it was reset, or its
// connection is closing. With sendReset it tells the client with a reset.
func (ss *serverStream) close(e *Error, sendReset bool) {
	ss.hmu.Lock()
	if ss.closed {
		ss.hmu.Unlock()
		return
	}
	ss.closed, ss.closeErr = true, e
	ss.hmu.Unlock()
	if sendReset {
		var b [headerSize + 8]byte
		f := appendReset(appendHeader(b[:0], frameReset, ss.id, 0), e.Code)
		setBodyLen(f)
		ss.sc.w.writeNoWait(f)
	}
	ss.release(e)
}

// streamError ends the stream for a stream error: logged, and the client
// gets the status in an end frame.
func (ss *serverStream) streamError(e *Error) {
	ss.sc.s.warn(warnStream, "storks: ending stream: "+e.Message, "remote", ss.sc.c.RemoteAddr().String(), "method", ss.sm.info.FullMethod)
	ss.hmu.Lock()
	if ss.closed {
		ss.hmu.Unlock()
		return
	}
	ss.closed, ss.closeErr = true, e
	ss.hmu.Unlock()
	ss.sc.writeEnd(ss.id, streamEnd{code: e.Code, message: e.Message})
	ss.release(e)
}

// release frees what a closed stream holds and ends the handler's
// context.
func (ss *serverStream) release(e error) {
	ss.send.close(e)
	ss.endRecv(e, true)
	sc := ss.sc
	sc.mu.Lock()
	if sc.streams != nil {
		delete(sc.streams, ss.id)
	}
	sc.mu.Unlock()
	ss.cctx.cancel(context.Canceled)
}

// ctxDone runs when the handler's context ends: at its deadline the client
// gets DeadlineExceeded.
func (ss *serverStream) ctxDone() {
	if errors.Is(ss.cctx.Err(), context.DeadlineExceeded) {
		ss.hmu.Lock()
		closed := ss.closed
		if !closed {
			ss.closed = true
			ss.closeErr = Errorf(CodeDeadlineExceeded, "stream %s: deadline exceeded", ss.sm.info.FullMethod)
		}
		e := ss.closeErr
		ss.hmu.Unlock()
		if !closed {
			ss.sc.writeEnd(ss.id, streamEnd{code: CodeDeadlineExceeded, message: e.Error()})
			ss.release(e)
		}
	}
}

// SendHeader implements ServerStream.
func (ss *serverStream) SendHeader(md Metadata) error {
	ss.hmu.Lock()
	defer ss.hmu.Unlock()
	if err := ss.markHeaderSent(md); err != nil {
		return err
	}
	if ss.closed {
		return ss.closeErr
	}
	ss.sc.writeHeaders(ss.id, ss.header)
	return nil
}

// serverMeta is the header and trailer a handler's stream collects, over
// the network (serverStream) or in process (localServerStream); the
// header goes out once, before the first message or with the status.
type serverMeta struct {
	hmu        sync.Mutex
	method     string // the full method, for errors
	header     Metadata
	headerSent bool
	trailer    Metadata
}

// SetHeader implements ServerStream.
func (m *serverMeta) SetHeader(md Metadata) error {
	m.hmu.Lock()
	defer m.hmu.Unlock()
	if m.headerSent {
		return Errorf(CodeInternal, "stream %s: SetHeader after the header was sent", m.method)
	}
	m.header = mergeMetadata(m.header, md)
	return nil
}

// SetTrailer implements ServerStream.
func (m *serverMeta) SetTrailer(md Metadata) {
	m.hmu.Lock()
	defer m.hmu.Unlock()
	m.trailer = mergeMetadata(m.trailer, md)
}

// markHeaderSent merges md into the header and marks it sent, for
// SendHeader, which then sends it; it fails if it was sent already. m.hmu
// is held.
func (m *serverMeta) markHeaderSent(md Metadata) error {
	if m.headerSent {
		return Errorf(CodeInternal, "stream %s: SendHeader after the header was sent", m.method)
	}
	m.header = mergeMetadata(m.header, md)
	m.headerSent = true
	return nil
}

func mergeMetadata(dst, src Metadata) Metadata {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(Metadata, len(src))
	}
	maps.Copy(dst, src)
	return dst
}

// Context implements ServerStream.
func (ss *serverStream) Context() context.Context { return ss.ctx }

// SendMsg implements ServerStream.
func (ss *serverStream) SendMsg(m any) error {
	ss.hmu.Lock()
	if ss.closed {
		err := ss.closeErr
		ss.hmu.Unlock()
		return err
	}
	if !ss.headerSent {
		ss.headerSent = true
		if len(ss.header) > 0 {
			ss.sc.writeHeaders(ss.id, ss.header)
		}
	}
	ss.hmu.Unlock()
	fatal, err := ss.sendMsg(ss.cctx, m)
	if err == nil || !fatal {
		return err
	}
	ss.hmu.Lock()
	defer ss.hmu.Unlock()
	if ss.closed {
		return ss.closeErr
	}
	return wrapError(CodeUnavailable, ErrConnClosed, "stream %s: connection closed: %v", ss.sm.info.FullMethod, err)
}

// RecvMsg implements ServerStream.
func (ss *serverStream) RecvMsg(m any) error {
	err := ss.recvMsg(m, nil, nil)
	if err == nil || err == io.EOF {
		return err
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	// A message the codec cannot decode: a stream error, as on a client.
	e := Errorf(CodeInvalidArgument, "stream %s: %v", ss.sm.info.FullMethod, err)
	ss.streamError(e)
	return e
}

// closeStreams closes every stream of a connection that is closing: their
// handlers' contexts end, and their reads and sends fail.
func (sc *serverConn) closeStreams() {
	sc.mu.Lock()
	streams := sc.streams
	sc.streams = nil
	sc.mu.Unlock()
	e := wrapError(CodeUnavailable, ErrConnClosed, "the connection closed")
	for _, ss := range streams {
		ss.close(e, false)
	}
	if sc.version.Load() == 2 {
		sc.link.send.close(e)
	}
}

// endStreams ends every open stream of the server with Unavailable: the
// time Shutdown gives them has passed.
func (s *Server) endStreams() {
	s.mu.RLock()
	b := s.grpc
	s.mu.RUnlock()
	if b != nil {
		b.endStreams(wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr()))
	}
	s.localStreams.Range(func(k, _ any) bool {
		k.(*localClientStream).shutDown(wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr()))
		return true
	})
	s.mu.RLock()
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.RUnlock()
	for _, sc := range conns {
		sc.mu.Lock()
		streams := make([]*serverStream, 0, len(sc.streams))
		for _, ss := range sc.streams {
			streams = append(streams, ss)
		}
		sc.mu.Unlock()
		for _, ss := range streams {
			ss.hmu.Lock()
			if ss.closed {
				ss.hmu.Unlock()
				continue
			}
			e := wrapError(CodeUnavailable, ErrServerClosed, "server %s is shutting down", s.Addr())
			ss.closed, ss.closeErr = true, e
			ss.hmu.Unlock()
			sc.writeEnd(ss.id, streamEnd{code: e.Code, message: e.Message})
			ss.release(e)
		}
	}
}
