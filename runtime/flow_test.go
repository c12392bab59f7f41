package runtime

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newSendQuota(window int) *sendQuota {
	q := new(sendQuota)
	q.init(window)
	return q
}

func newRecvWindow(window int) *recvWindow {
	w := new(recvWindow)
	w.init(window)
	return w
}

// waiting reports how many acquire calls wait on q.
func (q *sendQuota) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiters
}

func (q *sendQuota) available() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int(q.avail)
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// flowLink is one direction of a connection with its flow control, frames
// delivered at once: the sender's quotas on one side, the receiver's windows
// on the other, and the receiver returning connection credit as frames
// arrive, as docs/protocol.md says.
type flowLink struct {
	connSend sendQuota
	connRecv recvWindow
	maxChunk int
}

type flowStream struct {
	send     sendQuota
	recv     recvWindow
	sent     atomic.Int64 // body bytes sent
	frames   atomic.Int64 // data frames sent
	buffered atomic.Int64 // consumed by the receiver, not released by its application
	peak     atomic.Int64
}

func newFlowLink(connWindow, maxChunk int) *flowLink {
	l := &flowLink{maxChunk: maxChunk}
	l.connSend.init(connWindow)
	l.connRecv.init(connWindow)
	return l
}

func (l *flowLink) newStream(window int) *flowStream {
	s := new(flowStream)
	s.send.init(window)
	s.recv.init(window)
	return s
}

// sendMessage sends a message of n bytes on s in chunks, as the wiring will.
func (l *flowLink) sendMessage(ctx context.Context, s *flowStream, n int) error {
	for rest, first := n, true; rest > 0 || first; first = false {
		got, err := acquireData(ctx, &s.send, &l.connSend, 1+min(rest, l.maxChunk))
		if err != nil {
			return err
		}
		rest -= got - 1
		if err := l.deliver(s, got); err != nil {
			return err
		}
	}
	return nil
}

// deliver is the receiver's reader taking a data frame of n body bytes.
func (l *flowLink) deliver(s *flowStream, n int) error {
	if err := l.connRecv.consume(n); err != nil {
		return err
	}
	if err := s.recv.consume(n); err != nil {
		return err
	}
	s.sent.Add(int64(n))
	s.frames.Add(1)
	b := s.buffered.Add(int64(n))
	for p := s.peak.Load(); b > p && !s.peak.CompareAndSwap(p, b); p = s.peak.Load() {
	}
	if u := l.connRecv.release(n); u > 0 {
		return l.connSend.add(u)
	}
	return nil
}

// read is the receiver's application taking n bytes from s.
func (l *flowLink) read(t *testing.T, s *flowStream, n int) {
	s.buffered.Add(-int64(n))
	if u := s.recv.release(n); u > 0 {
		if err := s.send.add(u); err != nil {
			t.Error(err)
		}
	}
}

// A receiver that does not read stops its sender after exactly one stream
// window; what it reads lets the sender go on, in window updates of half a
// window; other streams on the connection keep flowing meanwhile; and no
// more than one window is ever buffered.
func TestFlowUnreadStreamStopsSenderAfterOneWindow(t *testing.T) {
	const window, chunk, msg = 64 << 10, 16 << 10, 4 << 20
	l := newFlowLink(1<<20, chunk)
	slow, fast := l.newStream(window), l.newStream(window)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { done <- l.sendMessage(ctx, slow, msg) }()

	waitUntil(t, "the sender waits", func() bool { return slow.send.waiting() == 1 })
	if got := slow.sent.Load(); got != window {
		t.Fatalf("sender stopped after %d bytes, want one window (%d)", got, window)
	}

	// The connection's credit came back as frames arrived: another stream
	// sends 8 MiB, far more than the connection window, while the first is
	// stuck.
	fastDone := make(chan error, 1)
	go func() { fastDone <- l.sendMessage(ctx, fast, 2*msg) }()
	l.readUntil(t, fast, fastDone)

	// Reading less than half a window sends no update; the sender stays put.
	l.read(t, slow, window/2-1)
	time.Sleep(10 * time.Millisecond)
	if got, q := slow.sent.Load(), slow.send.available(); got != window || q != 0 {
		t.Fatalf("after reading less than half a window: sent %d, quota %d", got, q)
	}
	// One more byte completes half a window: one update, half a window more.
	l.read(t, slow, 1)
	waitUntil(t, "the sender waits again", func() bool {
		return slow.sent.Load() == window+window/2 && slow.send.waiting() == 1
	})

	// Reading as it arrives lets the message through.
	l.readUntil(t, slow, done)
	// Each frame costs its chunk and the flags byte; where credit ran
	// short, a chunk was cut to what there was.
	if got, frames := slow.sent.Load(), slow.frames.Load(); got != msg+frames || frames < msg/chunk || frames > 2*msg/chunk {
		t.Fatalf("sent %d body bytes in %d frames for a %d-byte message", got, frames, msg)
	}
	if p := slow.peak.Load(); p > window {
		t.Fatalf("receiver buffered %d bytes, more than the window (%d)", p, window)
	}
}

