package runtime

import (
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The client side of streams: Reference.NewStream (the same reference,
// selection, interceptors and in-process shortcut as unary calls), the
// opening of a stream on a connection, the frames the connection's read
// loop hands to it (clientConn.streamFrame), and the ClientStream the caller
// uses. streamcore.go has the message flow both sides share.

// NewStream opens a stream for method, a streaming method of the
// reference's service described by desc (see Invoker and ClientStream). The
// stream goes to an export in this process, unless the reference was made
// WithRemote, else to an instance the reference's balancer picks. Opening
// follows the not-executed rules of unary calls: if no connection can be
// made, the provider speaks protocol version 1, or the connection closes
// before the open was sent, another instance is tried (up to three). Once
// open, a stream is never retried: its errors are the caller's. Call
// options set outgoing metadata (WithMetadata) and the hash key
// (WithHashKey); fail modes and the
// reference's default deadline do not apply to streams: bound a stream
// with ctx.
func (r *Reference) NewStream(ctx context.Context, desc *StreamDesc, method string, opts ...CallOption) (ClientStream, error) {
	if desc == nil {
		return nil, Errorf(CodeInvalidArgument, "open stream %s: stream descriptor is nil", method)
	}
	if len(opts) > 0 {
		var cc callConfig
		if err := cc.apply("NewStream", opts); err != nil {
			return nil, err
		}
		if cc.metadata != nil {
			ctx = NewOutgoingContext(ctx, cc.metadata)
		}
		if cc.hashKey != "" {
			ctx = context.WithValue(ctx, hashKeyKey{}, cc.hashKey)
		}
	}
	if r.cl.cfg.stats != nil { // stats.go
		// CallEnd comes when the stream ends, or now if it did not open.
		as := r.beginClient(ctx, method, true)
		s, err := r.openStream(as, desc, method)
		if err != nil {
			as.end(err)
		}
		return s, err
	}
	return r.openStream(ctx, desc, method)
}

// openStream is NewStream after its options: through the client's stream
// interceptors.
func (r *Reference) openStream(ctx context.Context, desc *StreamDesc, method string) (ClientStream, error) {
	if ic := r.cl.streamInterceptor; ic != nil {
		return ic(ctx, desc, method, r.newStream)
	}
	return r.newStream(ctx, desc, method)
}

// newStream is the reference's Streamer.
func (r *Reference) newStream(ctx context.Context, desc *StreamDesc, method string) (ClientStream, error) {
	if !strings.HasPrefix(method, r.prefix) || len(method) == len(r.prefix) {
		return nil, Errorf(CodeInvalidArgument, "method %q does not belong to service %s", method, r.key.Service)
	}
	if r.closed.Load() {
		return nil, wrapError(CodeCanceled, ErrClientClosed, "open stream %s: reference is closed", method)
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(ctx, "open stream "+method)
	}
	short := method[len(r.prefix):]
	if !r.remote && localCount.Load() > 0 {
		if exp := lookupLocal(r.keyStr); exp != nil {
			if !r.localNoted.Load() {
				r.noteLocal(false)
			}
			return exp.openLocal(ctx, r, desc, method, short)
		}
	}
	var tried []*endpoint
	hashKey, _ := ctx.Value(hashKeyKey{}).(string)
	for attempt := 1; ; attempt++ {
		st := r.state.Load()
		if st == nil || len(st.instances) == 0 {
			if r.closed.Load() {
				return nil, wrapError(CodeCanceled, ErrClientClosed, "open stream %s: reference is closed", method)
			}
			if err := r.noProvider(ctx, nil); err != nil {
				return nil, err
			}
			continue // the list changed: look again
		}
		var ep *endpoint
		var done func(DoneInfo)
		if tried == nil {
			var err error
			if ep, done, err = r.pick(ctx, method, hashKey, st); err != nil {
				return nil, err
			}
		} else {
			ep, done = r.pickOther(ctx, method, hashKey, st, attempt, tried, nil, false)
		}
		var (
			as     *attemptStats // nil without a stats handler: stats.go
			asN    int
			asTime time.Time
		)
		if r.cl.cfg.stats != nil {
			as, asN, asTime = attemptBegin(ctx, ep.addr)
		}
		start := ep.load.begin()
		cs, o, err := r.openOn(ctx, ep, method, short)
		if as != nil {
			as.attemptEnd(asTime, ep.addr, asN, err)
		}
		lat := ep.load.end(start, faulty(o, err))
		if done != nil {
			done(DoneInfo{Err: err, Latency: lat})
		}
		r.cl.noteOutcome(ep, o)
		if err == nil {
			return cs, nil
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "open stream "+method)
		}
		if (o == outNotRun || o == outNoConn) && attempt < min(len(st.instances), maxAttempts) {
			tried = append(tried, ep)
			continue
		}
		return nil, err
	}
}

// openOn opens the stream on a connection to ep.
func (r *Reference) openOn(ctx context.Context, ep *endpoint, method, short string) (*clientStream, outcome, error) {
	for range 2 {
		cc, err := ep.conn(ctx, r.cl)
		if err != nil {
			switch {
			case errors.Is(err, ErrClientClosed):
				return nil, outLocal, err
			case ctx.Err() == nil:
				return nil, outNoConn, err
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				return nil, outTimeout, err
			}
			return nil, outLocal, err
		}
		cs, o, err := cc.openStream(ctx, r.keyStr, method, short)
		if err != nil && errors.Is(err, errV1Server) {
			continue // dial again, without settings: openStream then refuses at once
		}
		return cs, o, err
	}
	return nil, outNotRun, Errorf(CodeUnimplemented, "open stream %s: provider %s speaks protocol version 1, which has no streams", method, ep.addr)
}

// clientStream is a stream this client opened.
type clientStream struct {
	streamCore
	cc     *clientConn
	method string
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool // stops the watch of the caller's context

	headerOnce sync.Once
	headerDone chan struct{} // closed when the header arrives or the stream ends
	header     Metadata      // set before headerDone closes

	// The read loop's view of the server's frames.
	gotHeader, gotData bool

	sendClosed bool // CloseSend was called; the sending goroutine's

	as *attemptStats // nil without a stats handler: stats.go

	endMu   sync.Mutex
	ended   bool
	byPeer  bool  // ended by the server's end frame
	status  error // nil for OK
	trailer Metadata
}

// openStream opens a stream on the connection: it waits for the server's
// settings and for a free stream slot, then sends the open frame. The
// outcome says whether another instance may be tried.
func (cc *clientConn) openStream(ctx context.Context, key, method, short string) (*clientStream, outcome, error) {
	select {
	case <-cc.settled:
	case <-ctx.Done():
		return nil, ctxOutcome(ctx), ctxError(ctx, "open stream "+method)
	}
	if cc.version.Load() != 2 {
		cc.mu.Lock()
		e := cc.err
		cc.mu.Unlock()
		if e != nil {
			return nil, outNotRun, e
		}
		return nil, outNotRun, Errorf(CodeUnimplemented, "open stream %s: provider %s speaks protocol version 1, which has no streams", method, cc.addr)
	}
	if cap(cc.slots) == 0 {
		return nil, outNotRun, Errorf(CodeUnimplemented, "open stream %s: provider %s accepts no streams", method, cc.addr)
	}
	select {
	case cc.slots <- struct{}{}:
	case <-cc.done:
		return nil, outNotRun, cc.failure()
	case <-ctx.Done():
		return nil, ctxOutcome(ctx), ctxError(ctx, "open stream "+method)
	}
	peer := cc.peer.Load()
	cs := &clientStream{cc: cc, method: method, headerDone: make(chan struct{})}
	cs.initCore(&cc.link, 0, peer.streamWindow, cc.cl.ourSettings().streamWindow)
	if cc.cl.cfg.stats != nil {
		if as := streamStats(ctx); as != nil {
			cs.st, cs.as = &as.cs, as
		}
	}
	cs.ctx, cs.cancel = context.WithCancel(ctx)

	var timeout = streamTimeout(ctx)
	md := OutgoingMetadata(ctx)
	cc.openMu.Lock()
	cc.mu.Lock()
	if cc.err != nil || cc.draining.Load() {
		e := cc.err
		cc.mu.Unlock()
		cc.openMu.Unlock()
		<-cc.slots
		cs.cancel()
		if e == nil {
			e = wrapError(CodeUnavailable, ErrConnClosed, "connection to %s is closing", cc.addr)
		}
		cc.maybeClose()
		return nil, outNotRun, e
	}
	id := cc.nextID.Add(1)
	cs.id = id
	cc.streams[id] = cs
	cc.lastOpen.Store(id)
	cc.mu.Unlock()
	buf := getBuf(headerSize + 128)
	b := appendHeader(*buf, frameOpen, id, 0)
	b = appendRequestHeader(b, key, short, timeout, md)
	setBodyLen(b)
	werr := cc.w.write(b)
	cc.openMu.Unlock()
	*buf = b
	putBuf(buf)
	if werr != nil {
		e, ok := werr.(*Error) // the connection's failure, if the read loop found it first
		if !ok {
			e = wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %v", cc.addr, werr)
		}
		cc.fail(e)
		return nil, outBroken, e
	}
	cs.endMu.Lock() // the read loop may have ended the stream already
	if !cs.ended {
		cs.stop = context.AfterFunc(ctx, func() { cs.ctxDone(ctx) })
	}
	cs.endMu.Unlock()
	return cs, outReply, nil
}

// streamTimeout is the timeout an open frame carries: what is left of
// ctx's deadline, at least 1ns, or 0 for none.
func streamTimeout(ctx context.Context) (d time.Duration) {
	if dl, ok := ctx.Deadline(); ok {
		d = max(time.Until(dl), 1)
	}
	return d
}

// ctxDone ends the stream because the caller's context ended: a reset
// tells the server.
func (cs *clientStream) ctxDone(ctx context.Context) {
	e := ctxError(ctx, "stream "+cs.method)
	if cs.finish(e, nil, false, true) {
		cs.writeReset(e.Code)
	}
}

func (cs *clientStream) writeReset(c Code) {
	var b [headerSize + 8]byte
	f := appendReset(appendHeader(b[:0], frameReset, cs.id, 0), c)
	setBodyLen(f)
	cs.cc.w.writeNoWait(f)
}

// abort ends the stream with a stream error found on this side: logged,
// and a reset with its code tells the server.
func (cs *clientStream) abort(e *Error) {
	cs.cc.cl.cfg.logger.Warn("storks: resetting stream: "+e.Message, "remote", cs.cc.addr, "method", cs.method)
	if cs.finish(e, nil, false, true) {
		cs.writeReset(e.Code)
	}
}

// finish ends the stream once: status nil is OK. byPeer says the server
// ended it (end frame), discard that messages not read yet are dropped. It
// reports whether this call ended it.
func (cs *clientStream) finish(status error, trailer Metadata, byPeer, discard bool) bool {
	cs.endMu.Lock()
	if cs.ended {
		cs.endMu.Unlock()
		return false
	}
	cs.ended, cs.byPeer, cs.status, cs.trailer = true, byPeer, status, trailer
	stop := cs.stop
	cs.endMu.Unlock()
	if cs.as != nil {
		cs.as.end(status)
	}
	recvErr := status
	if recvErr == nil {
		recvErr = io.EOF
	}
	cs.endRecv(recvErr, discard)
	if byPeer {
		cs.send.close(io.EOF)
	} else {
		cs.send.close(status)
	}
	cs.headerOnce.Do(func() { close(cs.headerDone) })
	cs.cc.removeStream(cs.id)
	if stop != nil {
		stop()
	}
	cs.cancel()
	return true
}

// Header implements ClientStream.
func (cs *clientStream) Header() (Metadata, error) {
	<-cs.headerDone
	if cs.header != nil {
		return cs.header, nil
	}
	cs.endMu.Lock()
	defer cs.endMu.Unlock()
	if cs.ended && cs.status != nil {
		return nil, cs.status
	}
	return Metadata{}, nil
}

// Trailer implements ClientStream.
func (cs *clientStream) Trailer() Metadata {
	cs.endMu.Lock()
	defer cs.endMu.Unlock()
	return cs.trailer
}

// Context implements ClientStream.
func (cs *clientStream) Context() context.Context { return cs.ctx }

// CloseSend implements ClientStream.
func (cs *clientStream) CloseSend() error {
	if cs.sendClosed {
		return nil
	}
	cs.sendClosed = true
	cs.endMu.Lock()
	ended := cs.ended
	cs.endMu.Unlock()
	if ended {
		return nil
	}
	var b [headerSize]byte
	cs.cc.w.write(appendHeader(b[:0], frameHalfClose, cs.id, 0))
	return nil
}

// SendMsg implements ClientStream.
func (cs *clientStream) SendMsg(m any) error {
	if cs.sendClosed {
		return Errorf(CodeInternal, "stream %s: SendMsg after CloseSend", cs.method)
	}
	fatal, err := cs.sendMsg(cs.ctx, m)
	if err == nil || !fatal {
		return err
	}
	cs.endMu.Lock()
	ended, byPeer, status := cs.ended, cs.byPeer, cs.status
	cs.endMu.Unlock()
	switch {
	case ended && byPeer:
		return io.EOF // RecvMsg returns the status
	case ended:
		return status
	}
	// The connection broke under the write; the read loop fails the
	// stream with the connection's error.
	e := wrapError(CodeUnavailable, ErrConnClosed, "stream %s: connection to %s broke: %v", cs.method, cs.cc.addr, err)
	cs.finish(e, nil, false, false)
	return e
}

// RecvMsg implements ClientStream.
func (cs *clientStream) RecvMsg(m any) error {
	err := cs.recvMsg(m, nil, nil)
	if err == nil || err == io.EOF {
		return err
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	// A message this side cannot decode: a stream error.
	e := Errorf(CodeInternal, "stream %s: %v", cs.method, err)
	cs.abort(e)
	return e
}

// streamFrame handles a stream frame from the server, on a version 2
// connection. It returns false if the connection was closed.
func (cc *clientConn) streamFrame(fh frameHeader, body *[]byte) bool {
	var (
		err   error
		md    Metadata
		chunk []byte
		eom   bool
		end   streamEnd
		code  Code
		incr  int
	)
	switch fh.typ {
	case frameHeaders:
		md, err = parseHeaders(*body)
	case frameData:
		chunk, eom, err = parseData(*body, defaultMaxChunk)
	case frameEnd:
		end, err = parseEnd(*body)
	case frameReset:
		code, err = parseReset(*body)
	case frameWindowUpdate:
		incr, err = parseWindowUpdate(*body)
	default: // open, half-close: client to server only
		err = &FrameError{Reason: fh.typ.String() + " frame from the server (only clients send it)"}
	}
	if err != nil {
		putBuf(body)
		cc.protocolError(strings.TrimPrefix(err.Error(), "storks protocol: "))
		return false
	}
	if fh.id == 0 {
		putBuf(body)
		if fh.typ != frameWindowUpdate {
			cc.protocolError(fh.typ.String() + " frame with stream ID 0")
			return false
		}
		if err := cc.link.send.add(incr); err != nil {
			cc.protocolError(err.(*FrameError).Reason)
			return false
		}
		return true
	}
	n := len(*body)
	if fh.typ == frameData {
		if err := cc.link.recv.consume(n); err != nil {
			putBuf(body)
			cc.protocolError("connection window: " + err.(*FrameError).Reason)
			return false
		}
	}
	cc.mu.Lock()
	cs := cc.streams[fh.id]
	cc.mu.Unlock()
	if cs == nil {
		putBuf(body)
		if fh.id > cc.lastOpen.Load() {
			cc.protocolError(fh.typ.String() + " frame for unknown stream " + strconv.FormatUint(fh.id, 10))
			return false
		}
		if fh.typ == frameData {
			cc.link.releaseConn(n) // a closed stream: the credit comes back at once
		}
		return true
	}
	switch fh.typ {
	case frameHeaders:
		putBuf(body)
		if cs.gotHeader || cs.gotData {
			cs.abort(Errorf(CodeInternal, "stream %s: the server sent headers after %s", cs.method, map[bool]string{true: "headers", false: "data"}[cs.gotHeader]))
			return true
		}
		cs.gotHeader = true
		if md == nil {
			md = Metadata{}
		}
		cs.header = md
		cs.headerOnce.Do(func() { close(cs.headerDone) })
	case frameData:
		if err := cs.recv.consume(n); err != nil {
			putBuf(body)
			cc.protocolError("stream window: " + err.(*FrameError).Reason)
			return false
		}
		if !cs.gotData && !cs.gotHeader {
			// Data without headers: the header is empty.
			cs.headerOnce.Do(func() {
				cs.header = Metadata{}
				close(cs.headerDone)
			})
		}
		cs.gotData = true
		if e := cs.onData(body, chunk, eom, n); e != nil {
			cs.abort(e)
		}
		cc.link.releaseConn(n)
	case frameEnd:
		putBuf(body)
		var status error
		if end.code != CodeOK {
			e := &Error{Code: end.code, Message: end.message}
			switch e.Code {
			case CodeDeadlineExceeded:
				e.cause = context.DeadlineExceeded
			case CodeCanceled:
				e.cause = context.Canceled
			}
			status = e
		}
		cs.finish(status, end.trailers, true, false)
	case frameReset:
		putBuf(body)
		cs.finish(Errorf(code, "stream %s was reset by the provider (%s)", cs.method, code), nil, true, true)
	case frameWindowUpdate:
		putBuf(body)
		if err := cs.send.add(incr); err != nil {
			cc.protocolError("stream window: " + err.(*FrameError).Reason)
			return false
		}
	}
	return true
}

// removeStream forgets a stream that ended and frees its slot.
func (cc *clientConn) removeStream(id uint64) {
	cc.mu.Lock()
	delete(cc.streams, id)
	cc.mu.Unlock()
	<-cc.slots
	cc.maybeClose()
}

// failure is why the connection broke.
func (cc *clientConn) failure() *Error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil {
		return cc.err
	}
	return wrapError(CodeUnavailable, ErrConnClosed, "connection to %s closed", cc.addr)
}
