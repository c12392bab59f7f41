package runtime

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The wire format, version 1. See docs/protocol.md for the full description.
//
//	offset size field
//	0      2    magic 0x53 0x4B ("SK")
//	2      1    version (1)
//	3      1    frame type
//	4      8    request ID, big endian
//	12     4    body length, big endian
//	16     n    body
const (
	magic0     = 'S'
	magic1     = 'K'
	version1   = 1
	headerSize = 16
)

type frameType uint8

const (
	frameRequest  frameType = 1 // body: request header, then payload
	frameResponse frameType = 2 // body: payload
	frameError    frameType = 3 // body: uvarint code, then UTF-8 message
	framePing     frameType = 4 // body: empty; answered with a pong of the same ID
	framePong     frameType = 5 // body: empty
	frameCancel   frameType = 6 // body: empty; cancels the request with this ID
	frameGoAway   frameType = 7 // body: empty; the server takes no new requests on this connection

	// Version 2 (docs/protocol.md, "Version 2: settings and streams"); the
	// bodies are encoded and decoded in frame_stream.go. A peer sends these
	// only on a connection whose settings exchange made it version 2.
	frameSettings     frameType = 8  // ID 0; body: settings, each peer's first frame
	frameOpen         frameType = 9  // client → server; body: request header, no payload
	frameHeaders      frameType = 10 // server → client; body: metadata
	frameData         frameType = 11 // either; body: flags byte, then a chunk of a message
	frameHalfClose    frameType = 12 // client → server; body: empty; the client sends no more data
	frameEnd          frameType = 13 // server → client; body: status, flags, message, trailers
	frameReset        frameType = 14 // either; body: uvarint code; abandons the stream
	frameWindowUpdate frameType = 15 // either; ID 0 for the connection; body: uvarint increment
)

func (t frameType) String() string {
	switch t {
	case frameRequest:
		return "request"
	case frameResponse:
		return "response"
	case frameError:
		return "error"
	case framePing:
		return "ping"
	case framePong:
		return "pong"
	case frameCancel:
		return "cancel"
	case frameGoAway:
		return "goaway"
	case frameSettings:
		return "settings"
	case frameOpen:
		return "open"
	case frameHeaders:
		return "headers"
	case frameData:
		return "data"
	case frameHalfClose:
		return "half-close"
	case frameEnd:
		return "end"
	case frameReset:
		return "reset"
	case frameWindowUpdate:
		return "window update"
	}
	return fmt.Sprintf("frame type %d", uint8(t))
}

// maxMetadataPairs bounds the metadata a request may carry, independent of
// the byte limit, so a small frame cannot make the decoder build a huge map.
const maxMetadataPairs = 1024

// frameHeader is the fixed 16-byte part of a frame.
type frameHeader struct {
	typ frameType
	id  uint64
	len int
}

// FrameError is a protocol violation found while decoding. The connection it
// arrived on cannot be trusted any more and is closed.
type FrameError struct {
	Reason string
}

func (e *FrameError) Error() string { return "storks protocol: " + e.Reason }

// TooLargeError reports a frame whose body is larger than the limit. It is
// detected from the header, before anything is allocated for the body.
type TooLargeError struct {
	Size, Limit int
	ID          uint64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("message larger than max (%d vs. %d)", e.Size, e.Limit)
}

func (e *TooLargeError) Unwrap() error { return ErrMessageTooLarge }

