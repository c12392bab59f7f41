package runtime

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	goruntime "runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/types/known/wrapperspb"
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
		if got > float64(n)/2 && !raceEnabled {
			t.Errorf("%d-byte frame: %.0f bytes allocated per read, want buffers reused", n, got)
		}
	}
}

// A large message is encoded into a pooled buffer of its size class.
func TestAppendMessagePresizes(t *testing.T) {
	msg := wrapperspb.Bytes(bytes.Repeat([]byte{'x'}, 1<<20))
	var codec Codec = ProtoCodec{}
	var last []byte
	got := allocatedPerRun(20, func() {
		bp := getBuf(headerSize + 1024)
		b := appendHeader(*bp, frameRequest, 1, 0)
		bp, b, err := appendMessage(codec, bp, b, msg)
		if err != nil {
			t.Fatal(err)
		}
		last = b
		*bp = b
		putBuf(bp)
	})
	if _, size := largeClass(len(last)); cap(last) != size {
		t.Errorf("a %d-byte frame is in a buffer of %d bytes, want its class's %d", len(last), cap(last), size)
	}
	if got > float64(len(last))/2 && !raceEnabled {
		t.Errorf("%.0f bytes allocated per 1 MiB message encoded, want buffers reused", got)
	}
}

// recordingConn records what is written to it, and the address of each
// buffer written.
type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	buf   bytes.Buffer
	addrs []*byte
	delay time.Duration
}

func (c *recordingConn) Write(p []byte) (int, error) {
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if len(p) > 0 {
		c.addrs = append(c.addrs, unsafe.SliceData(p))
	}
	return len(p), nil
}

// A large frame is written from the caller's buffer, not copied into the
// queue, and frames keep their order: each goroutine's frames arrive in
// the order it wrote them, whole, small and large mixed.
func TestWriterLargeFramesDirect(t *testing.T) {
	conn := &recordingConn{delay: 50 * time.Microsecond}
	w := &connWriter{conn: conn, limit: 1 << 20}
	large := largeFrame(100 << 10)
	if err := w.write(large); err != nil {
		t.Fatal(err)
	}
	if len(conn.addrs) != 1 || conn.addrs[0] != unsafe.SliceData(large) {
		t.Fatal("a large frame was copied before it was written")
	}

	conn.buf.Reset()
	const writers, frames = 8, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range frames {
				n := 10
				if i%5 == g%5 {
					n = 40<<10 + g // large
				}
				f := appendHeader(nil, frameResponse, uint64(g)<<32|uint64(i), n)
				f = append(f, bytes.Repeat([]byte{byte(i)}, n)...)
				if err := w.write(f); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	next := make([]int, writers)
	r := bytes.NewReader(conn.buf.Bytes())
	for r.Len() > 0 {
		var h [headerSize]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			t.Fatal(err)
		}
		id := binary.BigEndian.Uint64(h[4:12])
		g, i := int(id>>32), int(uint32(id))
		body := make([]byte, binary.BigEndian.Uint32(h[12:16]))
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		if i != next[g] || !bytes.Equal(body, bytes.Repeat([]byte{byte(i)}, len(body))) {
			t.Fatalf("goroutine %d: frame %d (%d bytes) after %d, or torn", g, i, len(body), next[g]-1)
		}
		next[g]++
	}
	for g, n := range next {
		if n != frames {
			t.Fatalf("goroutine %d: %d frames written, want %d", g, n, frames)
		}
	}
	if cap(w.spare) >= directFrame || cap(w.queue) >= directFrame {
		t.Errorf("the queue grew to %d bytes: large frames were copied into it", max(cap(w.spare), cap(w.queue)))
	}
}
