package runtime

import (
	"bufio"
	"bytes"
	"io"
	goruntime "runtime"
	"testing"
)

// Every size over maxPooled has a class at most a quarter larger, and a
// buffer of a class's size goes back to that class.
func TestLargeClasses(t *testing.T) {
	prev := -1
	for n := maxPooled + 1; n <= 64<<20; n += 1 + n/97 {
		class, size := largeClass(n)
		if size < n || size > n+n/4+1 {
			t.Fatalf("class of %d bytes: %d (%d bytes)", n, class, size)
		}
		if class < prev || class > prev+1 && prev >= 0 {
			t.Fatalf("class of %d bytes: %d after %d", n, class, prev)
		}
		prev = class
		if got := largeClassFloor(size); got != class {
			t.Fatalf("a buffer of %d bytes (class %d) goes back to class %d", size, class, got)
		}
		if got := largeClassFloor(size - 1); got != class-1 {
			t.Fatalf("a buffer of %d bytes goes back to class %d, want %d", size-1, got, class-1)
		}
	}
	if c, _ := largeClass(maxFrameBody + headerSize); c < numLargeClasses {
		t.Fatalf("a frame over 4 GiB has class %d", c)
	}
	// A large buffer returned is reused (the race detector's pool drops
	// some at random: try a few times).
	reused := false
	for range 20 {
		b := getBuf(1 << 20)
		putBuf(b)
		if getBuf(1<<20) == b {
			reused = true
			break
		}
	}
	if !reused {
		t.Error("a 1 MiB buffer returned with putBuf is never reused")
	}
}

// allocatedPerRun returns the bytes f allocates per run, on average.
func allocatedPerRun(runs int, f func()) float64 {
	f()
	f()
	var m0, m1 goruntime.MemStats
	goruntime.ReadMemStats(&m0)
	for range runs {
		f()
	}
	goruntime.ReadMemStats(&m1)
	return float64(m1.TotalAlloc-m0.TotalAlloc) / float64(runs)
}

func largeFrame(n int) []byte {
	f := appendHeader(make([]byte, 0, headerSize+n), frameResponse, 1, n)
	return f[:headerSize+n]
}

// Nothing is allocated for a body whose bytes have not arrived, whatever
// its header announces; a body that arrives is read into one pooled
// buffer of its size class, reused from frame to frame.
func TestReadBodyAllocatesAsBytesArrive(t *testing.T) {
	r := bufio.NewReaderSize(nil, 32<<10)
	var src bytes.Reader
	read := func(data []byte) error {
		src.Reset(data)
		r.Reset(&src)
		_, body, err := readFrame(r, 4<<20, acceptV1)
		putBuf(body)
		return err
	}
	for _, n := range []int{16 << 10, 64 << 10, 1 << 20, 4<<20 - 100} {
		frame := largeFrame(n)
		// The header and a little of the body, then the peer stalls (here:
		// closes).
		if got := allocatedPerRun(50, func() {
			if err := read(frame[:headerSize+100]); err != io.ErrUnexpectedEOF {
				t.Fatalf("truncated frame: %v", err)
			}
		}); got > 1024 {
			t.Errorf("%d-byte frame announced, 100 bytes sent: %.0f bytes allocated for it", n, got)
		}
		// The whole frame: a pooled buffer. Before pooling by size class
		// a 1 MiB body cost 1.7 MiB of buffers, every time.
		got := allocatedPerRun(20, func() {
			if err := read(frame); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%d-byte frame: %.0f bytes allocated per read", n, got)
		if got > float64(n)/2 {
			t.Errorf("%d-byte frame: %.0f bytes allocated per read, want buffers reused", n, got)
		}
	}
}
