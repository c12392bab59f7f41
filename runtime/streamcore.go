package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// The half of a stream both sides share: receiving data frames into whole
// messages under flow control, and sending messages as chunks under the
// peer's credit. clientstream.go and serverstream.go add the states and
// frames of each side.
//
// Receive-side memory (docs/protocol.md, "Flow control"): the next message
// to be read, the head, never holds credit: its bytes are granted again as
// they arrive, which lets a message larger than the window through. Every
// message queued behind it holds its credit until it becomes the head. So
// a receiver that stops reading holds at most one message plus one stream
// window, and its sender stops there.

// smallMessage is the size up to which a message queued behind others is
// copied out of its frame's pooled buffer into one of its own size: a
// peer may send up to one message per byte of credit (an empty message
// costs 1), and each should cost little more than its bytes while it
// waits.
const smallMessage = 256

// streamLink is what the streams of one connection share: the connection's
// writer and flow-control state, and the limits of both peers.
type streamLink struct {
	w          *connWriter
	codec      Codec
	send       sendQuota  // the peer's connection window
	recv       recvWindow // our connection window
	maxChunk   int        // the largest chunk the peer accepts
	maxMessage int        // the largest message we accept
	sendLimit  int        // the largest message we send: our limit and the peer's
}

func (l *streamLink) init(w *connWriter, codec Codec, ours, peer settings, ownMax int) {
	l.w, l.codec = w, codec
	l.send.init(peer.connWindow)
	l.recv.init(ours.connWindow)
	l.maxChunk = peer.maxChunk
	l.maxMessage = ours.maxMessage
	l.sendLimit = min(ownMax, peer.maxMessage)
}

// windowUpdate sends a window update of n for stream id (0: the
// connection), without waiting for room in the write queue.
func (l *streamLink) windowUpdate(id uint64, n int) {
	var b [headerSize + 8]byte
	f := appendWindowUpdate(appendHeader(b[:0], frameWindowUpdate, id, 0), n)
	setBodyLen(f)
	l.w.writeNoWait(f)
}

// releaseConn grants n bytes of the connection window again.
func (l *streamLink) releaseConn(n int) {
	if u := l.recv.release(n); u > 0 {
		l.windowUpdate(0, u)
	}
}

// inMsg is a message received, whole or in part.
type inMsg struct {
	buf  *[]byte // pooled buffer data lies in, or nil
	data []byte
	cost int // credit held until the message is the head
}

// streamCore is the shared half of one stream.
type streamCore struct {
	link *streamLink
	id   uint64
	st   *callStats // nil without a stats handler: stats.go
	send sendQuota
	recv recvWindow

	mu         sync.Mutex
	queue      []inMsg // whole messages not read yet, from qhead
	qhead      int
	partial    inMsg     // the message being assembled, if assembling: its cost
	parts      []*[]byte // the bodies of its chunks so far (chunk = body[1:])
	psize      int       // the bytes of its chunks so far
	assembling bool
	recvErr    error         // once set, no more messages arrive: io.EOF or the stream's error
	wake       chan struct{} // capacity 1: something for the reader
}

func (s *streamCore) initCore(link *streamLink, id uint64, peerWindow, ourWindow int) {
	s.link, s.id = link, id
	s.send.init(peerWindow)
	s.recv.init(ourWindow)
	s.wake = make(chan struct{}, 1)
}

func (s *streamCore) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// onData takes a data frame of the stream: body is its pooled buffer, n its
// body length, whose credit the caller has consumed from the stream and
// the connection. It returns a stream error (*Error), or nil; the body is
// the stream's either way.
func (s *streamCore) onData(body *[]byte, chunk []byte, eom bool, n int) *Error {
	s.mu.Lock()
	if s.recvErr != nil {
		// Ended on this side (a reset sent, a context done): the peer had
		// not seen it yet. Grant the credit again.
		s.mu.Unlock()
		putBuf(body)
		return nil
	}
	size := len(chunk)
	if s.assembling {
		size += s.psize
	}
	if size > s.link.maxMessage {
		s.mu.Unlock()
		putBuf(body)
		return Errorf(CodeResourceExhausted, "received message larger than max (%d vs. %d)", size, s.link.maxMessage)
	}
	head := len(s.queue) == s.qhead
	release := 0
	if !s.assembling && eom {
		m := inMsg{buf: body, data: chunk, cost: n}
		if head {
			release, m.cost = n, 0
		} else if len(chunk) <= smallMessage {
			m.buf, m.data = nil, append([]byte(nil), chunk...)
			putBuf(body)
		}
		s.queue = append(s.queue, m)
	} else {
		// Keep the chunks until the message is whole, then copy them
		// once into a buffer of its exact size.
		s.assembling = true
		p := &s.partial
		if head {
			release = n + p.cost
			p.cost = 0
		} else {
			p.cost += n
		}
		if !eom {
			s.parts = append(s.parts, body)
			s.psize += len(chunk)
		} else {
			buf := getBuf(size)
			b := *buf
			for _, part := range s.parts {
				b = append(b, (*part)[1:]...)
				putBuf(part)
			}
			b = append(b, chunk...)
			putBuf(body)
			*buf = b
			p.buf, p.data = buf, b
			s.queue = append(s.queue, *p)
			s.partial, s.assembling = inMsg{}, false
			clear(s.parts)
			s.parts, s.psize = s.parts[:0], 0
		}
	}
	s.mu.Unlock()
	if eom {
		s.signal()
	}
	s.grant(release)
	return nil
}

