// Package payload builds the benchmark messages, implements the benchmark
// handler and checks replies, the same for every peer.
//
// The 581-byte message is rpcx's benchmark message filled as rpcx's
// benchmark fills it: every int32/int64 field 100000, every bool true, every
// string Text (54 bytes of UTF-8), the repeated field5 empty. Its protobuf
// encoding is exactly 581 bytes.
//
// The other sizes (16 B, 16 KiB, 1 MiB, 3.9 MiB) use the same message type with only
// three fields set: field1 = "NO", field2 = 101 and field9 = a run of 'x'
// whose length makes the encoding exactly the stated size. The handler turns
// field1 into "OK" and field2 into 100 (same encoded lengths), so the reply
// is as large as the request. For the 581-byte message the reply is 527
// bytes (field1 and field2 shrink), as in rpcx's benchmark.
package payload

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"github.com/storks-rpc/storks/bench/gen/kitexpb"
	"google.golang.org/protobuf/proto"
)

// Text is the string rpcx's benchmark puts in every string field.
const Text = "许多往事在眼前一幕一幕，变的那麼模糊"

// Sizes of the scenarios, in bytes of the encoded request.
const (
	Tiny   = 16
	Rpcx   = 581
	Medium = 16 << 10
	Large  = 1 << 20
	// Huge is 3.9 MiB, the largest round size under the 4 MiB default
	// message limit of Storks and grpc-go (the request header and gRPC's
	// framing fit in the rest).
	Huge = 4089446
)

// Payload is one request size: the request message for each generated
// type, its encoding, and the encoding of the reply the handler makes.
type Payload struct {
	Size  int    // encoded request size
	Name  string // "581 B", "16 KiB", ...
	Reply int    // encoded reply size

	req  *benchpb.BenchmarkMessage
	kreq *kitexpb.BenchmarkMessage

	RequestBytes []byte // protobuf encoding of the request
	ReplyBytes   []byte // protobuf encoding of the reply

	want9 int // len(field9) of a correct reply
}

// New returns the payload whose request encodes to size bytes: 581 is
// rpcx's message, anything else the field9-sized message.
func New(size int) (*Payload, error) {
	p := &Payload{Size: size, Name: Name(size)}
	if size == Rpcx {
		p.req = new(benchpb.BenchmarkMessage)
		p.kreq = new(kitexpb.BenchmarkMessage)
		fillLikeRpcx(p.req)
		fillLikeRpcx(p.kreq)
	} else {
		// field1 "NO" (4 bytes) + field2 101 (2 bytes) + field9 tag (1) +
		// length varint + filler.
		fixed := 4 + 2 + 1
		n := size - fixed - 1
		for n > 0 && fixed+varintLen(n)+n != size {
			n--
		}
		if n <= 0 {
			return nil, fmt.Errorf("payload: no message of exactly %d bytes", size)
		}
		filler := strings.Repeat("x", n)
		p.req = &benchpb.BenchmarkMessage{Field1: "NO", Field2: 101, Field9: filler}
		p.kreq = &kitexpb.BenchmarkMessage{Field1: "NO", Field2: 101, Field9: filler}
	}
	p.want9 = len(p.req.Field9)
	var err error
	if p.RequestBytes, err = proto.Marshal(p.req); err != nil {
		return nil, err
	}
	if len(p.RequestBytes) != size {
		return nil, fmt.Errorf("payload: request encodes to %d bytes, want %d", len(p.RequestBytes), size)
	}
	if kb, err := p.kreq.Marshal(nil); err != nil || len(kb) != size {
		return nil, fmt.Errorf("payload: Kitex request encodes to %d bytes (%v), want %d", len(kb), err, size)
	}
	reply := p.Request()
	Handle(reply)
	if p.ReplyBytes, err = proto.Marshal(reply); err != nil {
		return nil, err
	}
	p.Reply = len(p.ReplyBytes)
	return p, nil
}

// Name returns the display name of a size.
func Name(size int) string {
	switch {
	case size >= 1<<20 && size%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", size>>20)
	case size >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(size)/(1<<20))
	case size >= 1<<10 && size%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", size>>10)
	}
	return fmt.Sprintf("%d B", size)
}

func varintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// fillLikeRpcx sets the fields of m as rpcx's benchmark does (by
// reflection, so that no field is forgotten): ints 100000, bools true,
// strings Text.
func fillLikeRpcx(m any) {
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		if !f.CanSet() {
			continue
		}
		switch f.Kind() {
		case reflect.Int32, reflect.Int64:
			f.SetInt(100000)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.String:
			f.SetString(Text)
		}
	}
}

// Request returns a new copy of the request, for one caller to reuse.
func (p *Payload) Request() *benchpb.BenchmarkMessage {
	return proto.Clone(p.req).(*benchpb.BenchmarkMessage)
}

// KitexRequest returns a new copy of the request as Kitex's generated type.
func (p *Payload) KitexRequest() *kitexpb.BenchmarkMessage {
	m := *p.kreq
	return &m
}

// Handle is the benchmark handler: it sets field1 to "OK" and field2 to 100.
// The server returns the message it was given.
func Handle(m *benchpb.BenchmarkMessage) {
	m.Field1 = "OK"
	m.Field2 = 100
}

// HandleKitex is Handle for Kitex's generated type.
func HandleKitex(m *kitexpb.BenchmarkMessage) {
	m.Field1 = "OK"
	m.Field2 = 100
}

// ErrBadReply is wrapped by every Check failure.
var ErrBadReply = errors.New("bad reply")

// Check verifies that m is the handler's answer to this payload's request:
// field1 "OK", field2 100, field9 as long as in the request. It does not
// allocate when the reply is right.
func (p *Payload) Check(m *benchpb.BenchmarkMessage) error {
	if m == nil {
		return fmt.Errorf("%w: nil", ErrBadReply)
	}
	return p.check(m.Field1, m.Field2, len(m.Field9))
}

// CheckKitex is Check for Kitex's generated type.
func (p *Payload) CheckKitex(m *kitexpb.BenchmarkMessage) error {
	if m == nil {
		return fmt.Errorf("%w: nil", ErrBadReply)
	}
	return p.check(m.Field1, m.Field2, len(m.Field9))
}

func (p *Payload) check(f1 string, f2 int32, n9 int) error {
	if f1 != "OK" || f2 != 100 || n9 != p.want9 {
		return fmt.Errorf("%w: field1=%.8q field2=%d len(field9)=%d, want \"OK\", 100, %d", ErrBadReply, f1, f2, n9, p.want9)
	}
	return nil
}

// CheckBytes verifies a raw reply of the reference rows: the exact bytes
// the handler's reply encodes to.
func (p *Payload) CheckBytes(b []byte) error {
	if len(b) != len(p.ReplyBytes) {
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadReply, len(b), len(p.ReplyBytes))
	}
	return nil
}

// CopyMessage copies every field of src into dst, for handlers (rpcx) that
// fill a reply the framework allocated. It is what rpcx's benchmark does
// with *reply = *args, without copying the message's internal state.
func CopyMessage(dst, src *benchpb.BenchmarkMessage) {
	dst.Field1 = src.Field1
	dst.Field9 = src.Field9
	dst.Field18 = src.Field18
	dst.Field80 = src.Field80
	dst.Field81 = src.Field81
	dst.Field2 = src.Field2
	dst.Field3 = src.Field3
	dst.Field280 = src.Field280
	dst.Field6 = src.Field6
	dst.Field22 = src.Field22
	dst.Field4 = src.Field4
	dst.Field5 = src.Field5
	dst.Field59 = src.Field59
	dst.Field7 = src.Field7
	dst.Field16 = src.Field16
	dst.Field130 = src.Field130
	dst.Field12 = src.Field12
	dst.Field17 = src.Field17
	dst.Field13 = src.Field13
	dst.Field14 = src.Field14
	dst.Field104 = src.Field104
	dst.Field100 = src.Field100
	dst.Field101 = src.Field101
	dst.Field102 = src.Field102
	dst.Field103 = src.Field103
	dst.Field29 = src.Field29
	dst.Field30 = src.Field30
	dst.Field60 = src.Field60
	dst.Field271 = src.Field271
	dst.Field272 = src.Field272
	dst.Field150 = src.Field150
	dst.Field23 = src.Field23
	dst.Field24 = src.Field24
	dst.Field25 = src.Field25
	dst.Field78 = src.Field78
	dst.Field67 = src.Field67
	dst.Field68 = src.Field68
	dst.Field128 = src.Field128
	dst.Field129 = src.Field129
	dst.Field131 = src.Field131
}
