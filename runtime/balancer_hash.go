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
// instances added and removed since, so that a list change with n
// endpoints costs O(n × vnodes) copying but hashes and sorts only the
// points of the instances that changed, and a change of endpoint objects
// alone (same instance IDs) reuses the ring as it is.
//
// Each instance ID has a slot; the ring's points name slots, and a picker
// maps slots to its endpoints. Build is never concurrent with itself, and
// pickers only read what they were built with.
type hashBalancer struct {
	cfg    hashConfig
	slotOf map[string]int32 // instance ID → slot
	ids    []string         // slot → instance ID ("" if free)
	seen   []uint64         // slot → the build that last listed it
	free   []int32
	build  uint64
	hashes []uint64 // the ring, ascending (ties by instance ID)
	owners []int32  // the slot of each point
	live   int      // slots in use
}

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
	removed := b.live - listed
	if removed > 0 {
		for s, id := range b.ids {
			if id != "" && b.seen[s] != b.build {
				delete(b.slotOf, id)
				b.ids[s] = ""
				b.free = append(b.free, int32(s))
				b.live--
			}
		}
	}
	if len(added) > 0 || removed > 0 {
		b.rebuild(added, removed > 0)
	}
	slots := make([]*Endpoint, len(b.ids))
	for _, e := range eps {
		s := b.slotOf[e.inst.ID]
		if slots[s] == nil { // a duplicate ID keeps its first endpoint
			slots[s] = e
		}
	}
	return &hashPicker{eps: eps, slots: slots, hashes: b.hashes, owners: b.owners, mdKey: b.cfg.mdKey, distinct: b.live}
}

// rebuild makes a new ring: the current one without the points of free
// slots (if any was freed), merged with the sorted points of the added
// slots. The old arrays stay as they are for the pickers that use them.
func (b *hashBalancer) rebuild(added []int32, freed bool) {
	v := b.cfg.vnodes
	pts := make([]hashPoint, 0, len(added)*v)
	for _, s := range added {
		id := b.ids[s]
		for i := range v {
			pts = append(pts, hashPoint{h: vnodeHash(id, i), slot: s})
		}
	}
	slices.SortFunc(pts, b.cmpPoints)
	n := len(b.hashes) + len(pts)
	if freed {
		n = b.live * v
	}
	hashes, owners := make([]uint64, 0, n), make([]int32, 0, n)
	j := 0
	for i, h := range b.hashes {
		s := b.owners[i]
		if freed && b.ids[s] == "" {
			continue
		}
		for j < len(pts) && b.cmpPoints(pts[j], hashPoint{h: h, slot: s}) < 0 {
			hashes, owners = append(hashes, pts[j].h), append(owners, pts[j].slot)
			j++
		}
		hashes, owners = append(hashes, h), append(owners, s)
	}
	for ; j < len(pts); j++ {
		hashes, owners = append(hashes, pts[j].h), append(owners, pts[j].slot)
	}
	b.hashes, b.owners = hashes, owners
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
	hashes   []uint64
	owners   []int32
	mdKey    string
	distinct int
}

// maxHashWalk bounds how many distinct providers a retry walks past.
const maxHashWalk = 8

func (p *hashPicker) Pick(ctx context.Context, info PickInfo) (PickResult, error) {
	key := info.HashKey
	if key == "" && p.mdKey != "" {
		key = OutgoingMetadata(ctx)[p.mdKey]
	}
	if key == "" || len(p.hashes) == 0 {
		return PickResult{Endpoint: p.eps[rand.IntN(len(p.eps))]}, nil
	}
	h := keyHash(key)
	// The first point at or after h, wrapping around.
	lo, hi := 0, len(p.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(p.hashes) {
		lo = 0
	}
	skip := min(info.Attempt-1, p.distinct-1, maxHashWalk)
	if skip <= 0 {
		return PickResult{Endpoint: p.slots[p.owners[lo]]}, nil
	}
	// Walk to the skip-th provider after the key's own.
	var seen [maxHashWalk + 1]int32
	seen[0] = p.owners[lo]
	k := 1
	for i, n := lo+1, len(p.hashes); ; i++ {
		if i == n {
			i = 0
		}
		if i == lo {
			break
		}
		s := p.owners[i]
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