// grant gives n bytes of the stream's credit back to the peer.
func (s *streamCore) grant(n int) {
	if n <= 0 {
		return
	}
	if u := s.recv.release(n); u > 0 {
		s.link.windowUpdate(s.id, u)
	}
}

// endRecv records that no more messages arrive: err is io.EOF for a clean
// end (half-close, or status OK), else the stream's error. With discard,
// the messages not read yet are dropped (a reset, a context done): the
// reader gets err at once. The first call sets the error.
func (s *streamCore) endRecv(err error, discard bool) {
	s.mu.Lock()
	if s.recvErr == nil {
		s.recvErr = err
	} else if !discard {
		s.mu.Unlock()
		return
	}
	if discard {
		if s.recvErr == io.EOF {
			s.recvErr = err
		}
		for i := s.qhead; i < len(s.queue); i++ {
			putBuf(s.queue[i].buf)
		}
		s.queue, s.qhead = nil, 0
		if s.assembling {
			for _, part := range s.parts {
				putBuf(part)
			}
			s.partial, s.assembling, s.parts, s.psize = inMsg{}, false, nil, 0
		}
	}
	s.mu.Unlock()
	s.signal()
}

// recvMsg decodes the next message into m, waiting for it until done is
// closed (then it returns doneErr()).
func (s *streamCore) recvMsg(m any, done <-chan struct{}, doneErr func() error) error {
	for {
		s.mu.Lock()
		if s.qhead < len(s.queue) {
			msg := s.queue[s.qhead]
			s.queue[s.qhead] = inMsg{}
			s.qhead++
			release := msg.cost
			if s.qhead == len(s.queue) {
				s.queue, s.qhead = s.queue[:0], 0
				if s.assembling {
					release += s.partial.cost
					s.partial.cost = 0
				}
			} else {
				release += s.queue[s.qhead].cost
				s.queue[s.qhead].cost = 0
			}
			more := s.qhead < len(s.queue) || s.recvErr != nil
			s.mu.Unlock()
			if more {
				s.signal()
			}
			s.grant(release)
			if s.st != nil {
				s.st.payload(true, len(msg.data))
			}
			err := s.link.codec.Unmarshal(msg.data, m)
			putBuf(msg.buf)
			if err != nil {
				return fmt.Errorf("decode message: %w", err)
			}
			return nil
		}
		if err := s.recvErr; err != nil {
			s.mu.Unlock()
			return err
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-done:
			return doneErr()
		}
	}
}

// sendMsg encodes m and sends it as data frames, under the stream's and
// the connection's credit, waiting for credit until ctx ends. It returns
// an encoding or size error (the stream goes on), the error the stream's
// quota was closed with, or the connection's write error.
func (s *streamCore) sendMsg(ctx context.Context, m any) (fatal bool, err error) {
	l := s.link
	buf := getBuf(headerSize + 1 + 512)
	b := append(*buf, make([]byte, headerSize+1)...)
	buf, b, err = appendMessage(l.codec, buf, b, m)
	defer func() { *buf = b[:0]; putBuf(buf) }()
	if err != nil {
		return false, Errorf(CodeInternal, "encode message: %v", err)
	}
	payload := b[headerSize+1:]
	if len(payload) > l.sendLimit {
		return false, &Error{Code: CodeResourceExhausted, Message: fmt.Sprintf("message larger than max (%d vs. %d)", len(payload), l.sendLimit), cause: ErrMessageTooLarge}
	}
	if s.st != nil {
		s.st.payload(false, len(payload))
	}
	off := 0
	for {
		rem := len(payload) - off
		got, err := acquireData(ctx, &s.send, &l.send, min(rem, l.maxChunk)+1)
		if err != nil {
			return true, err
		}
		n := got - 1
		eom := n == rem
		if off == 0 && eom {
			// The whole message in one frame: write it where it was
			// encoded.
			appendHeader(b[:0], frameData, s.id, 0)
			b[headerSize] = dataEndOfMessage
			setBodyLen(b)
			if werr := l.w.writeAsync(b); werr != nil {
				return true, werr
			}
			return false, nil
		}
		var hb [headerSize + 1]byte
		h := appendHeader(hb[:0], frameData, s.id, got)
		h = append(h, 0)
		if eom {
			h[headerSize] = dataEndOfMessage
		}
		if werr := l.w.writeAsync2(h, payload[off:off+n]); werr != nil {
			return true, werr
		}
		off += n
		if eom {
			return false, nil
		}
	}
}
