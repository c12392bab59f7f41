package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A client's connection to one provider. The requests of many calls are
// multiplexed on it and matched to their replies by request ID (exchange,
// read). A broken connection fails every pending call (fail); a draining
// one (goaway, or its endpoint released) takes no new call and closes once
// its last reply is in. The frame format is described in docs/protocol.md.

// clientConn is one multiplexed connection to a provider.
type clientConn struct {
	cl     *Client
	addr   string
	c      net.Conn
	w      connWriter
	nextID atomic.Uint64

	draining atomic.Bool // no new calls; closed when the last reply arrives
	broken   atomic.Bool

	// The settings exchange (docs/protocol.md, "Settings exchange").
	// probing: our settings were sent first. version: 0 until the server's
	// first frame settles it, then 1 or 2. peer: the server's settings, on a
	// version 2 connection, for the stream work.
	probing bool
	version atomic.Int32
	peer    atomic.Pointer[settings]

	// Streams (clientstream.go). settled is closed once the version is
	// known (or the connection broke); done when it broke. link, and
	// slots (a semaphore of the server's max concurrent streams), are set
	// before settled closes on a version 2 connection. openMu orders the
	// IDs of open frames with their place in the write queue; lastOpen is
	// the largest stream ID opened.
	settled     chan struct{}
	settledOnce sync.Once
	done        chan struct{}
	doneOnce    sync.Once
	link        streamLink
	slots       chan struct{}
	openMu      sync.Mutex
	lastOpen    atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*call
	streams map[uint64]*clientStream
	err     *Error // why the connection broke
}

// settle marks the connection's version as known.
func (cc *clientConn) settle() { cc.settledOnce.Do(func() { close(cc.settled) }) }

func (cc *clientConn) usable() bool { return !cc.draining.Load() && !cc.broken.Load() }

type call struct {
	done chan struct{} // buffered; one signal per use
	typ  frameType
	body *[]byte
	err  *Error
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// invoke makes one call on the connection and decodes its response into
// reply. The outcome says whether the
// call provably did not run (it was never sent, or the server answered that
// the handler never ran), so that it may be sent to another instance, and
// whether the failure is a fault of the provider (see outcome).
func (cc *clientConn) invoke(ctx context.Context, key, method, short string, req, reply any) (o outcome, err error) {
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return outLocal, ctxError(ctx, "call "+method)
		}
	} else if err := ctx.Err(); err != nil {
		return outLocal, ctxError(ctx, "call "+method)
	}
	codec := cc.cl.cfg.codec
	id := cc.nextID.Add(1)
	buf := getBuf(headerSize + 1024)
	b := appendHeader(*buf, frameRequest, id, 0)
	b = appendRequestHeader(b, key, short, timeout, OutgoingMetadata(ctx))
	hdrEnd := len(b)
	buf, b, err = appendMessage(codec, buf, b, req)
	if err != nil {
		*buf = b
		putBuf(buf)
		return outLocal, Errorf(CodeInternal, "encode request of %s: %v", method, err)
	}
	if n, limit := len(b)-headerSize, cc.cl.cfg.maxMessageSize; n > limit {
		*buf = b
		putBuf(buf)
		return outLocal, &Error{Code: CodeResourceExhausted, Message: "call " + method + ": " + (&TooLargeError{Size: n, Limit: limit}).Error(), cause: ErrMessageTooLarge}
	}
	setBodyLen(b)
	stats := cc.cl.cfg.stats != nil
	if stats {
		clientPayload(ctx, false, len(b)-hdrEnd) // stats.go
	}

	typ, body, cerr, ex := cc.exchange(ctx, id, b, buf, true)
	switch ex {
	case exNotSent:
		return outNotRun, cerr
	case exCtxDone:
		return ctxOutcome(ctx), ctxError(ctx, "call "+method)
	}
	if cerr != nil {
		switch {
		case errors.Is(cerr, ErrConnClosed):
			o = outBroken
		case errors.Is(cerr, ErrServerClosed):
			o = outClosing
		case errors.Is(cerr, ErrClientClosed):
			o = outLocal
		case errors.Is(cerr, errV1Server):
			o = outNotRun
		}
		return o, cerr
	}
	defer putBuf(body)
	switch typ {
	case frameResponse:
		if stats {
			clientPayload(ctx, true, len(*body))
		}
		if err := codec.Unmarshal(*body, reply); err != nil {
			return outReply, Errorf(CodeInternal, "decode response of %s from %s: %v", method, cc.addr, err)
		}
		return outReply, nil
	default:
		e, flags, err := parseErrorBody(*body)
		if err != nil {
			return outReply, Errorf(CodeInternal, "bad error frame for %s from %s: %v", method, cc.addr, err)
		}
		switch {
		case flags&errNotExecuted != 0 && (e.Code == CodeUnavailable || e.Code == CodeUnimplemented):
			o = outNotRun
		case e.Code == CodeDeadlineExceeded:
			o = outTimeout
		}
		return o, e
	}
}

