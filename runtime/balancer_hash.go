package runtime

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
)

// ConsistentHash returns a factory of balancers that send the calls with
// the same hash key to the same provider while the provider list stays the
// same, and move few keys when it changes: each provider owns many points
// (virtual nodes, default 160) on a ring of 64-bit hashes, and a key goes
// to the owner of the first point at or after its hash.
//
// The points are computed from the instance's registry ID alone (not its
// address, nor the list's order), with FNV-1a 64 and a fixed finaliser, so
// every process, on every host, maps a key to the same instance given the
// same instances; removing one of n instances moves only the keys it owned
// (about 1/n of them) to the others, and adding it back moves them back.
// Ejected endpoints are off the ring until they are readmitted.
//
// The key is the call's WithHashKey, or, if that is empty and the balancer
// has HashMetadataKey, the value of that outgoing metadata key. A call
// without a key goes to an endpoint chosen at random. A retry or hedge
// (PickInfo.Attempt > 1) goes to the next distinct provider along the ring
// from the key, so a key's retries also agree across processes.
//
// Use it for affinity (caches local to a provider, per-user state); it
// ignores load and weight, so a hot key makes a hot provider.
func ConsistentHash(opts ...HashOption) BalancerFactory {
	cfg := hashConfig{vnodes: defaultVirtualNodes}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	return func() Balancer { return &hashBalancer{cfg: cfg, slotOf: make(map[string]int32)} }
}

// HashOption configures ConsistentHash.
type HashOption func(*hashConfig)

// HashMetadataKey makes ConsistentHash use the value of the outgoing
// metadata key k (NewOutgoingContext) as the hash key of calls that have
// no WithHashKey.
func HashMetadataKey(k string) HashOption {
	return func(c *hashConfig) { c.mdKey = k }
}

// HashVirtualNodes sets how many points each provider owns on the ring
// (default 160; a value below 1 means the default). More points spread
// keys more evenly (the spread of the shares is about 1/√n) at the cost of
// memory (12 bytes a point) and of rebuilding the ring when the list
// changes. Every client of a service must use the same number to agree.
func HashVirtualNodes(n int) HashOption {
	return func(c *hashConfig) {
		if n < 1 {
			n = defaultVirtualNodes
		}
		c.vnodes = n
	}
}

const defaultVirtualNodes = 160

type hashConfig struct {
	mdKey  string
	vnodes int
}

// hashBalancer keeps the ring of the last Build and changes it by the
// instances added and removed since: a list change hashes and sorts only
// the points of the instances that changed, and copies only the buckets
// they fall in, so that it costs about the same with 10 or 1,000
// instances; a change of endpoint objects alone (same instance IDs)
// reuses the ring as it is.
//
// The ring is cut into buckets by the top bits of the hash, about 32
// points each (a power of two of them, re-cut when the number of points
// has changed fourfold). Each instance ID has a slot; the ring's points
// name slots, and a picker maps slots to its endpoints. Build is never
// concurrent with itself, and pickers only read what they were built
// with: a bucket, once built, is never modified.
type hashBalancer struct {
	cfg    hashConfig
	slotOf map[string]int32 // instance ID → slot
	ids    []string         // slot → instance ID ("" if free)
	seen   []uint64         // slot → the build that last listed it
	free   []int32
	build  uint64
	live   int // slots in use

	table []*hashBucket // nil for an empty bucket
	shift uint          // the point h is in table[h>>shift]
}

// hashBucket holds the points of one bucket, ascending (ties by instance
// ID).
type hashBucket struct {
	hashes []uint64
	owners []int32 // the slot of each point
}

// pointsPerBucket is the number of points per bucket the ring is cut for;
// it is re-cut when that is off by more than 4 times.
const pointsPerBucket = 32

