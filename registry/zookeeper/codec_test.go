package zookeeper

import (
	"testing"

	"github.com/storks-rpc/storks/registry"
)

// TestCodecWeight: weight 0 is written and read back as 0; data without a
// weight (written before weight 0 meant zero) reads as DefaultWeight.
func TestCodecWeight(t *testing.T) {
	key := registry.ServiceKey{Service: "s"}
	for _, w := range []int{0, 1, registry.DefaultWeight} {
		in := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1", Weight: w}
		b, err := encode(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := decode(key, "a", b)
		if err != nil {
			t.Fatal(err)
		}
		if out.Weight != w {
			t.Errorf("weight %d reads back as %d", w, out.Weight)
		}
	}
	out, err := decode(key, "a", []byte(`{"key":{"service":"s"},"id":"a","addr":"127.0.0.1:1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if out.Weight != registry.DefaultWeight {
		t.Errorf("data without weight reads as weight %d, want %d", out.Weight, registry.DefaultWeight)
	}
}
