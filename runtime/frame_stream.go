package runtime

import (
	"encoding/binary"
	"fmt"
)

// The bodies of the version 2 frames: settings and streams. See
// docs/protocol.md, "Version 2: settings and streams", for what they mean
// and when a peer may send them; the frame types are in frame.go, the
// flow-control accounting in flow.go.
//
// Every decoder is strict: each length and value is checked before it is
// used, nothing may follow the last field, and reserved flag bits must be
// zero. A violation is a *FrameError naming the field, which is a connection
// error. Byte slices in decoded values alias the body.

// protocolVersion is the highest protocol version this side speaks, sent in
// its settings.
const protocolVersion = 2

// Setting IDs. A receiver ignores IDs it does not know.
const (
	settingVersion      = 1 // highest protocol version the sender speaks; at least 2
	settingFeatures     = 2 // feature bits; none is defined yet, unknown ones are ignored
	settingMaxStreams   = 3 // streams the peer may have open toward the sender at once
	settingStreamWindow = 4 // initial window of each stream, for data the sender receives
	settingConnWindow   = 5 // initial window of the connection, for data the sender receives
	settingMaxChunk     = 6 // largest chunk of a message in one data frame the sender accepts
	settingMaxMessage   = 7 // largest message the sender accepts (advisory: lets a peer fail early)
)

// Limits and defaults of the settings and of flow control.
const (
	maxSettings = 32 // settings in one frame, known or not

	maxWindow = 1<<31 - 1 // largest window and window increment
	minWindow = 1 << 10   // smallest initial window a peer may announce
	minChunk  = 1 << 10   // smallest max chunk size a peer may announce
	maxChunk  = 1 << 24   // largest max chunk size a peer may announce

	defaultMaxStreams   = 100
	defaultStreamWindow = 256 << 10
	defaultConnWindow   = 8 << 20
	defaultMaxChunk     = 16 << 10
)

// settings are what a peer announces in its settings frame. A setting the
// frame leaves out has its default (defaultSettings).
type settings struct {
	version      uint64 // highest protocol version the peer speaks, at least 2
	features     uint64 // feature bits; the features in use are those both peers set
	maxStreams   int    // 0 to maxWindow; a client announces 0: it accepts no streams
	streamWindow int    // minWindow to maxWindow
	connWindow   int    // minWindow to maxWindow
	maxChunk     int    // minChunk to maxChunk
	maxMessage   int    // 1 to maxFrameBody
}

func defaultSettings() settings {
	return settings{
		version:      protocolVersion,
		maxStreams:   defaultMaxStreams,
		streamWindow: defaultStreamWindow,
		connWindow:   defaultConnWindow,
		maxChunk:     defaultMaxChunk,
		maxMessage:   DefaultMaxMessageSize,
	}
}

// appendSettings appends a settings body that states every setting.
func appendSettings(b []byte, s settings) []byte {
	b = binary.AppendUvarint(b, 7)
	for _, kv := range [...][2]uint64{
		{settingVersion, s.version},
		{settingFeatures, s.features},
		{settingMaxStreams, uint64(s.maxStreams)},
		{settingStreamWindow, uint64(s.streamWindow)},
		{settingConnWindow, uint64(s.connWindow)},
		{settingMaxChunk, uint64(s.maxChunk)},
		{settingMaxMessage, uint64(s.maxMessage)},
	} {
		b = binary.AppendUvarint(b, kv[0])
		b = binary.AppendUvarint(b, kv[1])
	}
	return b
}

