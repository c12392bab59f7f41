package runtime

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fuzzMaxChunk is the max chunk size the data-frame tests and the fuzz target
// decode with: small, so that fuzzing reaches the limit.
const fuzzMaxChunk = 64

// decodeStream decodes a version 2 body of type t and re-encodes what it
// accepted, returning the decoded value and the new body.
func decodeStream(t frameType, body []byte) (v any, again []byte, err error) {
	switch t {
	case frameSettings:
		s, err := parseSettings(body)
		return s, appendSettings(nil, s), err
	case frameOpen:
		rh, err := parseOpen(body)
		return rh, appendRequestHeader(nil, string(rh.key), string(rh.method), rh.timeout, rh.metadata), err
	case frameHeaders:
		md, err := parseHeaders(body)
		return md, appendMetadata(nil, md), err
	case frameData:
		chunk, eom, err := parseData(body, fuzzMaxChunk)
		return [2]any{string(chunk), eom}, appendData(nil, chunk, eom), err
	case frameHalfClose:
		return nil, nil, parseHalfClose(body)
	case frameEnd:
		e, err := parseEnd(body)
		return e, appendEnd(nil, e), err
	case frameReset:
		c, err := parseReset(body)
		return c, appendReset(nil, c), err
	case frameWindowUpdate:
		n, err := parseWindowUpdate(body)
		return n, appendWindowUpdate(nil, n), err
	}
	panic("not a stream frame type: " + t.String())
}

func sameDecoded(a, b any) bool {
	if ra, ok := a.(requestHeader); ok {
		rb := b.(requestHeader)
		return bytes.Equal(ra.key, rb.key) && bytes.Equal(ra.method, rb.method) && ra.timeout == rb.timeout &&
			maps.Equal(ra.metadata, rb.metadata) && len(ra.payload) == 0 && len(rb.payload) == 0
	}
	return reflect.DeepEqual(a, b)
}

func TestStreamFramesRoundTrip(t *testing.T) {
	custom := settings{version: 7, features: 1<<63 | 5, maxStreams: 0, streamWindow: maxWindow, connWindow: minWindow, maxChunk: maxChunk, maxMessage: maxFrameBody}
	cases := []struct {
		name string
		typ  frameType
		body []byte
	}{
		{"default settings", frameSettings, appendSettings(nil, defaultSettings())},
		{"extreme settings", frameSettings, appendSettings(nil, custom)},
		{"open", frameOpen, appendRequestHeader(nil, "g/svc.S:v1", "Watch", 1500*time.Millisecond, Metadata{"trace": "abc", "k": ""})},
		{"open without metadata", frameOpen, appendRequestHeader(nil, "svc.S", "M", 0, nil)},
		{"headers", frameHeaders, appendMetadata(nil, Metadata{"a": "1", "b": "ü"})},
		{"no headers", frameHeaders, appendMetadata(nil, nil)},
		{"data", frameData, appendData(nil, []byte("chunk"), false)},
		{"last data", frameData, appendData(nil, []byte("end"), true)},
		{"empty message", frameData, appendData(nil, nil, true)},
		{"full chunk", frameData, appendData(nil, make([]byte, fuzzMaxChunk), true)},
		{"half-close", frameHalfClose, nil},
		{"end OK", frameEnd, appendEnd(nil, streamEnd{})},
		{"end with trailers", frameEnd, appendEnd(nil, streamEnd{code: CodeUnavailable, flags: errNotExecuted, message: "shutting down", trailers: Metadata{"retry": "later"}})},
		{"reset", frameReset, appendReset(nil, CodeCanceled)},
		{"window update 1", frameWindowUpdate, appendWindowUpdate(nil, 1)},
		{"window update max", frameWindowUpdate, appendWindowUpdate(nil, maxWindow)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, again, err := decodeStream(c.typ, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, c.body) && c.typ != frameHeaders && c.typ != frameOpen && c.typ != frameEnd {
				t.Fatalf("re-encoded %x as %x", c.body, again)
			}
			v2, _, err := decodeStream(c.typ, again)
			if err != nil || !sameDecoded(v, v2) {
				t.Fatalf("round trip: %+v became %+v, %v", v, v2, err)
			}
		})
	}
	if s, _ := parseSettings(appendSettings(nil, custom)); s != custom {
		t.Fatalf("settings %+v became %+v", custom, s)
	}
	e, _ := parseEnd(appendEnd(nil, streamEnd{code: CodeUnavailable, flags: errNotExecuted, message: "m", trailers: Metadata{"k": "v"}}))
	if e.code != CodeUnavailable || e.flags != errNotExecuted || e.message != "m" || e.trailers["k"] != "v" {
		t.Fatalf("end = %+v", e)
	}
	chunk, eom, _ := parseData(appendData(nil, []byte("xy"), true), 2)
	if string(chunk) != "xy" || !eom {
		t.Fatalf("data = %q, %v", chunk, eom)
	}
}