// appendHeader appends a frame header with a body length of n.
func appendHeader(b []byte, t frameType, id uint64, n int) []byte {
	b = append(b, magic0, magic1, version1, byte(t))
	b = binary.BigEndian.AppendUint64(b, id)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// setBodyLen patches the body length of the frame starting at b[0].
func setBodyLen(b []byte) {
	binary.BigEndian.PutUint32(b[12:16], uint32(len(b)-headerSize))
}

// Frame types a receiver accepts, by the state of its connection: the
// maxType argument of parseHeader and readFrame.
const (
	acceptV1    = frameGoAway    // a version 1 connection: types 1 to 7
	acceptFirst = frameSettings  // a first frame, which may be settings
	acceptV2    = frameType(255) // a version 2 connection: every type; 16 and up are skipped
)

// firstUnknownV2 is the first frame type version 2 leaves to extensions: a
// version 2 receiver skips such frames (docs/protocol.md, "Unknown frame
// types").
const firstUnknownV2 frameType = 16

// parseHeader validates the fixed header. limit is the largest body
// accepted; types from 1 to maxType are accepted (acceptV1, acceptFirst,
// acceptV2).
func parseHeader(h []byte, limit int, maxType frameType) (frameHeader, error) {
	if h[0] != magic0 || h[1] != magic1 {
		if h[0] == 0x16 && h[1] == 0x03 {
			// A TLS handshake record: the peer uses TLS, this side does not.
			return frameHeader{}, &FrameError{Reason: "bad magic 0x1603 (want 0x534b): the peer speaks TLS but this side has no TLS config (WithTLSConfig)"}
		}
		if h[0] == 'P' && h[1] == 'R' {
			// The HTTP/2 preface, where a server made WithoutGRPC (or a
			// client) expects Storks.
			return frameHeader{}, &FrameError{Reason: "bad magic 0x5052 (want 0x534b): the peer speaks HTTP/2 (a gRPC client?), and this side does not (WithoutGRPC)"}
		}
		return frameHeader{}, &FrameError{Reason: fmt.Sprintf("bad magic 0x%02x%02x (want 0x534b): not a Storks peer", h[0], h[1])}
	}
	if h[2] != version1 {
		return frameHeader{}, &FrameError{Reason: fmt.Sprintf("unsupported protocol version %d (this peer speaks 1)", h[2])}
	}
	fh := frameHeader{
		typ: frameType(h[3]),
		id:  binary.BigEndian.Uint64(h[4:12]),
	}
	n := binary.BigEndian.Uint32(h[12:16])
	if fh.typ < frameRequest || fh.typ > maxType {
		return frameHeader{}, &FrameError{Reason: fmt.Sprintf("unknown frame type %d", h[3])}
	}
	if uint64(n) > uint64(limit) {
		return fh, &TooLargeError{Size: int(n), Limit: limit, ID: fh.id}
	}
	fh.len = int(n)
	return fh, nil
}

// readFrame reads one frame. The body is read into a buffer from the pool;
// the caller owns it and returns it with putBuf. Nothing is allocated for a
// body that is over the limit, nor for one whose bytes have not arrived
// (see readBody). The body of a type of firstUnknownV2 or more
// (accepted with acceptV2 only) is skipped without being kept: the frame is
// returned with a nil body.
func readFrame(r *bufio.Reader, limit int, maxType frameType) (frameHeader, *[]byte, error) {
	// The header is parsed where it lies in the reader's buffer: a local
	// array passed to io.ReadFull would escape, costing an allocation per
	// frame.
	hb, err := r.Peek(headerSize)
	if len(hb) < headerSize {
		if err == io.EOF && len(hb) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return frameHeader{}, nil, err
	}
	fh, err := parseHeader(hb, limit, maxType)
	r.Discard(headerSize)
	if err != nil {
		return fh, nil, err
	}
	if fh.typ >= firstUnknownV2 {
		if _, err := r.Discard(fh.len); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fh, nil, err
		}
		return fh, nil, nil
	}
	body, err := readBody(r, fh.len)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fh, nil, err
	}
	return fh, body, nil
}

// bodyStep is the largest buffer readBody allocates for a body, once a
// read buffer of it has arrived, before that much of it has arrived too.
const bodyStep = 256 << 10

// readBody reads an n-byte body into a pooled buffer of its size, allocated
// only once the body's bytes arrive: once they fill the reader's buffer
// (or all of them are in it). A body over bodyStep bytes is read into a
// bodyStep buffer first, and into one of its own size only once that is
// full. So a peer that announces a frame and sends little of it pins no
// more than about eight times what it sent (and at most bodyStep) besides
// the read buffer, and a body that does arrive costs one buffer of its size
// from the pool, and one copy of bodyStep bytes if it is larger.
func readBody(r *bufio.Reader, n int) (*[]byte, error) {
	if n > r.Buffered() {
		if _, err := r.Peek(min(n, r.Size())); err != nil {
			return nil, err
		}
	}
	var first *[]byte
	if n > bodyStep {
		first = getBuf(bodyStep)
		*first = (*first)[:bodyStep]
		if _, err := io.ReadFull(r, *first); err != nil {
			putBuf(first)
			return nil, err
		}
	}
	body := getBuf(n)
	*body = (*body)[:n]
	got := 0
	if first != nil {
		got = copy(*body, *first)
		putBuf(first)
	}
	if _, err := io.ReadFull(r, (*body)[got:]); err != nil {
		putBuf(body)
		return nil, err
	}
	return body, nil
}

// requestHeader is the decoded start of a request body. Its byte slices
// alias the frame body.
type requestHeader struct {
	key      []byte // canonical service key, ServiceKey.String()
	method   []byte // method name without the service
	timeout  time.Duration
	metadata Metadata
	payload  []byte
}

