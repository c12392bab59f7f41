package runtime

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"time"
)

// The read buffer of a server connection is held only while frames arrive.
// A connection waits for its first frame, and for the next one after it
// has been idle, with no buffer: it reads into a small array until a whole
// small frame or smallRead bytes have arrived, and only then takes a read
// buffer from a pool. It gives the buffer back when a wait for the next
// frame has seen no byte for idleRelease (connReader ends such a wait with
// errIdle, through a read deadline armed once per idleRelease while frames
// flow). So an idle connection, or one that sent a frame header and
// nothing more, holds a few hundred bytes, not a read buffer; and a busy
// one reads as before, many frames per read system call.

// readBufSize is the size of a server connection's read buffer.
const readBufSize = 32 << 10

// smallRead is how many bytes a connection without a read buffer reads
// before it takes one: a frame header and a little more.
const smallRead = 32

// idleRelease is how long a wait for a frame sees no byte before the
// connection gives its read buffer back. A variable for the tests.
var idleRelease = time.Second

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// errIdle ends a wait for a frame that saw no byte for idleRelease. It is a
// temporary net.Error, so that a TLS connection above connReader stays
// usable.
var errIdle error = idleError{}

type idleError struct{}

func (idleError) Error() string   { return "storks: connection idle" }
func (idleError) Timeout() bool   { return true }
func (idleError) Temporary() bool { return true }

// lazyReader is the read side of a server connection above TLS: the bytes
// read without a buffer (pre), and the buffer while one is held (r).
type lazyReader struct {
	pre prefixReader
	r   *bufio.Reader // nil while the connection has no read buffer
}

// prefixReader returns the bytes read while the connection had no read
// buffer, then the error that ended those reads, if any, then reads src.
type prefixReader struct {
	src io.Reader
	buf [smallRead]byte
	b   []byte // what is left of buf to return
	err error
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.b) > 0 {
		n := copy(b, p.b)
		p.b = p.b[n:]
		return n, nil
	}
	if err := p.err; err != nil {
		p.err = nil
		return 0, err
	}
	return p.src.Read(b)
}

// nextFrame returns the reader the next frame is to be read from, once a
// byte of that frame is there, taking a read buffer if the connection has
// none. limit and maxType are readFrame's.
func (sc *serverConn) nextFrame(limit int, maxType frameType) (*bufio.Reader, error) {
	lr := &sc.lr
	for {
		if lr.r != nil {
			_, err := lr.r.Peek(1)
			if err == nil {
				return lr.r, nil
			}
			if !errors.Is(err, errIdle) {
				return nil, err
			}
			sc.releaseReader()
		}
		if err := sc.awaitBytes(limit, maxType); err != nil {
			return nil, err
		}
		lr.r = readerPool.Get().(*bufio.Reader)
		lr.r.Reset(&lr.pre)
		sc.in.hold = true
	}
}

// releaseReader gives the connection's read buffer back to the pool. The
// reader goroutine calls it when the connection is idle or done.
// Without a buffer it touches nothing: after a hand-over to gRPC, the
// gRPC server's reader goroutine reads through connReader (TLS) while the
// reader goroutine's deferred release runs.
func (sc *serverConn) releaseReader() {
	lr := &sc.lr
	if lr.r == nil {
		return
	}
	sc.in.hold = false
	lr.r.Reset(nil)
	readerPool.Put(lr.r)
	lr.r = nil
}

// awaitBytes reads the start of the next frame into lr.pre without a read
// buffer: until smallRead bytes, or a whole frame, or bytes that cannot
// start a frame readFrame accepts (it then reports them) have arrived. It
// returns an error only if none arrived.
func (sc *serverConn) awaitBytes(limit int, maxType frameType) error {
	p := &sc.lr.pre
	n, empty := 0, 0
	for {
		m, err := p.src.Read(p.buf[n:])
		n += m
		if m == 0 && err == nil {
			if empty++; empty == 100 { // as bufio.Reader does
				err = io.ErrNoProgress
			}
		}
		if err != nil {
			if n == 0 {
				return err
			}
			p.err = err
			break
		}
		if n == len(p.buf) || !frameStart(p.buf[:n]) {
			break
		}
		if n < headerSize {
			continue
		}
		if _, err := parseHeader(p.buf[:headerSize], limit, maxType); err != nil {
			break
		}
		if uint64(n) >= headerSize+uint64(binary.BigEndian.Uint32(p.buf[12:16])) {
			break // a whole frame
		}
	}
	p.b = p.buf[:n]
	return nil
}

// frameStart reports whether b can be the start of a version 1 header.
func frameStart(b []byte) bool {
	want := [3]byte{magic0, magic1, version1}
	for i := 0; i < len(b) && i < len(want); i++ {
		if b[i] != want[i] {
			return false
		}
	}
	return true
}