// ctxOutcome is the outcome of a call abandoned because ctx is done: a
// timeout (a fault of the provider it waited for) or a cancellation.
func ctxOutcome(ctx context.Context) outcome {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return outTimeout
	}
	return outLocal
}

// exchangeResult says how an exchange ended.
type exchangeResult uint8

const (
	exAnswered exchangeResult = iota // an answer, or the connection broke after the frame was written
	exNotSent                        // the connection takes no new frame; nothing was written
	exCtxDone                        // ctx ended first; the answer, if any, is dropped
)

// exchange writes frame, whose request ID is id, and waits for the frame
// that answers it. buf, if not nil, is the pooled buffer frame lies in: it
// goes back to the pool once written, so a waiting call holds none. When
// ctx is cancelled (not when its deadline passes: the server's own timer
// handles that) and cancel is set, a cancel frame tells the server.
//
// It returns the answer's type and body, which the caller returns with
// putBuf; or the error that broke the connection; or, with exNotSent, why
// the connection took no new frame: a draining connection may have found
// itself idle and be closing (maybeClose), and a frame registered now
// would fail although it may have been sent.
func (cc *clientConn) exchange(ctx context.Context, id uint64, frame []byte, buf *[]byte, cancel bool) (typ frameType, body *[]byte, cerr *Error, ex exchangeResult) {
	release := func() {
		if buf != nil {
			*buf = frame
			putBuf(buf)
		}
	}
	cl := callPool.Get().(*call)
	cc.mu.Lock()
	if cc.err != nil || cc.draining.Load() {
		e := cc.err
		if e == nil {
			e = wrapError(CodeUnavailable, ErrConnClosed, "connection to %s is closing", cc.addr)
		}
		cc.mu.Unlock()
		callPool.Put(cl)
		release()
		return 0, nil, e, exNotSent
	}
	cc.pending[id] = cl
	cc.mu.Unlock()

	werr := cc.w.write(frame)
	release()
	// While the settings exchange is open, the read loop tells a broken
	// connection from a version 1 server's goaway (which may have closed
	// the connection under this write), so it alone fails the calls.
	if werr != nil && cc.version.Load() != 0 {
		cc.fail(wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %v", cc.addr, werr))
	}

	select {
	case <-cl.done:
	case <-ctx.Done():
		cc.mu.Lock()
		if cc.pending[id] == cl {
			delete(cc.pending, id)
			cc.mu.Unlock()
			callPool.Put(cl)
			if cancel && errors.Is(ctx.Err(), context.Canceled) {
				var fb [headerSize]byte
				cc.w.write(appendHeader(fb[:0], frameCancel, id, 0))
			}
			cc.maybeClose()
			return 0, nil, nil, exCtxDone
		}
		cc.mu.Unlock()
		<-cl.done // the answer is being delivered; take it and drop it
		putBuf(cl.body)
		cl.body, cl.err = nil, nil
		callPool.Put(cl)
		return 0, nil, nil, exCtxDone
	}
	typ, body, cerr = cl.typ, cl.body, cl.err
	cl.body, cl.err = nil, nil
	callPool.Put(cl)
	return typ, body, cerr, exAnswered
}

// read delivers replies until the connection breaks.
func (cc *clientConn) read() {
	defer cc.cl.bg.Done()
	r := bufio.NewReaderSize(cc.c, 32<<10)
	limit := cc.cl.cfg.maxMessageSize
	maxType, first := acceptV1, cc.probing
	if first {
		maxType = acceptFirst
	}
	for {
		fh, body, err := readFrame(r, limit, maxType)
		if err != nil {
			var tl *TooLargeError
			if errors.As(err, &tl) && (fh.typ == frameResponse || fh.typ == frameError) {
				// The reply is too large for us: skip it and fail that call.
				if _, derr := io.CopyN(io.Discard, r, int64(tl.Size)); derr == nil {
					cc.deliverErr(fh.id, Errorf(CodeResourceExhausted, "received message larger than max (%d vs. %d)", tl.Size, tl.Limit))
					continue
				}
			}
			cc.fail(cc.readError(err))
			return
		}
		if first {
			first, maxType = false, acceptV1
			if fh.typ == frameSettings || fh.typ == frameGoAway {
				if !cc.firstFrame(fh, body) {
					return
				}
				maxType = acceptV2
				continue
			}
			// Any other frame first comes from a server that does not
			// speak version 2 but went on reading after our settings: an
			// error frame from a TLS server to a plaintext client, or a
			// peer that skips unknown frames. The connection is version 1.
			cc.version.Store(1)
			cc.settle()
		}
		switch fh.typ {
		case frameResponse, frameError, framePong:
			cc.mu.Lock()
			cl := cc.pending[fh.id]
			delete(cc.pending, fh.id)
			cc.mu.Unlock()
			if cl == nil {
				putBuf(body) // the caller gave up
			} else {
				cl.typ, cl.body = fh.typ, body
				cl.done <- struct{}{}
			}
			cc.maybeClose()
		case frameGoAway:
			putBuf(body)
			cc.draining.Store(true)
			cc.maybeClose()
		case frameSettings: // only on a version 2 connection, which had its settings
			putBuf(body)
			cc.protocolError("a second settings frame from the server")
			return
		case frameOpen, frameHeaders, frameData, frameHalfClose, frameEnd, frameReset, frameWindowUpdate:
			// Only on a version 2 connection: readFrame refuses them on
			// version 1.
			if !cc.streamFrame(fh, body) {
				return
			}
		default:
			if fh.typ >= firstUnknownV2 {
				continue // only on a version 2 connection; readFrame skipped the body
			}
			putBuf(body)
			reason := "unexpected " + fh.typ.String() + " frame from server"
			cc.cl.cfg.logger.Warn("storks: closing connection: "+reason, "remote", cc.addr)
			cc.fail(Errorf(CodeInternal, "connection to %s: %s", cc.addr, reason))
			return
		}
	}
}

// errV1Server fails the calls sent on a connection whose server answered
// our settings with goaway: it speaks version 1 and executed none of them,
// so they are sent again on a new connection (Reference.attempt).
var errV1Server = errors.New("the provider speaks protocol version 1")

// firstFrame handles the server's first frame on a connection that began
// with our settings: settings or goaway. It returns body to the pool, and
// false if the read loop must end.
func (cc *clientConn) firstFrame(fh frameHeader, body *[]byte) bool {
	defer putBuf(body)
	if fh.typ == frameGoAway {
		// A version 2 server sends its settings before anything: this one
		// speaks version 1, found our settings an unknown frame type and
		// read nothing after them (docs/protocol.md, "Compatibility").
		cc.version.Store(1)
		cc.cl.speaksV1(cc.addr)
		cc.settle()
		cc.fail(wrapError(CodeUnavailable, errV1Server, "provider %s speaks protocol version 1: sending the calls again without settings", cc.addr))
		return false
	}
	if fh.id != 0 {
		cc.protocolError(fmt.Sprintf("settings frame with ID %d (want 0)", fh.id))
		return false
	}
	peer, err := parseSettings(*body)
	if err != nil {
		cc.protocolError(err.Error())
		return false
	}
	cc.peer.Store(&peer)
	cc.link.init(&cc.w, cc.cl.cfg.codec, cc.cl.ourSettings(), peer, cc.cl.cfg.maxMessageSize)
	cc.slots = make(chan struct{}, peer.maxStreams)
	cc.version.Store(2)
	cc.settle()
	return true
}

// protocolError is a connection error found by the read loop: logged with
// its reason, and every call on the connection fails.
func (cc *clientConn) protocolError(reason string) {
	cc.cl.cfg.logger.Warn("storks: closing connection: "+reason, "remote", cc.addr)
	cc.fail(wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %s", cc.addr, reason))
}

func (cc *clientConn) readError(err error) *Error {
	var fe *FrameError
	if errors.As(err, &fe) {
		cc.cl.cfg.logger.Warn("storks: closing connection: "+fe.Reason, "remote", cc.addr)
	} else if errors.Is(err, io.ErrUnexpectedEOF) {
		cc.cl.cfg.logger.Warn("storks: closing connection: truncated frame", "remote", cc.addr)
	}
	if cc.draining.Load() {
		return wrapError(CodeUnavailable, ErrServerClosed, "provider %s is shutting down", cc.addr)
	}
	return wrapError(CodeUnavailable, ErrConnClosed, "connection to %s broke: %v", cc.addr, err)
}

func (cc *clientConn) deliverErr(id uint64, e *Error) {
	cc.mu.Lock()
	cl := cc.pending[id]
	delete(cc.pending, id)
	cc.mu.Unlock()
	if cl != nil {
		cl.err = e
		cl.done <- struct{}{}
	}
}

// fail breaks the connection: every pending call gets e.
func (cc *clientConn) fail(e *Error) {
	cc.broken.Store(true)
	cc.cl.untrackConn(cc)
	cc.w.fail(e)
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = e
	}
	pending := cc.pending
	cc.pending = make(map[uint64]*call)
	streams := cc.streams
	cc.streams = make(map[uint64]*clientStream)
	cc.mu.Unlock()
	cc.c.Close()
	cc.doneOnce.Do(func() {
		cc.settle()
		close(cc.done)
		if cc.version.Load() == 2 {
			cc.link.send.close(e)
		}
	})
	for _, cl := range pending {
		cl.err = e
		cl.done <- struct{}{}
	}
	for _, cs := range streams {
		cs.finish(e, nil, false, false)
	}
}

func (cc *clientConn) close(e *Error) { cc.fail(e) }

// drain stops new calls on the connection and closes it once idle.
func (cc *clientConn) drain() {
	cc.draining.Store(true)
	cc.maybeClose()
}

func (cc *clientConn) maybeClose() {
	if !cc.draining.Load() {
		return
	}
	cc.mu.Lock()
	idle := len(cc.pending) == 0 && len(cc.streams) == 0 && cc.err == nil
	cc.mu.Unlock()
	if idle {
		cc.fail(wrapError(CodeUnavailable, ErrConnClosed, "connection to %s closed after draining", cc.addr))
	}
}
