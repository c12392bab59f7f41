package runtime

import (
	"context"
	"io"
	"sync"
)

// In-process streams: a stream opened through a reference whose service is
// exported in this process (see local.go for the rules of in-process
// calls). The handler runs on its own goroutine through the server's
// stream interceptors, and the two sides exchange messages through two
// bounded pipes. Each message is encoded with the client's codec when sent
// and decoded into the receiver's message, so the sides share nothing and
// a sender may reuse its message at once. A pipe holds at most
// localStreamQueue messages: a receiver that stops reading stops its
// sender, as flow control does on the network.

// localStreamQueue is how many messages a pipe holds.
const localStreamQueue = 16

// msgPipe carries encoded messages one way.
type msgPipe struct {
	mu    sync.Mutex
	q     [][]byte
	err   error // set by close: the reader gets it after the queued messages
	abort error // set by fail: both sides get it at once
	rd    chan struct{}
	wr    chan struct{}
}

func newPipe() *msgPipe {
	return &msgPipe{rd: make(chan struct{}, 1), wr: make(chan struct{}, 1)}
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// send queues b, waiting for room until done is closed; then it returns
// nil and false.
func (p *msgPipe) send(b []byte, done <-chan struct{}) (ok bool, err error) {
	for {
		p.mu.Lock()
		switch {
		case p.abort != nil:
			err := p.abort
			p.mu.Unlock()
			return true, err
		case p.err != nil:
			p.mu.Unlock()
			return true, io.EOF
		case len(p.q) < localStreamQueue:
			p.q = append(p.q, b)
			p.mu.Unlock()
			notify(p.rd)
			return true, nil
		}
		p.mu.Unlock()
		select {
		case <-p.wr:
		case <-done:
			return false, nil
		}
	}
}

// recv takes the next message, waiting until done is closed; then it
// returns false.
func (p *msgPipe) recv(done <-chan struct{}) (b []byte, ok bool, err error) {
	for {
		p.mu.Lock()
		switch {
		case p.abort != nil:
			err := p.abort
			p.mu.Unlock()
			return nil, true, err
		case len(p.q) > 0:
			b := p.q[0]
			p.q[0] = nil
			p.q = p.q[1:]
			more := len(p.q) > 0 || p.err != nil
			p.mu.Unlock()
			notify(p.wr)
			if more {
				notify(p.rd)
			}
			return b, true, nil
		case p.err != nil:
			err := p.err
			p.mu.Unlock()
			return nil, true, err
		}
		p.mu.Unlock()
		select {
		case <-p.rd:
		case <-done:
			return nil, false, nil
		}
	}
}

// close ends the pipe after what is queued: the reader then gets err.
func (p *msgPipe) close(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	notify(p.rd)
}

// fail ends the pipe at once for both sides.
func (p *msgPipe) fail(err error) {
	p.mu.Lock()
	if p.abort == nil {
		p.abort = err
		p.q = nil
	}
	p.mu.Unlock()
	notify(p.rd)
	notify(p.wr)
}

// localClientStream is the client side of an in-process stream.
type localClientStream struct {
	codec  Codec
	method string
	ctx    context.Context
	cancel context.CancelFunc
	up     *msgPipe // client to handler
	down   *msgPipe // handler to client

	headerOnce sync.Once
	headerDone chan struct{}
	header     Metadata

	mu      sync.Mutex
	trailer Metadata
	status  error // set when the handler returned; nil for OK
	ended   bool

	sendClosed bool
}

// localServerStream is the handler's side of an in-process stream.
type localServerStream struct {
	s   *Server
	cs  *localClientStream
	ctx context.Context
	sm  *streamMethod

	serverMeta
}

// openLocal opens a stream to the handler of this in-process export.
func (e *export) openLocal(ctx context.Context, r *Reference, desc *StreamDesc, method, short string) (ClientStream, error) {
	sm := e.streams[short]
	if sm == nil {
		if e.methods[short] != nil {
			return nil, Errorf(CodeUnimplemented, "method %s of service %s is unary: call it, do not open a stream", short, e.keyStr)
		}
		return nil, Errorf(CodeUnimplemented, "unknown method %s for service %s", short, e.keyStr)
	}
	s := e.server
	cs := &localClientStream{codec: r.cl.cfg.codec, method: method, up: newPipe(), down: newPipe(), headerDone: make(chan struct{})}
	cs.ctx, cs.cancel = context.WithCancel(ctx)
	hctx := cs.ctx
	if md := OutgoingMetadata(ctx); md != nil {
		hctx = newIncomingContext(hctx, md)
	}
	ss := &localServerStream{s: s, cs: cs, ctx: hctx, sm: sm}
	ss.method = sm.info.FullMethod
	stop := context.AfterFunc(cs.ctx, func() {
		// The caller's context ended, or the handler returned: the
		// stream is over for whoever still waits on it.
		e := ctxError(ctx, "stream "+method)
		if ctx.Err() == nil {
			e = Errorf(CodeCanceled, "stream %s has ended", method)
		}
		cs.up.fail(e)
		cs.down.close(e)
	})
	s.openStreams.Add(1)
	s.noteServed()
	s.localStreams.Store(cs, nil)
	go func() {
		defer s.openStreams.Add(-1)
		defer s.localStreams.Delete(cs)
		defer stop()
		err := ss.run()
		ss.hmu.Lock()
		if !ss.headerSent {
			ss.headerSent = true
			ss.publishHeader()
		}
		trailer := ss.trailer
		ss.hmu.Unlock()
		var status error
		if err != nil {
			status = toError(err)
		}
		cs.mu.Lock()
		if cs.ended { // ended by the server's shutdown: keep that status
			status = cs.status
		}
		cs.ended, cs.status, cs.trailer = true, status, trailer
		cs.mu.Unlock()
		if status == nil {
			cs.down.close(io.EOF)
		} else {
			cs.down.close(status)
		}
		cs.up.fail(io.EOF)
		cs.cancel()
	}()
	return cs, nil
}

func (ss *localServerStream) run() error { return ss.s.handleStream(ss.sm, ss) }

// publishHeader makes the header visible to the client. ss.hmu is held.
func (ss *localServerStream) publishHeader() {
	cs := ss.cs
	cs.headerOnce.Do(func() {
		cs.header = ss.header
		if cs.header == nil {
			cs.header = Metadata{}
		}
		close(cs.headerDone)
	})
}

// SendHeader implements ServerStream.
func (ss *localServerStream) SendHeader(md Metadata) error {
	ss.hmu.Lock()
	defer ss.hmu.Unlock()
	if err := ss.markHeaderSent(md); err != nil {
		return err
	}
	ss.publishHeader()
	return nil
}

// Context implements ServerStream.
func (ss *localServerStream) Context() context.Context { return ss.ctx }

// SendMsg implements ServerStream.
func (ss *localServerStream) SendMsg(m any) error {
	ss.hmu.Lock()
	if !ss.headerSent {
		ss.headerSent = true
		ss.publishHeader()
	}
	ss.hmu.Unlock()
	b, err := ss.cs.codec.MarshalAppend(nil, m)
	if err != nil {
		return Errorf(CodeInternal, "stream %s: encode message: %v", ss.sm.info.FullMethod, err)
	}
	if ok, err := ss.cs.down.send(b, ss.ctx.Done()); !ok {
		return ctxError(ss.ctx, "stream "+ss.sm.info.FullMethod)
	} else if err != nil {
		return err
	}
	return nil
}

// RecvMsg implements ServerStream.
func (ss *localServerStream) RecvMsg(m any) error {
	b, ok, err := ss.cs.up.recv(ss.ctx.Done())
	if !ok {
		return ctxError(ss.ctx, "stream "+ss.sm.info.FullMethod)
	}
	if err != nil {
		return err
	}
	if err := ss.cs.codec.Unmarshal(b, m); err != nil {
		return Errorf(CodeInvalidArgument, "stream %s: decode message: %v", ss.sm.info.FullMethod, err)
	}
	return nil
}

// Header implements ClientStream.
func (cs *localClientStream) Header() (Metadata, error) {
	select {
	case <-cs.headerDone:
		return cs.header, nil
	case <-cs.ctx.Done():
	}
	select {
	case <-cs.headerDone:
		return cs.header, nil
	default:
	}
	return nil, ctxError(cs.ctx, "stream "+cs.method)
}

// Trailer implements ClientStream.
func (cs *localClientStream) Trailer() Metadata {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.trailer
}

// Context implements ClientStream.
func (cs *localClientStream) Context() context.Context { return cs.ctx }

// CloseSend implements ClientStream.
func (cs *localClientStream) CloseSend() error {
	cs.sendClosed = true
	cs.up.close(io.EOF)
	return nil
}

// SendMsg implements ClientStream.
func (cs *localClientStream) SendMsg(m any) error {
	if cs.sendClosed {
		return Errorf(CodeInternal, "stream %s: SendMsg after CloseSend", cs.method)
	}
	b, err := cs.codec.MarshalAppend(nil, m)
	if err != nil {
		return Errorf(CodeInternal, "stream %s: encode message: %v", cs.method, err)
	}
	ok, err := cs.up.send(b, cs.ctx.Done())
	if !ok {
		return cs.endErr()
	}
	if err != nil {
		cs.mu.Lock()
		ended := cs.ended
		cs.mu.Unlock()
		if ended || err == io.EOF {
			return io.EOF // RecvMsg returns the status
		}
		return err
	}
	return nil
}

// endErr is the error of a stream whose context ended.
func (cs *localClientStream) endErr() error {
	cs.mu.Lock()
	ended := cs.ended
	cs.mu.Unlock()
	if ended {
		return io.EOF
	}
	return ctxError(cs.ctx, "stream "+cs.method)
}

// RecvMsg implements ClientStream.
func (cs *localClientStream) RecvMsg(m any) error {
	b, _, err := cs.down.recv(nil)
	if err != nil {
		return err
	}
	if err := cs.codec.Unmarshal(b, m); err != nil {
		return Errorf(CodeInternal, "stream %s: decode message: %v", cs.method, err)
	}
	return nil
}

// shutDown ends an in-process stream whose server's Shutdown gave it its
// time: the client gets e, the handler's context ends.
func (cs *localClientStream) shutDown(e *Error) {
	cs.mu.Lock()
	if cs.ended {
		cs.mu.Unlock()
		return
	}
	cs.ended, cs.status = true, e
	cs.mu.Unlock()
	cs.down.fail(e)
	cs.up.fail(e)
	cs.cancel()
}