func (b *hashBalancer) Build(eps []*Endpoint) Picker {
	b.build++
	var added []int32
	listed := 0 // distinct IDs in eps
	for _, e := range eps {
		id := e.inst.ID
		s, ok := b.slotOf[id]
		if !ok {
			if n := len(b.free); n > 0 {
				s, b.free = b.free[n-1], b.free[:n-1]
				b.ids[s] = id
			} else {
				s = int32(len(b.ids))
				b.ids = append(b.ids, id)
				b.seen = append(b.seen, 0)
			}
			b.slotOf[id] = s
			added = append(added, s)
			b.live++
		}
		if b.seen[s] != b.build {
			b.seen[s] = b.build
			listed++
		}
	}
	var removed []string
	if b.live > listed {
		for s, id := range b.ids {
			if id != "" && b.seen[s] != b.build {
				removed = append(removed, id)
				delete(b.slotOf, id)
				b.ids[s] = ""
				b.free = append(b.free, int32(s))
				b.live--
			}
		}
	}
	if len(added) > 0 || len(removed) > 0 {
		b.change(added, removed)
	}
	slots := make([]*Endpoint, len(b.ids))
	for _, e := range eps {
		s := b.slotOf[e.inst.ID]
		if slots[s] == nil { // a duplicate ID keeps its first endpoint
			slots[s] = e
		}
	}
	return &hashPicker{eps: eps, slots: slots, table: b.table, shift: b.shift, mdKey: b.cfg.mdKey, distinct: b.live, points: b.live * b.cfg.vnodes}
}

// points returns the sorted points of the slots.
func (b *hashBalancer) points(slots []int32) []hashPoint {
	v := b.cfg.vnodes
	pts := make([]hashPoint, 0, len(slots)*v)
	for _, s := range slots {
		id := b.ids[s]
		for i := range v {
			pts = append(pts, hashPoint{h: vnodeHash(id, i), slot: s})
		}
	}
	slices.SortFunc(pts, b.cmpPoints)
	return pts
}

// change makes a new ring from the current one: without the points of
// the removed IDs (whose slots are free), with those of the added slots.
func (b *hashBalancer) change(added []int32, removed []string) {
	total := b.live * b.cfg.vnodes
	nb := len(b.table)
	if nb == 0 || total > 4*pointsPerBucket*nb || (nb > 1 && 4*total < pointsPerBucket*nb) {
		b.recut()
		return
	}
	pts := b.points(added)
	// The buckets to rebuild: those of the added and removed points.
	dirty := make([]int, 0, len(pts)+len(removed)*b.cfg.vnodes)
	for _, p := range pts {
		dirty = append(dirty, int(p.h>>b.shift))
	}
	for _, id := range removed {
		for i := range b.cfg.vnodes {
			dirty = append(dirty, int(vnodeHash(id, i)>>b.shift))
		}
	}
	slices.Sort(dirty)
	dirty = slices.Compact(dirty)
	table := slices.Clone(b.table)
	j := 0
	for _, d := range dirty {
		k := j
		for k < len(pts) && int(pts[k].h>>b.shift) == d {
			k++
		}
		table[d] = b.mergeBucket(b.table[d], pts[j:k])
		j = k
	}
	b.table = table
}

// mergeBucket returns old without the points of free slots, merged with
// add (sorted), or nil if that is empty.
func (b *hashBalancer) mergeBucket(old *hashBucket, add []hashPoint) *hashBucket {
	n := len(add)
	if old != nil {
		n += len(old.hashes)
	}
	nb := &hashBucket{hashes: make([]uint64, 0, n), owners: make([]int32, 0, n)}
	j := 0
	if old != nil {
		for i, h := range old.hashes {
			s := old.owners[i]
			if b.ids[s] == "" {
				continue
			}
			for j < len(add) && b.cmpPoints(add[j], hashPoint{h: h, slot: s}) < 0 {
				nb.hashes, nb.owners = append(nb.hashes, add[j].h), append(nb.owners, add[j].slot)
				j++
			}
			nb.hashes, nb.owners = append(nb.hashes, h), append(nb.owners, s)
		}
	}
	for ; j < len(add); j++ {
		nb.hashes, nb.owners = append(nb.hashes, add[j].h), append(nb.owners, add[j].slot)
	}
	if len(nb.hashes) == 0 {
		return nil
	}
	return nb
}

