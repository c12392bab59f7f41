package etcd

import (
	"math/rand/v2"
	"time"
)

// backoff computes capped, jittered, exponentially growing delays.
type backoff struct {
	base, max time.Duration
	cur       time.Duration
}

// next returns the next delay: the current step doubled (up to max), with
// its upper half randomized so that many clients do not retry in lockstep.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.base
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// jitter returns d shortened by up to a fifth, at random.
func jitter(d time.Duration) time.Duration {
	return d - rand.N(d/5+1)
}
