package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	goruntime "runtime"
	"testing"
	"time"
)

// FuzzParseRequest decodes request bodies: the service key, method, timeout
// and metadata header that precedes the payload. It must never panic, must
// reject bad input only with a *FrameError, must never build more metadata
// than the body can hold or the limit allows, and what it accepts must
// re-encode to a body that decodes to the same request.
func FuzzParseRequest(f *testing.F) {
	body := func(b []byte) []byte { return b[headerSize:] }
	f.Add(body(encodeRequest(1, "g/svc.S:v1", "Do", time.Second, Metadata{"k": "v", "trace": "abc"}, []byte("payload"))))
	f.Add(body(encodeRequest(1, "svc.S", "M", 0, nil, nil)))
	f.Add([]byte{})
	f.Add([]byte{1, 'k', 1, 'M', 0, 2, 1, 'a', 1, 'b', 1, 'a', 1, 'c'})                                  // duplicate key
	f.Add([]byte{1, 'k', 1, 'M', 0, 1, 1, 'a', 50})                                                      // value past the end
	f.Add([]byte{1, 'k', 1, 'M', 0, 1, 200, 1, 'a'})                                                     // key past the end
	f.Add(binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0}, 1<<40))                                        // huge count
	f.Add(binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0}, maxMetadataPairs+1))                           // over the limit
	f.Add(append([]byte{1, 'k', 1, 'M'}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0)) // timeout 2^64-1
	f.Add([]byte{1, 'k', 1, 'M', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})      // malformed varint
	f.Add([]byte{0, 1, 'M', 0, 0})                                                                       // empty key
	f.Add([]byte{1, 'k', 0, 0, 0})                                                                       // empty method
	f.Fuzz(func(t *testing.T, body []byte) {
		rh, err := parseRequest(body)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FrameError", err, err)
			}
			return
		}
		if len(rh.key) == 0 || len(rh.method) == 0 {
			t.Fatalf("accepted an empty key or method: %q %q", rh.key, rh.method)
		}
		if rh.timeout < 0 {
			t.Fatalf("negative timeout %v", rh.timeout)
		}
		if n := len(rh.metadata); n > maxMetadataPairs || 2*n > len(body) {
			t.Fatalf("%d metadata pairs from a %d-byte body", n, len(body))
		}
		if len(rh.payload) > 0 && &rh.payload[len(rh.payload)-1] != &body[len(body)-1] {
			t.Fatal("payload is not the end of the body")
		}
		enc := appendRequestHeader(nil, string(rh.key), string(rh.method), rh.timeout, rh.metadata)
		enc = append(enc, rh.payload...)
		again, err := parseRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded request does not decode: %v", err)
		}
		if !bytes.Equal(again.key, rh.key) || !bytes.Equal(again.method, rh.method) || again.timeout != rh.timeout ||
			!bytes.Equal(again.payload, rh.payload) || !maps.Equal(again.metadata, rh.metadata) {
			t.Fatalf("round trip: %+v became %+v", rh, again)
		}
	})
}

// The memory one decode allocates is bounded by the body it decodes and
// the metadata limit, however the lengths in it are forged.
func TestParseRequestMemoryIsBounded(t *testing.T) {
	maxPairs := binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0}, maxMetadataPairs)
	for i := range maxMetadataPairs {
		maxPairs = append(maxPairs, 2, byte(i), byte(i>>8), 0)
	}
	cases := map[string][]byte{
		"1024 pairs":         maxPairs,
		"count 2^40":         binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0}, 1<<40),
		"count at the limit": append(binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0}, maxMetadataPairs), make([]byte, 8)...),
		"value 2^62":         binary.AppendUvarint([]byte{1, 'k', 1, 'M', 0, 1, 1, 'a'}, 1<<62),
	}
	for name, body := range cases {
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		for range 10 {
			parseRequest(body)
		}
		goruntime.ReadMemStats(&after)
		per := (after.TotalAlloc - before.TotalAlloc) / 10
		t.Logf("%s: %d-byte body, %d bytes allocated per decode", name, len(body), per)
		if per > 256<<10 {
			t.Errorf("%s: %d bytes allocated per decode", name, per)
		}
	}
}
