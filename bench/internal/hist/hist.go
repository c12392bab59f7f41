// Package hist is a fixed-size log-linear latency histogram (HDR style):
// recording is an index computation and an increment, with no allocation,
// and the relative error of a reported quantile is below 1/64 (1.6%).
package hist

import (
	"math/bits"
	"time"
)

const (
	subBits = 6            // 64 linear sub-buckets per power of two
	sub     = 1 << subBits // values below sub nanoseconds are exact
	// maxShift bounds the range: values up to 2^(maxShift+subBits+1) ns
	// (about 137 s) are distinct, larger ones land in the last bucket.
	maxShift = 30
	nBuckets = (maxShift + 2) * sub
)

// H counts durations in nanoseconds. The zero value is ready to use. An H is
// not safe for concurrent use: give every recording goroutine its own and
// Merge them afterwards.
type H struct {
	counts [nBuckets]uint32
	n      uint64
	max    int64
}

func index(v int64) int {
	if v < sub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	if shift > maxShift {
		return nBuckets - 1
	}
	return (shift+1)*sub + int(uint64(v)>>shift) - sub
}

// lower returns the smallest value that lands in bucket i.
func lower(i int) int64 {
	if i < sub {
		return int64(i)
	}
	shift := i/sub - 1
	return int64(i%sub+sub) << shift
}

// Record adds one duration.
func (h *H) Record(d time.Duration) {
	v := int64(d)
	h.counts[index(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

// Count returns the number of recorded durations.
func (h *H) Count() uint64 { return h.n }

// Max returns the largest recorded duration.
func (h *H) Max() time.Duration { return time.Duration(h.max) }

// Reset empties h.
func (h *H) Reset() { *h = H{} }

// Merge adds the counts of o to h.
func (h *H) Merge(o *H) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Quantile returns the q-quantile (0 < q <= 1) of the recorded durations:
// the midpoint of the bucket that holds the ceil(q*n)-th smallest value,
// capped at the maximum. It returns 0 for an empty histogram.
func (h *H) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			lo := lower(i)
			hi := lower(i + 1)
			if i == nBuckets-1 {
				hi = h.max + 1
			}
			mid := lo + (hi-lo)/2
			if mid > h.max {
				mid = h.max
			}
			return time.Duration(mid)
		}
	}
	return time.Duration(h.max)
}
