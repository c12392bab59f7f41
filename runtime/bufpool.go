package runtime

import (
	"math/bits"
	"sync"
)

// Large buffers (over maxPooled bytes: the bodies and frames of large
// messages) are pooled in size classes, so that a server or client busy
// with large messages reuses its buffers instead of allocating each one
// anew. There are four classes per power of two, 1.25, 1.5, 1.75 and 2
// times it, so a buffer is at most a quarter larger than asked for; the
// largest class is 4 GiB, the largest frame. As with any sync.Pool, an
// idle buffer is released by the second garbage collection after it was
// returned.

// numLargeClasses is the number of classes: 80 KiB to 4 GiB.
const numLargeClasses = (32 - 16) * 4

var largePools [numLargeClasses]sync.Pool

// largeClass returns the class of the smallest buffer that holds n bytes,
// n > maxPooled, and the size of that class. The class is numLargeClasses
// or more if n is over the largest.
func largeClass(n int) (class, size int) {
	e := bits.Len(uint(n-1)) - 1 // 2^e < n <= 2^(e+1)
	step := 1 << (e - 2)
	q := (n - 1<<e + step - 1) / step // 1..4
	return (e-16)*4 + q - 1, 1<<e + q*step
}

// largeClassFloor returns the class of the largest size that fits in a
// buffer of capacity c, or -1 if there is none.
func largeClassFloor(c int) int {
	if c <= maxPooled {
		return -1
	}
	e := bits.Len(uint(c)) - 1 // 2^e <= c < 2^(e+1)
	q := (c - 1<<e) / (1 << (e - 2))
	class := (e-16)*4 + q - 1
	if class < 0 || class >= numLargeClasses {
		return -1
	}
	return class
}

// getLarge returns an empty buffer with room for n > maxPooled bytes.
func getLarge(n int) *[]byte {
	class, size := largeClass(n)
	if class >= numLargeClasses {
		b := make([]byte, 0, n)
		return &b
	}
	if bp, _ := largePools[class].Get().(*[]byte); bp != nil {
		*bp = (*bp)[:0]
		return bp
	}
	b := make([]byte, 0, size)
	return &b
}

// putLarge returns a buffer of more than maxPooled bytes to its pool.
func putLarge(bp *[]byte) {
	class := largeClassFloor(cap(*bp))
	if class < 0 {
		return
	}
	*bp = (*bp)[:0]
	largePools[class].Put(bp)
}
