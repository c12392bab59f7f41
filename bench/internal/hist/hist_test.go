package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestIndexIsMonotonicAndContiguous(t *testing.T) {
	prev := -1
	for v := int64(0); v < 1<<20; v++ {
		i := index(v)
		if i != prev && i != prev+1 {
			t.Fatalf("index(%d) = %d after %d", v, i, prev)
		}
		if lower(i) > v {
			t.Fatalf("lower(index(%d)) = %d", v, lower(i))
		}
		prev = i
	}
	if i := index(1 << 62); i != nBuckets-1 {
		t.Fatalf("index of a huge value = %d", i)
	}
}

func TestQuantileError(t *testing.T) {
	var h H
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(r.ExpFloat64()*50e3) + 1000
		h.Record(time.Duration(vals[i]))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := float64(vals[int(q*float64(len(vals)))-1])
		got := float64(h.Quantile(q))
		if got < want*0.98 || got > want*1.02 {
			t.Errorf("q%.3f = %.0f, want %.0f ±2%%", q, got, want)
		}
	}
	if testing.AllocsPerRun(100, func() { h.Record(time.Microsecond) }) != 0 {
		t.Error("Record allocates")
	}
}
