// Package reference is the plain-Go TCP rows of the benchmark: what the
// loopback and the Go runtime allow at all, with no RPC framework, no
// serialization (the request and reply are the protobuf encodings of the
// payload, sent as raw bytes; their marshal cost is excluded) and no
// per-call allocation.
//
// Every row uses the same server and frame: a 12-byte header (8-byte
// request ID, 4-byte body length, big endian) and the body. The server
// reads frames with one 64 KiB buffered reader per connection, answers each
// inline on its reader goroutine (the handler is a table lookup of the reply
// bytes by request size) into an output buffer, and writes that buffer when
// its read buffer is empty: one write answers everything one read brought.
// That is an upper bound, not a design a framework can copy whole: a real
// server must not run handlers on its reader.
//
// The clients:
//
//   - PingPong: one connection per caller; write the request, read the reply.
//   - Mux: one connection for all callers; a caller queues its frame and
//     waits on its own slot; one writer goroutine writes everything queued
//     in one write and repeats until the queue is empty; one reader
//     goroutine reads replies and hands each to its caller by request ID.
//     The minimal correct multiplexed client.
//   - Pipelined: one connection; requests are written back to back, up to
//     depth in flight, flushed only when no more may be sent; replies are
//     read in order.
package reference

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// HeaderSize is the size of the frame header.
const HeaderSize = 12