// appendRequestHeader appends everything of a request body but the payload.
func appendRequestHeader(b []byte, key, method string, timeout time.Duration, md Metadata) []byte {
	b = appendString(b, key)
	b = appendString(b, method)
	var us uint64
	if timeout > 0 {
		us = uint64((timeout + time.Microsecond - 1) / time.Microsecond)
	}
	b = binary.AppendUvarint(b, us)
	b = binary.AppendUvarint(b, uint64(len(md)))
	for k, v := range md {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// parseRequest decodes a request body. Every length is checked against what
// is left of the body before it is used.
func parseRequest(body []byte) (requestHeader, error) {
	var rh requestHeader
	var err error
	d := decoder{b: body}
	if rh.key, err = d.bytes("service key"); err != nil {
		return rh, err
	}
	if len(rh.key) == 0 {
		return rh, &FrameError{Reason: "request has an empty service key"}
	}
	if rh.method, err = d.bytes("method"); err != nil {
		return rh, err
	}
	if len(rh.method) == 0 {
		return rh, &FrameError{Reason: "request has an empty method name"}
	}
	us, err := d.uvarint("timeout")
	if err != nil {
		return rh, err
	}
	const maxTimeoutUS = uint64(1<<63-1) / uint64(time.Microsecond)
	if us > maxTimeoutUS {
		us = maxTimeoutUS
	}
	rh.timeout = time.Duration(us) * time.Microsecond
	n, err := d.uvarint("metadata count")
	if err != nil {
		return rh, err
	}
	if n > maxMetadataPairs {
		return rh, &FrameError{Reason: fmt.Sprintf("request has %d metadata pairs (limit %d)", n, maxMetadataPairs)}
	}
	// Each pair needs at least two bytes, so a count that the rest of the
	// body cannot hold is rejected before the map is made.
	if n > uint64(len(d.b))/2 {
		return rh, &FrameError{Reason: fmt.Sprintf("metadata count %d runs past the end of the frame", n)}
	}
	if n > 0 {
		rh.metadata = make(Metadata, n)
		for i := uint64(0); i < n; i++ {
			k, err := d.bytes("metadata key")
			if err != nil {
				return rh, err
			}
			v, err := d.bytes("metadata value")
			if err != nil {
				return rh, err
			}
			rh.metadata[string(k)] = string(v)
		}
	}
	rh.payload = d.b
	return rh, nil
}

// errNotExecuted is set in an error frame's flags when the handler never ran
// (unknown service or method, server shutting down, undecodable request), so
// the client may safely send the call to another instance.
const errNotExecuted = 1

func appendErrorBody(b []byte, e *Error, flags byte) []byte {
	b = binary.AppendUvarint(b, uint64(e.Code))
	b = append(b, flags)
	return append(b, e.Message...)
}

func parseErrorBody(body []byte) (*Error, byte, error) {
	d := decoder{b: body}
	c, err := d.uvarint("error code")
	if err != nil {
		return nil, 0, err
	}
	if c > 1<<31 {
		return nil, 0, &FrameError{Reason: fmt.Sprintf("error code %d out of range", c)}
	}
	if len(d.b) == 0 {
		return nil, 0, &FrameError{Reason: "error frame has no flags byte"}
	}
	flags := d.b[0]
	e := &Error{Code: Code(c), Message: string(d.b[1:])}
	switch e.Code {
	case CodeDeadlineExceeded:
		e.cause = context.DeadlineExceeded
	case CodeCanceled:
		e.cause = context.Canceled
	}
	return e, flags, nil
}

type decoder struct{ b []byte }

func (d *decoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		return 0, &FrameError{Reason: "malformed " + what + " length"}
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) bytes(what string) ([]byte, error) {
	n, err := d.uvarint(what)
	if err != nil {
		return nil, err
	}
	if n > uint64(len(d.b)) {
		return nil, &FrameError{Reason: fmt.Sprintf("%s length %d runs past the end of the frame (%d bytes left)", what, n, len(d.b))}
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v, nil
}

// Buffer pool. Buffers up to maxPooled bytes share one pool; larger ones
// are pooled by size class (bufpool.go).
const (
	minPooled = 1 << 10
	maxPooled = 64 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, minPooled); return &b }}

// getBuf returns an empty buffer with room for at least n bytes.
func getBuf(n int) *[]byte {
	if n > maxPooled {
		return getLarge(n)
	}
	bp := bufPool.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, 0, max(n, 2*cap(*bp)))
	}
	*bp = (*bp)[:0]
	return bp
}

func putBuf(bp *[]byte) {
	if bp == nil {
		return
	}
	if cap(*bp) > maxPooled {
		putLarge(bp)
		return
	}
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}