// settingsBody builds a settings body from ID, value pairs.
func settingsBody(kv ...uint64) []byte {
	b := binary.AppendUvarint(nil, uint64(len(kv)/2))
	for _, v := range kv {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func TestSettingsDefaultsAndUnknownIDs(t *testing.T) {
	s, err := parseSettings(settingsBody())
	if err != nil || s != defaultSettings() {
		t.Fatalf("no settings: %+v, %v", s, err)
	}
	// Unknown IDs, even huge ones, and unknown feature bits are accepted
	// and ignored; the known settings around them still apply.
	s, err = parseSettings(settingsBody(99, 1<<63, settingStreamWindow, 1<<20, 1<<40, 0, settingFeatures, 1<<62|1))
	want := defaultSettings()
	want.streamWindow, want.features = 1<<20, 1<<62|1
	if err != nil || s != want {
		t.Fatalf("with unknown IDs: %+v, %v; want %+v", s, err, want)
	}
	// As many settings as the limit allows, unknown ones included.
	var kv []uint64
	for id := range uint64(maxSettings) {
		kv = append(kv, 100+id, id)
	}
	if _, err := parseSettings(settingsBody(kv...)); err != nil {
		t.Fatalf("%d settings: %v", maxSettings, err)
	}
}

func TestStreamFramesReject(t *testing.T) {
	big := make([]byte, 0, 4*maxMetadataPairs+8)
	big = binary.AppendUvarint(big, maxMetadataPairs+1)
	for range maxMetadataPairs + 1 {
		big = append(big, 1, 'k', 0)
	}
	var tooMany []uint64
	for id := range uint64(maxSettings + 1) {
		tooMany = append(tooMany, 100+id, 0)
	}
	cases := []struct {
		name string
		typ  frameType
		body []byte
		want string
	}{
		// settings
		{"settings empty body", frameSettings, nil, "malformed settings count"},
		{"settings truncated count", frameSettings, []byte{0x80}, "malformed settings count"},
		{"settings count past end", frameSettings, []byte{3, 1, 2}, "settings count 3 runs past the end"},
		{"settings count huge", frameSettings, binary.AppendUvarint(nil, 1<<62), "settings frame has 4611686018427387904 settings (limit 32)"},
		{"too many settings", frameSettings, settingsBody(tooMany...), "settings frame has 33 settings (limit 32)"},
		{"duplicate setting", frameSettings, settingsBody(settingMaxChunk, 4096, settingMaxChunk, 8192), "setting 6 appears twice"},
		{"duplicate unknown setting", frameSettings, settingsBody(77, 1, 77, 1), "setting 77 appears twice"},
		{"setting truncated value", frameSettings, []byte{1, settingStreamWindow, 0xff, 0xff}, "malformed setting value"},
		{"setting malformed ID", frameSettings, append([]byte{1}, bytes.Repeat([]byte{0xff}, 10)...), "malformed setting ID"},
		{"settings trailing bytes", frameSettings, append(settingsBody(settingFeatures, 0), 0), "1 bytes after its last setting"},
		{"settings version 1", frameSettings, settingsBody(settingVersion, 1), "setting protocol version is 1"},
		{"stream window zero", frameSettings, settingsBody(settingStreamWindow, 0), "initial stream window is 0 (must be 1024 to 2147483647)"},
		{"stream window 2^31", frameSettings, settingsBody(settingStreamWindow, 1<<31), "initial stream window is 2147483648"},
		{"connection window 2^64-1", frameSettings, settingsBody(settingConnWindow, 1<<64-1), "initial connection window is 18446744073709551615"},
		{"max streams 2^31", frameSettings, settingsBody(settingMaxStreams, 1<<31), "max concurrent streams is 2147483648"},
		{"max chunk too small", frameSettings, settingsBody(settingMaxChunk, 16), "max chunk size is 16 (must be 1024 to 16777216)"},
		{"max message zero", frameSettings, settingsBody(settingMaxMessage, 0), "max message size is 0"},
		{"max message 2^32", frameSettings, settingsBody(settingMaxMessage, 1<<32), "max message size is 4294967296"},
		// open
		{"open with payload", frameOpen, append(appendRequestHeader(nil, "svc.S", "M", 0, nil), 'x'), "1 bytes after its metadata"},
		{"open empty method", frameOpen, []byte{1, 'k', 0, 0, 0}, "empty method"},
		{"open metadata past end", frameOpen, []byte{1, 'k', 1, 'M', 0, 1, 1, 'a', 50}, "metadata value length 50 runs past the end"},
		// headers
		{"headers empty body", frameHeaders, nil, "malformed headers count"},
		{"headers over the limit", frameHeaders, big, "headers count 1025 is over the limit (1024)"},
		{"headers count past end", frameHeaders, []byte{5, 1, 'a', 0}, "headers count 5 runs past the end"},
		{"headers key past end", frameHeaders, []byte{1, 9, 'a'}, "headers key length 9 runs past the end"},
		{"headers trailing bytes", frameHeaders, []byte{1, 1, 'a', 0, 0}, "1 bytes after its metadata"},
		// data
		{"data empty body", frameData, nil, "no flags byte"},
		{"data reserved flag", frameData, []byte{0x02, 'x'}, "reserved flags 0x02"},
		{"data all flags", frameData, []byte{0xff}, "reserved flags 0xfe"},
		{"data chunk over max", frameData, append([]byte{0}, make([]byte, fuzzMaxChunk+1)...), "data chunk of 65 bytes is over the max chunk size (64)"},
		// half-close
		{"half-close with body", frameHalfClose, []byte{0}, "1-byte body"},
		// end
		{"end empty body", frameEnd, nil, "malformed end code"},
		{"end code out of range", frameEnd, append(binary.AppendUvarint(nil, 1<<31+1), 0, 0, 0), "end code 2147483649 out of range"},
		{"end no flags", frameEnd, []byte{14}, "end frame has no flags byte"},
		{"end reserved flag", frameEnd, []byte{14, 0x81, 0, 0}, "reserved flags 0x80"},
		{"end OK not executed", frameEnd, []byte{0, errNotExecuted, 0, 0}, "code OK and the not-executed flag"},
		{"end message past end", frameEnd, []byte{14, 0, 40, 'x'}, "end message length 40 runs past the end"},
		{"end no trailers", frameEnd, []byte{14, 0, 1, 'x'}, "malformed trailer count"},
		{"end trailer count huge", frameEnd, append([]byte{14, 0, 0}, binary.AppendUvarint(nil, 1<<40)...), "trailer count 1099511627776 is over the limit"},
		{"end trailer value past end", frameEnd, []byte{14, 0, 0, 1, 1, 'k', 3, 'v'}, "trailer value length 3 runs past the end"},
		{"end trailing bytes", frameEnd, []byte{14, 0, 0, 0, 'z'}, "1 bytes after its trailers"},
		// reset
		{"reset empty body", frameReset, nil, "malformed reset code"},
		{"reset truncated varint", frameReset, []byte{0x81}, "malformed reset code"},
		{"reset varint overflow", frameReset, bytes.Repeat([]byte{0xff}, 11), "malformed reset code"},
		{"reset code out of range", frameReset, binary.AppendUvarint(nil, 1<<40), "reset code 1099511627776 out of range"},
		{"reset trailing bytes", frameReset, []byte{1, 1}, "1 bytes after its code"},
		// window update
		{"window update empty body", frameWindowUpdate, nil, "malformed window increment"},
		{"window update zero", frameWindowUpdate, []byte{0}, "window increment 0 (must be 1 to 2147483647)"},
		{"window update 2^31", frameWindowUpdate, binary.AppendUvarint(nil, 1<<31), "window increment 2147483648"},
		{"window update 2^64-1", frameWindowUpdate, binary.AppendUvarint(nil, 1<<64-1), "window increment 18446744073709551615"},
		{"window update truncated", frameWindowUpdate, []byte{0x80, 0x80}, "malformed window increment"},
		{"window update trailing bytes", frameWindowUpdate, []byte{1, 0}, "1 bytes after its increment"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := decodeStream(c.typ, c.body)
			var fe *FrameError
			if !errors.As(err, &fe) || !strings.Contains(fe.Reason, c.want) {
				t.Fatalf("error = %v, want a *FrameError containing %q", err, c.want)
			}
		})
	}
}

// TestStreamDocExample encodes the worked example of docs/protocol.md
// ("Example: a server-streaming call") and compares it with the bytes the
// document shows.
func TestStreamDocExample(t *testing.T) {
	frame := func(typ frameType, id uint64, body []byte) []byte {
		return append(appendHeader(nil, typ, id, len(body)), body...)
	}
	client := settings{version: 2, maxStreams: 0, streamWindow: 256 << 10, connWindow: 8 << 20, maxChunk: 16 << 10, maxMessage: 4 << 20}
	var got []byte
	got = append(got, frame(frameSettings, 0, appendSettings(nil, client))...)
	got = append(got, frame(frameSettings, 0, appendSettings(nil, defaultSettings()))...)
	got = append(got, frame(frameOpen, 1, appendRequestHeader(nil, "storks.examples.greeter.v1.Greeter:v1", "SayHellos", 0, nil))...)
	got = append(got, frame(frameData, 1, appendData(nil, []byte("\x0a\x06storks"), true))...)
	got = append(got, frame(frameHalfClose, 1, nil)...)
	got = append(got, frame(frameData, 1, appendData(nil, []byte("\x0a\x0chello storks"), true))...)
	got = append(got, frame(frameData, 1, appendData(nil, []byte("\x0a\x0ahi storks"), true))...)
	got = append(got, frame(frameEnd, 1, appendEnd(nil, streamEnd{}))...)
	got = append(got, frame(frameWindowUpdate, 1, appendWindowUpdate(nil, 32<<10))...)

	want := "" +
		// client settings
		"534b0108 0000000000000000 00000019" + "07 0102 0200 0300 04808010 0580808004 06808001 0780808002" +
		// server settings
		"534b0108 0000000000000000 00000019" + "07 0102 0200 0364 04808010 0580808004 06808001 0780808002" +
		// open
		"534b0109 0000000000000001 00000032" + "25" + hexOf("storks.examples.greeter.v1.Greeter:v1") + "09" + hexOf("SayHellos") + "00 00" +
		// data, half-close
		"534b010b 0000000000000001 00000009" + "01 0a06" + hexOf("storks") +
		"534b010c 0000000000000001 00000000" +
		// two data frames from the server
		"534b010b 0000000000000001 0000000f" + "01 0a0c" + hexOf("hello storks") +
		"534b010b 0000000000000001 0000000c" + "01 0a0a" + hexOf("hi storks") +
		// end
		"534b010d 0000000000000001 00000004" + "00 00 00 00" +
		// the window update shown after it
		"534b010f 0000000000000001 00000003" + "808002"
	if w := fromHex(t, want); !bytes.Equal(got, w) {
		t.Fatalf("example bytes differ:\n got %x\nwant %x", got, w)
	}
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

func fromHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseStreamFrames decodes the bodies of every version 2 frame type:
// typ picks the type (modulo the eight of them). A decoder must never panic,
// must reject bad input only with a *FrameError, must not build more
// metadata than the body can hold or the limit allows, and what it accepts
// must re-encode to a body that decodes to the same value.
func FuzzParseStreamFrames(f *testing.F) {
	f.Add(byte(frameSettings), appendSettings(nil, defaultSettings()))
	f.Add(byte(frameSettings), settingsBody(99, 1, settingFeatures, 1<<63))
	f.Add(byte(frameOpen), appendRequestHeader(nil, "svc.S", "M", time.Second, Metadata{"k": "v"}))
	f.Add(byte(frameHeaders), appendMetadata(nil, Metadata{"k": "v"}))
	f.Add(byte(frameData), appendData(nil, []byte("chunk"), true))
	f.Add(byte(frameHalfClose), []byte{})
	f.Add(byte(frameEnd), appendEnd(nil, streamEnd{code: CodeUnavailable, flags: errNotExecuted, message: "m", trailers: Metadata{"k": "v"}}))
	f.Add(byte(frameReset), appendReset(nil, CodeCanceled))
	f.Add(byte(frameWindowUpdate), appendWindowUpdate(nil, maxWindow))
	f.Fuzz(func(t *testing.T, typ byte, body []byte) {
		ft := frameSettings + frameType(typ%8)
		v, again, err := decodeStream(ft, body)
		if err != nil {
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Fatalf("%s: error %T %v is not a *FrameError", ft, err, err)
			}
			return
		}
		var md Metadata
		switch v := v.(type) {
		case Metadata:
			md = v
		case streamEnd:
			md = v.trailers
		case requestHeader:
			md = v.metadata
		}
		if n := len(md); n > maxMetadataPairs || 2*n > len(body) {
			t.Fatalf("%s: %d metadata pairs from a %d-byte body", ft, n, len(body))
		}
		v2, _, err := decodeStream(ft, again)
		if err != nil {
			t.Fatalf("%s: re-encoded body %x does not decode: %v", ft, again, err)
		}
		if !sameDecoded(v, v2) {
			t.Fatalf("%s: round trip: %+v became %+v", ft, v, v2)
		}
	})
}