// AppendFrame appends a frame with id and body to b.
func AppendFrame(b []byte, id uint64, body []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// MaxBody bounds the body length a reader accepts.
const MaxBody = 64 << 20

// maxBatch is the most the server queues before writing even though more
// requests are already read: it bounds its buffer and the latency a flood
// of pipelined requests would otherwise add.
const maxBatch = 256 << 10

func parseHeader(h []byte) (uint64, int, error) {
	id := binary.BigEndian.Uint64(h[:8])
	n := binary.BigEndian.Uint32(h[8:12])
	if n > MaxBody {
		return 0, 0, fmt.Errorf("reference: frame of %d bytes", n)
	}
	return id, int(n), nil
}

// Server answers frames: the reply to a request of n bytes is the body set
// with SetReply(n, ...).
type Server struct {
	ln      net.Listener
	replies atomic.Pointer[map[int][]byte]
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// NewServer serves on ln until Close.
func NewServer(ln net.Listener) *Server {
	s := &Server{ln: ln, conns: make(map[net.Conn]struct{})}
	m := map[int][]byte{}
	s.replies.Store(&m)
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the server's address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SetReply makes body the reply to every request of reqLen bytes.
func (s *Server) SetReply(reqLen int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.replies.Load()
	m := make(map[int][]byte, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[reqLen] = body
	s.replies.Store(&m)
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *Server) serve(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	r := bufio.NewReaderSize(c, 64<<10)
	var hdr [HeaderSize]byte
	body := make([]byte, 0, 64<<10)
	out := make([]byte, 0, 64<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		id, n, err := parseHeader(hdr[:])
		if err != nil {
			return
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		if _, err := io.ReadFull(r, body[:n]); err != nil {
			return
		}
		reply, ok := (*s.replies.Load())[n]
		if !ok {
			return // unknown request: drop the connection, the caller fails
		}
		out = AppendFrame(out, id, reply)
		if r.Buffered() == 0 || len(out) >= maxBatch {
			if _, err := c.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
	}
}

// Close stops the server and closes every connection.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("reference: connection closed")

func dial(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetNoDelay(true)
	return c, nil
}

// PingPong is one caller's own connection.
type PingPong struct {
	c     net.Conn
	r     *bufio.Reader
	frame []byte
	resp  []byte
	hdr   [HeaderSize]byte
}

// DialPingPong connects one ping-pong caller that sends req and expects
// replies of about replyLen bytes (its buffer is allocated now, not during
// the first call).
func DialPingPong(addr string, req []byte, replyLen int) (*PingPong, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &PingPong{c: c, r: bufio.NewReaderSize(c, 64<<10), frame: AppendFrame(nil, 1, req), resp: make([]byte, replyLen)}, nil
}

// Call sends the request and returns the reply body, valid until the next
// call.
func (p *PingPong) Call() ([]byte, error) {
	if _, err := p.c.Write(p.frame); err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
		return nil, err
	}
	_, n, err := parseHeader(p.hdr[:])
	if err != nil {
		return nil, err
	}
	if cap(p.resp) < n {
		p.resp = make([]byte, n)
	}
	if _, err := io.ReadFull(p.r, p.resp[:n]); err != nil {
		return nil, err
	}
	return p.resp[:n], nil
}

// Close closes the connection.
func (p *PingPong) Close() error { return p.c.Close() }

// Mux is one connection shared by many callers.
type Mux struct {
	c    net.Conn
	wake chan struct{}

	mu     sync.Mutex
	queue  []byte
	spare  []byte
	err    error
	nextID uint64
	slots  atomic.Pointer[map[uint64]*Slot]

	done chan struct{}
}

// Slot is one caller of a Mux.
type Slot struct {
	m     *Mux
	id    uint64
	frame []byte
	resp  []byte
	n     int
	err   error
	ready chan struct{}
}

// DialMux connects a multiplexed client.
func DialMux(addr string) (*Mux, error) {
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	m := &Mux{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	empty := map[uint64]*Slot{}
	m.slots.Store(&empty)
	go m.write()
	go m.read()
	return m, nil
}

// NewSlot registers a caller that sends req and expects replies of about
// replyLen bytes.
func (m *Mux) NewSlot(req []byte, replyLen int) *Slot {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	s := &Slot{m: m, id: m.nextID, ready: make(chan struct{}, 1), resp: make([]byte, replyLen)}
	s.frame = AppendFrame(nil, s.id, req)
	old := *m.slots.Load()
	nm := make(map[uint64]*Slot, len(old)+1)
	for k, v := range old {
		nm[k] = v
	}
	nm[s.id] = s
	m.slots.Store(&nm)
	return s
}

// Release unregisters the caller.
func (s *Slot) Release() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.slots.Load()
	nm := make(map[uint64]*Slot, len(old))
	for k, v := range old {
		if k != s.id {
			nm[k] = v
		}
	}
	m.slots.Store(&nm)
}

// Call queues the caller's request and waits for its reply, returned as a
// body valid until the next call.
func (s *Slot) Call() ([]byte, error) {
	m := s.m
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return nil, err
	}
	m.queue = append(m.queue, s.frame...)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	select {
	case <-s.ready:
	case <-m.done:
		return nil, ErrClosed
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.resp[:s.n], nil
}

func (m *Mux) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
		close(m.done)
	}
	m.mu.Unlock()
	m.c.Close()
}

// write is the writer goroutine: it writes everything queued, in one write,
// until the queue is empty, then waits to be woken.
func (m *Mux) write() {
	for {
		select {
		case <-m.wake:
		case <-m.done:
			return
		}
		for {
			m.mu.Lock()
			if len(m.queue) == 0 {
				m.mu.Unlock()
				break
			}
			b := m.queue
			m.queue = m.spare[:0]
			m.mu.Unlock()
			if _, err := m.c.Write(b); err != nil {
				m.fail(err)
				return
			}
			m.spare = b
		}
	}
}

// read is the reader goroutine: it hands every reply to its caller.
func (m *Mux) read() {
	r := bufio.NewReaderSize(m.c, 64<<10)
	var hdr [HeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			m.fail(err)
			return
		}
		id, n, err := parseHeader(hdr[:])
		if err != nil {
			m.fail(err)
			return
		}
		s := (*m.slots.Load())[id]
		if s == nil {
			m.fail(fmt.Errorf("reference: reply for unknown request %d", id))
			return
		}
		if cap(s.resp) < n {
			s.resp = make([]byte, n)
		}
		if _, err := io.ReadFull(r, s.resp[:n]); err != nil {
			m.fail(err)
			return
		}
		s.n = n
		s.ready <- struct{}{}
	}
}

// Close closes the connection.
func (m *Mux) Close() error {
	m.fail(ErrClosed)
	return nil
}

// Pipeline keeps up to depth requests in flight on one connection.
type Pipeline struct {
	c     net.Conn
	frame []byte
	depth int
	resp  []byte
}

// DialPipeline connects a pipeline that sends req and expects replies of
// about replyLen bytes.
func DialPipeline(addr string, req []byte, replyLen, depth int) (*Pipeline, error) {
	if depth < 1 {
		depth = 1
	}
	c, err := dial(addr)
	if err != nil {
		return nil, err
	}
	return &Pipeline{c: c, frame: AppendFrame(nil, 1, req), depth: depth, resp: make([]byte, replyLen)}, nil
}

// Run starts sending when start is closed and stops sending when stop is
// set; it then closes its side of the connection and reads the remaining
// replies. For every reply it calls done with the reply body and the time
// (from now) its request was queued. It returns the number of replies. A
// pipeline runs once.
func (p *Pipeline) Run(start <-chan struct{}, stop *atomic.Bool, now func() int64, done func(body []byte, sent int64) error) (int64, error) {
	tokens := make(chan struct{}, p.depth)
	for range p.depth {
		tokens <- struct{}{}
	}
	sentAt := make([]atomic.Int64, p.depth)
	var sent atomic.Int64 // requests written, final once writerDone is closed
	writerDone := make(chan struct{})
	var werr error
	readerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		w := bufio.NewWriterSize(p.c, 64<<10)
		<-start
		var seq int64
		for !stop.Load() {
			select {
			case <-tokens:
			default:
				if werr = w.Flush(); werr != nil {
					return
				}
				select {
				case <-tokens:
				case <-readerDone:
					return
				}
			}
			sentAt[seq%int64(p.depth)].Store(now())
			if _, werr = w.Write(p.frame); werr != nil {
				return
			}
			seq++
			sent.Store(seq)
		}
		if werr = w.Flush(); werr == nil {
			werr = p.c.(*net.TCPConn).CloseWrite()
		}
	}()

	r := bufio.NewReaderSize(p.c, 64<<10)
	var hdr [HeaderSize]byte
	resp := p.resp
	var got int64
	var rerr error
	for {
		if _, rerr = io.ReadFull(r, hdr[:]); rerr != nil {
			if rerr == io.EOF {
				// The writer closed its side after the last request and
				// the server closed after the last reply.
				<-writerDone
				if werr == nil && got == sent.Load() {
					close(readerDone)
					return got, nil
				}
			}
			break
		}
		_, n, err := parseHeader(hdr[:])
		if err != nil {
			rerr = err
			break
		}
		if cap(resp) < n {
			resp = make([]byte, n)
		}
		if _, rerr = io.ReadFull(r, resp[:n]); rerr != nil {
			break
		}
		t := sentAt[got%int64(p.depth)].Load()
		got++
		if rerr = done(resp[:n], t); rerr != nil {
			break
		}
		tokens <- struct{}{}
	}
	close(readerDone)
	p.c.Close()
	<-writerDone
	if rerr == nil {
		rerr = werr
	}
	return got, rerr
}

// Close closes the connection.
func (p *Pipeline) Close() error { return p.c.Close() }