// parseSettings decodes a settings body: a uvarint count, then that many
// pairs of uvarint ID and uvarint value. Settings it leaves out keep their
// defaults; unknown IDs are ignored, but count toward the limit and must not
// repeat either.
func parseSettings(body []byte) (settings, error) {
	s := defaultSettings()
	d := decoder{b: body}
	n, err := d.uvarint("settings count")
	if err != nil {
		return s, err
	}
	if n > maxSettings {
		return s, &FrameError{Reason: fmt.Sprintf("settings frame has %d settings (limit %d)", n, maxSettings)}
	}
	if n > uint64(len(d.b))/2 { // each setting takes at least two bytes
		return s, &FrameError{Reason: fmt.Sprintf("settings count %d runs past the end of the frame", n)}
	}
	var seen [maxSettings]uint64
	for i := range int(n) {
		id, err := d.uvarint("setting ID")
		if err != nil {
			return s, err
		}
		v, err := d.uvarint("setting value")
		if err != nil {
			return s, err
		}
		for _, prev := range seen[:i] {
			if prev == id {
				return s, &FrameError{Reason: fmt.Sprintf("setting %d appears twice in the settings frame", id)}
			}
		}
		seen[i] = id
		switch id {
		case settingVersion:
			if v < 2 {
				return s, &FrameError{Reason: fmt.Sprintf("setting protocol version is %d (a settings frame means 2 or later)", v)}
			}
			s.version = v
		case settingFeatures:
			s.features = v
		case settingMaxStreams:
			s.maxStreams, err = settingInRange("max concurrent streams", v, 0, maxWindow)
		case settingStreamWindow:
			s.streamWindow, err = settingInRange("initial stream window", v, minWindow, maxWindow)
		case settingConnWindow:
			s.connWindow, err = settingInRange("initial connection window", v, minWindow, maxWindow)
		case settingMaxChunk:
			s.maxChunk, err = settingInRange("max chunk size", v, minChunk, maxChunk)
		case settingMaxMessage:
			s.maxMessage, err = settingInRange("max message size", v, 1, maxFrameBody)
		}
		if err != nil {
			return s, err
		}
	}
	if len(d.b) > 0 {
		return s, &FrameError{Reason: fmt.Sprintf("settings frame has %d bytes after its last setting", len(d.b))}
	}
	return s, nil
}

func settingInRange(name string, v, lo, hi uint64) (int, error) {
	if v < lo || v > hi {
		return 0, &FrameError{Reason: fmt.Sprintf("setting %s is %d (must be %d to %d)", name, v, lo, hi)}
	}
	return int(v), nil
}

// An open body is a request header (appendRequestHeader) with no payload:
// the stream's messages travel in data frames.

// parseOpen decodes the body of an open frame.
func parseOpen(body []byte) (requestHeader, error) {
	rh, err := parseRequest(body)
	if err != nil {
		return rh, err
	}
	if len(rh.payload) > 0 {
		return rh, &FrameError{Reason: fmt.Sprintf("open frame has %d bytes after its metadata (messages go in data frames)", len(rh.payload))}
	}
	rh.payload = nil
	return rh, nil
}

// appendMetadata appends a uvarint count of pairs, then each pair as two
// length-prefixed strings: the body of a headers frame, and the trailers of
// an end frame.
func appendMetadata(b []byte, md Metadata) []byte {
	b = binary.AppendUvarint(b, uint64(len(md)))
	for k, v := range md {
		b = appendString(b, k)
		b = appendString(b, v)
	}
	return b
}

// metadata decodes what appendMetadata appends, with the limits of request
// metadata: at most maxMetadataPairs pairs, and a count the rest of the body
// can hold, both checked before the map is made. what names it in errors.
func (d *decoder) metadata(what string) (Metadata, error) {
	n, err := d.uvarint(what + " count")
	if err != nil {
		return nil, err
	}
	if n > maxMetadataPairs {
		return nil, &FrameError{Reason: fmt.Sprintf("%s count %d is over the limit (%d)", what, n, maxMetadataPairs)}
	}
	if n > uint64(len(d.b))/2 {
		return nil, &FrameError{Reason: fmt.Sprintf("%s count %d runs past the end of the frame", what, n)}
	}
	if n == 0 {
		return nil, nil
	}
	md := make(Metadata, n)
	for range n {
		k, err := d.bytes(what + " key")
		if err != nil {
			return nil, err
		}
		v, err := d.bytes(what + " value")
		if err != nil {
			return nil, err
		}
		md[string(k)] = string(v)
	}
	return md, nil
}

// parseHeaders decodes the body of a headers frame: the server's response
// metadata.
func parseHeaders(body []byte) (Metadata, error) {
	d := decoder{b: body}
	md, err := d.metadata("headers")
	if err == nil && len(d.b) > 0 {
		err = &FrameError{Reason: fmt.Sprintf("headers frame has %d bytes after its metadata", len(d.b))}
	}
	return md, err
}

// dataEndOfMessage, in the flags byte of a data frame, marks the chunk that
// ends a message. The other bits are reserved and must be zero.
const dataEndOfMessage = 0x01

// appendData appends a data body: the flags byte, then the chunk. The body
// is what the frame costs in flow-control credit: len(chunk)+1.
func appendData(b, chunk []byte, endOfMessage bool) []byte {
	var flags byte
	if endOfMessage {
		flags = dataEndOfMessage
	}
	b = append(b, flags)
	return append(b, chunk...)
}

