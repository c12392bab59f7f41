package payload

import (
	"testing"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"google.golang.org/protobuf/proto"
)

// BenchmarkProtoPerCall is the protobuf-go work every protoc-gen-go-based
// row (Storks, grpc-go, rpcx) does per call with the 581-byte message:
// marshal the request, unmarshal it on the server, marshal the reply,
// unmarshal it on the client. It is the floor under their CPU µs/op and
// allocs/op that no transport change removes; the tcp-* rows skip it.
func BenchmarkProtoPerCall(b *testing.B) {
	p, err := New(Rpcx)
	if err != nil {
		b.Fatal(err)
	}
	req := p.Request()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		wire, _ := proto.MarshalOptions{}.MarshalAppend(buf[:0], req)
		in := new(benchpb.BenchmarkMessage)
		if err := proto.Unmarshal(wire, in); err != nil {
			b.Fatal(err)
		}
		Handle(in)
		wire, _ = proto.MarshalOptions{}.MarshalAppend(buf[:0], in)
		out := new(benchpb.BenchmarkMessage)
		if err := proto.Unmarshal(wire, out); err != nil {
			b.Fatal(err)
		}
	}
}