// readUntil reads what arrives on s until done delivers the sender's result.
func (l *flowLink) readUntil(t *testing.T, s *flowStream, done <-chan error) {
	t.Helper()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
		}
		if b := s.buffered.Load(); b > 0 {
			l.read(t, s, int(b))
		} else {
			time.Sleep(10 * time.Microsecond)
		}
	}
}

func TestSendQuotaOverflow(t *testing.T) {
	q := newSendQuota(maxWindow - 10)
	if err := q.add(10); err != nil {
		t.Fatalf("add to exactly the max: %v", err)
	}
	var fe *FrameError
	if err := q.add(1); !errors.As(err, &fe) || !strings.Contains(fe.Reason, "overflows the window (2147483647 + 1 > 2147483647)") {
		t.Fatalf("overflow: %v", err)
	}
	if got := q.available(); got != maxWindow {
		t.Fatalf("a rejected update changed the quota to %d", got)
	}
	if err := q.add(0); !errors.As(err, &fe) || !strings.Contains(fe.Reason, "window increment 0") {
		t.Fatalf("add(0): %v", err)
	}
	if got, _ := q.acquire(context.Background(), 100); got != 100 {
		t.Fatalf("acquired %d", got)
	}
	if err := q.add(100); err != nil {
		t.Fatalf("add after acquire: %v", err)
	}
}

func TestRecvWindowRejectsDataPastTheWindow(t *testing.T) {
	w := newRecvWindow(1024)
	if err := w.consume(1000); err != nil {
		t.Fatal(err)
	}
	var fe *FrameError
	if err := w.consume(25); !errors.As(err, &fe) || !strings.Contains(fe.Reason, "peer sent 25 bytes of data with 24 bytes of credit (window 1024)") {
		t.Fatalf("consume past the window: %v", err)
	}
	w = newRecvWindow(1024)
	if err := w.consume(1024); err != nil {
		t.Fatal(err)
	}
	// Released bytes are credit again only once announced.
	if u := w.release(511); u != 0 {
		t.Fatalf("update of %d for less than half a window", u)
	}
	if err := w.consume(1); err == nil {
		t.Fatal("accepted data for credit not yet granted")
	}
}

func TestRecvWindowBatchesUpdates(t *testing.T) {
	w := newRecvWindow(100)
	if err := w.consume(100); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ release, update int }{{49, 0}, {1, 50}, {30, 0}, {20, 50}} {
		if u := w.release(c.release); u != c.update {
			t.Fatalf("release(%d) = %d, want %d", c.release, u, c.update)
		}
	}
	if err := w.consume(100); err != nil {
		t.Fatalf("a full window after updates: %v", err)
	}

	// Concurrent releases announce every byte once.
	const window = 1 << 16
	w = newRecvWindow(window)
	if err := w.consume(window); err != nil {
		t.Fatal(err)
	}
	var updates atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range window / 8 {
				updates.Add(int64(w.release(1)))
			}
		}()
	}
	wg.Wait()
	if u, r := updates.Load(), w.released.Load(); u+r != window || u < window/2 {
		t.Fatalf("updates %d + unannounced %d, want %d", u, r, window)
	}
}

