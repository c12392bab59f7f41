package payload

import (
	"reflect"
	"testing"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"google.golang.org/protobuf/proto"
)

func TestSizes(t *testing.T) {
	for _, size := range []int{Tiny, Rpcx, Medium, Large, Huge} {
		p, err := New(size)
		if err != nil {
			t.Fatal(err)
		}
		if n := proto.Size(p.Request()); n != size {
			t.Errorf("%s: request is %d bytes", p.Name, n)
		}
		kb, _ := p.KitexRequest().Marshal(nil)
		if !reflect.DeepEqual(kb, p.RequestBytes) {
			t.Errorf("%s: Kitex and protobuf-go encodings differ", p.Name)
		}
		r := p.Request()
		if err := p.Check(r); err == nil {
			t.Errorf("%s: the unhandled request passes Check", p.Name)
		}
		Handle(r)
		if err := p.Check(r); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		t.Logf("%s: request %d B, reply %d B", p.Name, len(p.RequestBytes), p.Reply)
	}
	if n := Name(Huge); n != "3.9 MiB" {
		t.Errorf("Name(Huge) = %q", n)
	}
	p, _ := New(Rpcx)
	if p.Reply != 527 {
		t.Errorf("581-byte message: reply is %d bytes, want 527", p.Reply)
	}
}

func TestCopyMessageCopiesEveryField(t *testing.T) {
	p, _ := New(Rpcx)
	src := p.Request()
	src.Field5 = []uint64{1, 2}
	dst := new(benchpb.BenchmarkMessage)
	CopyMessage(dst, src)
	if !proto.Equal(dst, src) {
		t.Error("CopyMessage missed a field")
	}
}
