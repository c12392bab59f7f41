package runtime

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func encodeRequest(id uint64, key, method string, timeout time.Duration, md Metadata, payload []byte) []byte {
	b := appendHeader(nil, frameRequest, id, 0)
	b = appendRequestHeader(b, key, method, timeout, md)
	b = append(b, payload...)
	setBodyLen(b)
	return b
}

func TestRequestRoundTrip(t *testing.T) {
	md := Metadata{"trace": "abc", "user": "ü"}
	frame := encodeRequest(42, "g/svc.S:v1", "Do", 1500*time.Millisecond, md, []byte("payload"))
	fh, body, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), 1<<20, acceptV1)
	if err != nil {
		t.Fatal(err)
	}
	if fh.typ != frameRequest || fh.id != 42 || fh.len != len(frame)-headerSize {
		t.Fatalf("header = %+v", fh)
	}
	rh, err := parseRequest(*body)
	if err != nil {
		t.Fatal(err)
	}
	if string(rh.key) != "g/svc.S:v1" || string(rh.method) != "Do" || rh.timeout != 1500*time.Millisecond || string(rh.payload) != "payload" {
		t.Fatalf("request = %+v", rh)
	}
	if len(rh.metadata) != 2 || rh.metadata["trace"] != "abc" || rh.metadata["user"] != "ü" {
		t.Fatalf("metadata = %v", rh.metadata)
	}
}

func TestErrorBodyRoundTrip(t *testing.T) {
	b := appendErrorBody(nil, &Error{Code: CodeNotFound, Message: "no such thing"}, errNotExecuted)
	e, flags, err := parseErrorBody(b)
	if err != nil || e.Code != CodeNotFound || e.Message != "no such thing" || flags != errNotExecuted {
		t.Fatalf("got %v, %d, %v", e, flags, err)
	}
	if _, _, err := parseErrorBody([]byte{5}); err == nil || !strings.Contains(err.Error(), "no flags byte") {
		t.Fatalf("missing flags: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := encodeRequest(1, "svc.S", "M", 0, nil, []byte("x"))
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	header := func(n uint32) []byte {
		b := appendHeader(nil, frameRequest, 9, 0)
		binary.BigEndian.PutUint32(b[12:], n)
		return b
	}
	cases := []struct {
		name  string
		frame []byte
		want  string
	}{
		{"bad magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"unknown version", mut(func(b []byte) []byte { b[2] = 9; return b }), "unsupported protocol version 9"},
		{"unknown type", mut(func(b []byte) []byte { b[3] = 99; return b }), "unknown frame type 99"},
		{"forged huge length", header(0xFFFFFFF0), "message larger than max (4294967280 vs. 1024)"},
		{"truncated body", header(100), "unexpected EOF"},
		{"key length past end", append(header(2), 0x7f, 'a'), "service key length 127 runs past the end"},
		{"empty key", append(header(3), 0, 1, 'M'), "empty service key"},
		{"metadata count past end", append(header(7), 1, 'k', 1, 'M', 0, 0x7f, 0), "metadata count 127 runs past the end"},
		{"metadata value past end", append(header(9), 1, 'k', 1, 'M', 0, 1, 1, 'a', 50), "metadata value length 50 runs past the end"},
		{"bad varint", append(header(12), 1, 'k', 1, 'M', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "malformed timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeAll(c.frame, 1024)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestTooLargeIsErrMessageTooLarge(t *testing.T) {
	b := appendHeader(nil, frameRequest, 9, 0)
	binary.BigEndian.PutUint32(b[12:], 5000)
	_, err := decodeAll(b, 4096)
	var tl *TooLargeError
	if !errors.As(err, &tl) || tl.Size != 5000 || tl.Limit != 4096 || tl.ID != 9 || !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("err = %#v", err)
	}
}

// decodeAll reads every frame in data the way a server does and parses the
// request bodies. It returns the number of frames decoded.
func decodeAll(data []byte, limit int) (int, error) {
	r := bufio.NewReader(bytes.NewReader(data))
	n := 0
	for {
		fh, body, err := readFrame(r, limit, acceptV1)
		if err != nil {
			if n > 0 && err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
		if len(*body) != fh.len {
			panic("body length mismatch")
		}
		switch fh.typ {
		case frameRequest:
			rh, err := parseRequest(*body)
			if err != nil {
				return n, err
			}
			if len(rh.metadata) > maxMetadataPairs {
				panic("metadata limit not enforced")
			}
		case frameError:
			if _, _, err := parseErrorBody(*body); err != nil {
				return n, err
			}
		}
		putBuf(body)
		n++
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(encodeRequest(1, "g/svc.S:v1", "Do", time.Second, Metadata{"k": "v"}, []byte("payload")))
	f.Add(appendHeader(nil, framePing, 3, 0))
	f.Add(append(appendHeader(nil, frameError, 3, 5), appendErrorBody(nil, &Error{Code: 5, Message: "nope"}, 0)...))
	huge := appendHeader(nil, frameRequest, 1, 0)
	binary.BigEndian.PutUint32(huge[12:], 0xFFFFFFF0)
	f.Add(huge)
	short := appendHeader(nil, frameRequest, 1, 0)
	binary.BigEndian.PutUint32(short[12:], 1)
	f.Add(append(short, 0x05))
	f.Add(append(appendHeader(nil, frameRequest, 1, 6), 1, 'k', 1, 'M', 0, 0x7f))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{'S', 'K', 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	const limit = 64 << 10
	f.Fuzz(func(t *testing.T, data []byte) {
		// Must never panic, and never allocate past the limit: getBuf is
		// only reached with a length that passed the limit check.
		decodeAll(data, limit)
	})
}