func TestSendQuotaCloseWakesSenders(t *testing.T) {
	q := newSendQuota(0)
	closed := errors.New("stream reset")
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := q.acquire(context.Background(), 10)
			errs <- err
		}()
	}
	waitUntil(t, "five senders wait", func() bool { return q.waiting() == 5 })
	q.close(closed)
	for range 5 {
		select {
		case err := <-errs:
			if err != closed {
				t.Fatalf("acquire returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("close did not wake a sender")
		}
	}
	if n, err := q.acquire(context.Background(), 10); n != 0 || err != closed {
		t.Fatalf("acquire after close: %d, %v", n, err)
	}
	if err := q.add(10); err != nil {
		t.Fatalf("add after close: %v", err)
	}
	q.refund(10)
	q.close(errors.New("again"))
	if _, err := q.acquire(context.Background(), 1); err != closed {
		t.Fatalf("second close replaced the error: %v", err)
	}
}

func TestSendQuotaContextEndsWait(t *testing.T) {
	q := newSendQuota(0)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := q.acquire(ctx, 10)
		first <- err
	}()
	waitUntil(t, "the first sender waits", func() bool { return q.waiting() == 1 })
	second := make(chan int, 1)
	go func() {
		n, _ := q.acquire(context.Background(), 10)
		second <- n
	}()
	waitUntil(t, "the second sender waits", func() bool { return q.waiting() == 2 })
	cancel()
	if err := <-first; err != context.Canceled {
		t.Fatalf("canceled acquire returned %v", err)
	}
	// The turn is not lost with the sender that left.
	if err := q.add(7); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-second:
		if n != 7 {
			t.Fatalf("second sender got %d", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the remaining sender was not woken")
	}
	if q.waiting() != 0 || q.available() != 0 {
		t.Fatalf("waiters %d, quota %d", q.waiting(), q.available())
	}
}

func TestAcquireDataGivesBackWhatTheConnectionLacks(t *testing.T) {
	stream, conn := newSendQuota(100), newSendQuota(10)
	n, err := acquireData(context.Background(), stream, conn, 50)
	if n != 10 || err != nil || stream.available() != 90 || conn.available() != 0 {
		t.Fatalf("got %d, %v; stream %d, connection %d", n, err, stream.available(), conn.available())
	}
	// Waiting for the connection: its close gives the stream's credit back.
	errs := make(chan error, 1)
	go func() {
		_, err := acquireData(context.Background(), stream, conn, 50)
		errs <- err
	}()
	waitUntil(t, "the sender waits for the connection", func() bool { return conn.waiting() == 1 })
	conn.close(errors.New("connection closed"))
	if err := <-errs; err == nil || stream.available() != 90 {
		t.Fatalf("error %v, stream quota %d", err, stream.available())
	}
}

// Senders waiting on one connection quota are served in turn: with every
// sender waiting, each window update goes to the one that has waited
// longest, whatever it asks for.
func TestSendQuotaTakesTurns(t *testing.T) {
	const rounds = 200
	q := newSendQuota(0)
	wants := []int{1 << 10, 4 << 10, 16 << 10, 64 << 10}
	got := make(chan int, len(wants))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i, want := range wants {
		go func() {
			for {
				if _, err := q.acquire(ctx, want); err != nil {
					return
				}
				got <- i
			}
		}()
	}
	grants := make([]int, len(wants))
	for range rounds {
		waitUntil(t, "every sender waits", func() bool { return q.waiting() == len(wants) })
		// waiting counts a sender from the moment it queues under the
		// lock, a little before it blocks on the turn; let the last one
		// get there, or the turn can go to whoever arrives first.
		time.Sleep(time.Millisecond)
		if err := q.add(1 << 10); err != nil { // what the smallest asks: one grant
			t.Fatal(err)
		}
		grants[<-got]++
	}
	t.Logf("grants in %d rounds to senders asking %v bytes: %v", rounds, wants, grants)
	for i, g := range grants {
		if g < rounds/len(wants)/2 {
			t.Fatalf("sender asking %d bytes got %d of %d grants", wants[i], g, rounds)
		}
	}
}

// Senders asking for different amounts, running freely, share one
// connection window while its credit comes back: each of them gets its
// share of grants in bounded time, none starves.
func TestSendQuotaSharedWithoutStarving(t *testing.T) {
	const window, enough = 16 << 10, 300
	q := newSendQuota(window)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wants := []int{1 << 10, 4 << 10, 16 << 10, 64 << 10}
	grants := make([]atomic.Int64, len(wants))
	var satisfied atomic.Int64
	start := make(chan struct{})
	credit := make(chan int, 1024)
	go func() { // the peer returns credit as data arrives
		for n := range credit {
			if err := q.add(n); err != nil {
				t.Error(err)
			}
		}
	}()
	var wg sync.WaitGroup
	for i, want := range wants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for satisfied.Load() < int64(len(wants)) {
				n, err := q.acquire(ctx, want)
				if err != nil {
					return
				}
				if grants[i].Add(1) == enough {
					satisfied.Add(1)
				}
				credit <- n
			}
		}()
	}
	close(start)
	wg.Wait()
	close(credit)
	counts := make([]int64, len(grants))
	for i := range grants {
		counts[i] = grants[i].Load()
	}
	t.Logf("grants to senders asking %v bytes: %v", wants, counts)
	if ctx.Err() != nil {
		t.Fatalf("a sender starved: %d grants each wanted, got %v", enough, counts)
	}
}

// acquire, add, consume and release allocate nothing.
func TestFlowAllocatesNothing(t *testing.T) {
	q := newSendQuota(1 << 20)
	w := newRecvWindow(1 << 20)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		n, _ := q.acquire(ctx, 1024)
		q.add(n)
		w.consume(1024)
		w.release(1024)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per operation", allocs)
	}
}

func BenchmarkSendQuotaAcquireAdd(b *testing.B) {
	q := newSendQuota(defaultConnWindow)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		n, err := q.acquire(ctx, defaultMaxChunk+1)
		if err != nil {
			b.Fatal(err)
		}
		if err := q.add(n); err != nil {
			b.Fatal(err)
		}
	}
}

// Senders on all Ps share one connection quota whose window holds one
// frame, so they take turns through the wait path.
func BenchmarkSendQuotaContended(b *testing.B) {
	q := newSendQuota(defaultMaxChunk + 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n, err := q.acquire(ctx, defaultMaxChunk+1)
			if err != nil {
				b.Error(err)
				return
			}
			if err := q.add(n); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRecvWindowConsumeRelease(b *testing.B) {
	w := newRecvWindow(defaultStreamWindow)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.consume(defaultMaxChunk + 1); err != nil {
			b.Fatal(err)
		}
		w.release(defaultMaxChunk + 1)
	}
}