// parseData decodes a data body. maxChunk is the max chunk size this side
// announced.
func parseData(body []byte, maxChunk int) (chunk []byte, endOfMessage bool, err error) {
	if len(body) == 0 {
		return nil, false, &FrameError{Reason: "data frame has no flags byte"}
	}
	if f := body[0]; f&^dataEndOfMessage != 0 {
		return nil, false, &FrameError{Reason: fmt.Sprintf("data frame has reserved flags 0x%02x set", f&^dataEndOfMessage)}
	}
	if n := len(body) - 1; n > maxChunk {
		return nil, false, &FrameError{Reason: fmt.Sprintf("data chunk of %d bytes is over the max chunk size (%d)", n, maxChunk)}
	}
	return body[1:], body[0] == dataEndOfMessage, nil
}

// parseHalfClose checks the body of a half-close frame, which is empty.
func parseHalfClose(body []byte) error {
	if len(body) > 0 {
		return &FrameError{Reason: fmt.Sprintf("half-close frame has a %d-byte body (must be empty)", len(body))}
	}
	return nil
}

// maxCode is the largest status code a frame may carry, as in error frames.
const maxCode = 1 << 31

// streamEnd is the body of an end frame: the stream's status and trailers.
type streamEnd struct {
	code     Code
	flags    byte // errNotExecuted; the other bits are reserved
	message  string
	trailers Metadata
}

// appendEnd appends an end body: uvarint code, flags byte, length-prefixed
// message, trailers (appendMetadata).
func appendEnd(b []byte, e streamEnd) []byte {
	b = binary.AppendUvarint(b, uint64(e.code))
	b = append(b, e.flags)
	b = appendString(b, e.message)
	return appendMetadata(b, e.trailers)
}

// parseEnd decodes an end body.
func parseEnd(body []byte) (streamEnd, error) {
	var e streamEnd
	d := decoder{b: body}
	c, err := d.uvarint("end code")
	if err != nil {
		return e, err
	}
	if c > maxCode {
		return e, &FrameError{Reason: fmt.Sprintf("end code %d out of range", c)}
	}
	e.code = Code(c)
	if len(d.b) == 0 {
		return e, &FrameError{Reason: "end frame has no flags byte"}
	}
	e.flags, d.b = d.b[0], d.b[1:]
	if r := e.flags &^ errNotExecuted; r != 0 {
		return e, &FrameError{Reason: fmt.Sprintf("end frame has reserved flags 0x%02x set", r)}
	}
	if e.flags != 0 && e.code == CodeOK {
		return e, &FrameError{Reason: "end frame has code OK and the not-executed flag"}
	}
	msg, err := d.bytes("end message")
	if err != nil {
		return e, err
	}
	e.message = string(msg)
	if e.trailers, err = d.metadata("trailer"); err != nil {
		return e, err
	}
	if len(d.b) > 0 {
		return e, &FrameError{Reason: fmt.Sprintf("end frame has %d bytes after its trailers", len(d.b))}
	}
	return e, nil
}

// appendReset appends a reset body: the uvarint code.
func appendReset(b []byte, c Code) []byte { return binary.AppendUvarint(b, uint64(c)) }

// parseReset decodes a reset body.
func parseReset(body []byte) (Code, error) {
	d := decoder{b: body}
	c, err := d.uvarint("reset code")
	if err != nil {
		return 0, err
	}
	if c > maxCode {
		return 0, &FrameError{Reason: fmt.Sprintf("reset code %d out of range", c)}
	}
	if len(d.b) > 0 {
		return 0, &FrameError{Reason: fmt.Sprintf("reset frame has %d bytes after its code", len(d.b))}
	}
	return Code(c), nil
}

// appendWindowUpdate appends a window update body: the uvarint increment,
// 1 to maxWindow.
func appendWindowUpdate(b []byte, n int) []byte { return binary.AppendUvarint(b, uint64(n)) }

// parseWindowUpdate decodes a window update body. Whether the increment
// overflows the window is for the window to tell (sendQuota.add).
func parseWindowUpdate(body []byte) (int, error) {
	d := decoder{b: body}
	n, err := d.uvarint("window increment")
	if err != nil {
		return 0, err
	}
	if n == 0 || n > maxWindow {
		return 0, &FrameError{Reason: fmt.Sprintf("window increment %d (must be 1 to %d)", n, maxWindow)}
	}
	if len(d.b) > 0 {
		return 0, &FrameError{Reason: fmt.Sprintf("window update frame has %d bytes after its increment", len(d.b))}
	}
	return int(n), nil
}