// recut builds the ring from every slot in use, in a number of buckets
// fit for its points.
func (b *hashBalancer) recut() {
	var slots []int32
	for s, id := range b.ids {
		if id != "" {
			slots = append(slots, int32(s))
		}
	}
	pts := b.points(slots)
	bits := uint(0)
	for bits < 16 && len(pts) > pointsPerBucket<<bits {
		bits++
	}
	b.shift = 64 - bits
	b.table = make([]*hashBucket, 1<<bits)
	j := 0
	for j < len(pts) {
		d := pts[j].h >> b.shift
		k := j
		for k < len(pts) && pts[k].h>>b.shift == d {
			k++
		}
		b.table[d] = b.mergeBucket(nil, pts[j:k])
		j = k
	}
}

type hashPoint struct {
	h    uint64
	slot int32
}

// cmpPoints orders points by hash, then by instance ID, so that the ring
// does not depend on the order instances were added in.
func (b *hashBalancer) cmpPoints(x, y hashPoint) int {
	switch {
	case x.h < y.h:
		return -1
	case x.h > y.h:
		return 1
	}
	return strings.Compare(b.ids[x.slot], b.ids[y.slot])
}

type hashPicker struct {
	eps      []*Endpoint
	slots    []*Endpoint
	table    []*hashBucket
	shift    uint
	mdKey    string
	distinct int // instances on the ring
	points   int
}

// maxHashWalk bounds how many distinct providers a retry walks past.
const maxHashWalk = 8

func (p *hashPicker) Pick(ctx context.Context, info PickInfo) (PickResult, error) {
	key := info.HashKey
	if key == "" && p.mdKey != "" {
		key = OutgoingMetadata(ctx)[p.mdKey]
	}
	if key == "" || p.distinct == 0 {
		return PickResult{Endpoint: p.eps[rand.IntN(len(p.eps))]}, nil
	}
	h := keyHash(key)
	// The first point at or after h, wrapping around.
	bi, pos := int(h>>p.shift), 0
	if bk := p.table[bi]; bk != nil {
		lo, hi := 0, len(bk.hashes)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if bk.hashes[m] < h {
				lo = m + 1
			} else {
				hi = m
			}
		}
		pos = lo
	}
	if bk := p.table[bi]; bk == nil || pos == len(bk.hashes) {
		bi, pos = p.next(bi, 0, true)
	}
	first := p.table[bi].owners[pos]
	skip := min(info.Attempt-1, p.distinct-1, maxHashWalk)
	if skip <= 0 {
		return PickResult{Endpoint: p.slots[first]}, nil
	}
	// Walk to the skip-th provider after the key's own.
	var seen [maxHashWalk + 1]int32
	seen[0] = first
	k := 1
	for range p.points {
		bi, pos = p.next(bi, pos, false)
		s := p.table[bi].owners[pos]
		if slices.Contains(seen[:k], s) {
			continue
		}
		if k == skip {
			return PickResult{Endpoint: p.slots[s]}, nil
		}
		seen[k] = s
		k++
	}
	return PickResult{Endpoint: p.slots[seen[k-1]]}, nil
}

// next returns the position of the point after (bi, pos), or, if start,
// the first point of the first non-empty bucket after bi. The ring has at
// least one point.
func (p *hashPicker) next(bi, pos int, start bool) (int, int) {
	if !start {
		if pos+1 < len(p.table[bi].hashes) {
			return bi, pos + 1
		}
	}
	mask := len(p.table) - 1
	for {
		bi = (bi + 1) & mask
		if p.table[bi] != nil {
			return bi, 0
		}
	}
}

// The ring's hash: FNV-1a 64 with murmur3's 64-bit finaliser, which FNV's
// weak mixing of the last bytes needs for keys that differ only at the end
// ("user-1", "user-2"; the points "id#0", "id#1"...). It is part of the
// protocol between the clients of a service: changing it moves keys.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func keyHash(key string) uint64 { return fmix64(fnvString(fnvOffset, key)) }

// vnodeHash is the hash of the point "<id>#<i>" (i in decimal).
func vnodeHash(id string, i int) uint64 {
	h := fnvString(fnvOffset, id)
	h ^= '#'
	h *= fnvPrime
	var buf [20]byte
	d := len(buf)
	for {
		d--
		buf[d] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			break
		}
	}
	for _, c := range buf[d:] {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return fmix64(h)
}
