package runtime

import "math"

// wrrKinetic runs nginx's smooth weighted round-robin over many groups in
// O(log² g) amortized per pick instead of O(g), with the same picks.
//
// nginx adds every weight to its current value, picks the largest and
// subtracts the total. Written lazily, group i's current value after x
// additions is c[i] + x·w[i]: a line in x. A pick is the highest line at
// x = t+1 (ties to the lowest index, as nginx's first-max scan), and the
// winner's c drops by the total. A kinetic tournament tree keeps, per
// node, the winner of its leaves at the current x and the first x at which
// that may change ("melt"), so advancing x only revisits nodes that melted.
type wrrKinetic struct {
	size  int     // leaves, a power of two
	c     []int64 // per group: current value at x = 0
	w     []int64 // per group: weight
	win   []int32 // per node: winning group, -1 if none
	melt  []int64 // per node: the first x at which its winner may change
	x     int64   // picks so far
	total int64
}

// wrrRebase bounds x: values stay below 2^63 for weights up to 2^42.
const wrrRebase = 1 << 20

func newWRRKinetic(groups []wrrGroup, total int64) *wrrKinetic {
	size := 1
	for size < len(groups) {
		size <<= 1
	}
	k := &wrrKinetic{size: size, c: make([]int64, len(groups)), w: make([]int64, len(groups)),
		win: make([]int32, 2*size), melt: make([]int64, 2*size), total: total}
	for i, g := range groups {
		k.c[i], k.w[i] = g.cur, g.w
	}
	k.build()
	return k
}

func (k *wrrKinetic) build() {
	for i := range k.size {
		k.win[k.size+i], k.melt[k.size+i] = -1, math.MaxInt64
		if i < len(k.c) {
			k.win[k.size+i] = int32(i)
		}
	}
	for n := k.size - 1; n >= 1; n-- {
		k.recompute(n)
	}
}

// value is group i's current value after x additions.
func (k *wrrKinetic) value(i int32, x int64) int64 { return k.c[i] + x*k.w[i] }

// recompute sets node n's winner at x = k.x+1 from its children.
func (k *wrrKinetic) recompute(n int) {
	a, b := k.win[2*n], k.win[2*n+1]
	m := min(k.melt[2*n], k.melt[2*n+1])
	switch {
	case a < 0:
		k.win[n], k.melt[n] = b, m
		return
	case b < 0:
		k.win[n], k.melt[n] = a, m
		return
	}
	x := k.x + 1
	if va, vb := k.value(a, x), k.value(b, x); vb > va || (vb == va && b < a) {
		a, b = b, a
	}
	// a wins at x. b overtakes only with a larger slope: first at the x
	// where d = (c[a]-c[b]) - x·(w[b]-w[a]) drops below 0, or reaches 0 if
	// b has the lower index.
	if s := k.w[b] - k.w[a]; s > 0 {
		d := k.c[a] - k.c[b]
		at := floorDiv(d, s) + 1
		if d%s == 0 && b < a {
			at--
		}
		m = min(m, at)
	}
	k.win[n], k.melt[n] = a, m
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// refresh brings the nodes under n whose winner melted up to x = k.x+1.
func (k *wrrKinetic) refresh(n int) {
	if n >= k.size || k.melt[n] > k.x+1 {
		return
	}
	k.refresh(2 * n)
	k.refresh(2*n + 1)
	k.recompute(n)
}

// pick returns the group nginx picks next, and takes its turn.
func (k *wrrKinetic) pick() int {
	k.refresh(1)
	best := k.win[1]
	k.c[best] -= k.total
	for n := (k.size + int(best)) / 2; n >= 1; n /= 2 {
		k.recompute(n)
	}
	if k.x++; k.x >= wrrRebase {
		for i := range k.c {
			k.c[i] += k.x * k.w[i]
		}
		k.x = 0
		k.build()
	}
	return int(best)
}

// sync writes the current values back into groups (the same order).
func (k *wrrKinetic) sync(groups []wrrGroup) {
	for i := range groups {
		groups[i].cur = k.c[i] + k.x*k.w[i]
	}
}
