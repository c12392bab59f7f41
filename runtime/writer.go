package runtime

import (
	"net"
	goruntime "runtime"
	"sync"
	"sync/atomic"
)

// connWriter batches frames from many goroutines onto one connection without
// a writer goroutine. A goroutine that finds nobody writing becomes the
// writer: it writes what is queued, then whatever other goroutines queued
// meanwhile, until the queue is empty. A lone caller therefore writes inline
// with no hand-off, and under load one write system call carries many frames.
type connWriter struct {
	conn net.Conn

	// limit, if positive, bounds the bytes queued behind a write in
	// progress: a goroutine whose frame would take the queue past it waits
	// until the writer has taken the queue (a frame larger than limit waits
	// for an empty queue). A peer that does not read its replies thus holds
	// at most about 2*limit bytes, not everything its requests produce.
	limit int
	// clock, if set, is the owner's coarse clock (never 0); busySince holds
	// its value while a write to conn is in progress and 0 otherwise, so
	// that the owner can find writes that are stuck.
	clock     *atomic.Int64
	busySince atomic.Int64
	// congested is set while a goroutine waits for room in the queue, or
	// to write a large frame.
	congested atomic.Bool

	mu       sync.Mutex
	queue    []byte
	spare    []byte
	writing  bool
	err      error
	waiters  int        // goroutines waiting for room to queue a frame
	direct   int        // goroutines waiting to write a large frame themselves
	sleepers int        // all goroutines waiting on room
	room     *sync.Cond // made on first use; signalled when the queue is taken
}

// maxRetainedQueue is the largest queue buffer kept between batches: enough
// for a batch of a thousand callers' small frames, so a busy connection does
// not reallocate its queue on every batch.
const maxRetainedQueue = 1 << 20

// write queues the frame (copying it) and, if no other goroutine is writing,
// writes the queue. It returns the connection's write error, if any. With a
// limit it may wait for room in the queue (see connWriter.limit). A frame of
// directFrame bytes or more is not copied: write returns once it is
// written (writeDirect).
func (w *connWriter) write(frame []byte) error {
	if len(frame) >= directFrame {
		return w.writeDirect(frame)
	}
	return w.send(frame, true)
}

// writeNoWait is write without waiting for room in the queue, for small
// control frames sent from goroutines that must not block on the peer.
func (w *connWriter) writeNoWait(frame []byte) error { return w.send(frame, false) }

func (w *connWriter) send(frame []byte, wait bool) error {
	w.mu.Lock()
	limit := 0
	if wait {
		limit = w.limit
	}
	if err := w.enqueue2(frame, nil, limit); err != nil || w.writing {
		w.mu.Unlock()
		return err
	}
	w.writing = true
	w.mu.Unlock()
	return w.drain()
}

// writeAsync is write for a sender that must not wait for the system
// call: it queues the frame (waiting for room, as write does) and, if no
// goroutine is writing, starts one that writes the queue. A stream's
// sender thus marshals its next message while the previous ones are being
// written, and one write carries many of them. It returns the
// connection's write error if one is known already.
func (w *connWriter) writeAsync(frame []byte) error { return w.writeAsync2(frame, nil) }

// writeAsync2 is writeAsync of the frame made of head and then rest, which
// it copies into the queue as one: a data frame's header and flags, and
// its chunk where it lies in the encoded message.
func (w *connWriter) writeAsync2(head, rest []byte) error {
	w.mu.Lock()
	// Half the queue kept between batches: the queue, grown by append
	// one frame past the limit, then stays within what drain keeps.
	limit := maxRetainedQueue / 2
	if w.limit > 0 {
		limit = min(limit, w.limit)
	}
	if err := w.enqueue2(head, rest, limit); err != nil || w.writing {
		w.mu.Unlock()
		return err
	}
	w.writing = true
	w.mu.Unlock()
	go w.drain()
	return nil
}

// enqueue2 waits, if limit is positive, until the frame made of head and
// then rest fits in limit bytes of queue behind a write in progress (see
// connWriter.limit; a stream's data waits at maxRetainedQueue even on a
// connection without a limit, at half of maxRetainedQueue, so that the
// queue kept between batches is never dropped), then appends the frame to the queue. w.mu is held.
func (w *connWriter) enqueue2(head, rest []byte, limit int) error {
	if limit > 0 {
		for w.err == nil && w.writing && len(w.queue) > 0 && len(w.queue)+len(head)+len(rest) > limit {
			w.waiters++
			w.congested.Store(true)
			w.sleep()
			w.waiters--
			if w.waiters == 0 && w.direct == 0 {
				w.congested.Store(false)
			}
		}
	}
	if w.err != nil {
		return w.err
	}
	w.queue = append(w.queue, head...)
	w.queue = append(w.queue, rest...)
	return nil
}

// drain writes the queue until it is empty; the caller has set writing.
func (w *connWriter) drain() error {
	// Let goroutines that are ready to run queue their frames first: under
	// load one write then carries many frames; when nothing else is
	// runnable, Gosched returns at once.
	goruntime.Gosched()
	w.mu.Lock()
	return w.drainLocked()
}

// drainLocked writes the queue until it is empty, or until a goroutine
// waits to write a large frame itself (which then writes what is queued),
// and gives up the writer's role. w.mu is held, and released on return.
func (w *connWriter) drainLocked() error {
	for len(w.queue) > 0 && w.direct == 0 {
		b := w.queue
		w.queue = w.spare[:0]
		if w.sleepers > 0 {
			w.room.Broadcast()
		}
		w.mu.Unlock()
		if w.clock != nil {
			w.busySince.Store(w.clock.Load())
		}
		_, err := w.conn.Write(b)
		if w.clock != nil {
			w.busySince.Store(0)
		}
		w.mu.Lock()
		if cap(b) <= maxRetainedQueue {
			w.spare = b[:0]
		} else {
			w.spare = nil
		}
		if err != nil {
			w.err = err
			w.queue = nil
			break
		}
	}
	w.writing = false
	if w.sleepers > 0 {
		w.room.Broadcast()
	}
	err := w.err
	w.mu.Unlock()
	return err
}

// fail makes every later write return err.
func (w *connWriter) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	if w.sleepers > 0 {
		w.room.Broadcast()
	}
	w.mu.Unlock()
}

// sleep waits for the queue to be taken or the writer to fail. w.mu is held.
func (w *connWriter) sleep() {
	if w.room == nil {
		w.room = sync.NewCond(&w.mu)
	}
	w.sleepers++
	w.room.Wait()
	w.sleepers--
}

// awaitRoom returns once no goroutine waits for room in the queue or to
// write a large frame, so that a reader stops taking requests whose replies
// cannot be sent. Callers check congested first, which costs nothing when
// the queue flows.
func (w *connWriter) awaitRoom() {
	w.mu.Lock()
	for w.err == nil && w.writing && (w.waiters > 0 || w.direct > 0) {
		w.sleep()
	}
	w.mu.Unlock()
}

// directFrame is the size from which write sends a frame from the caller's
// buffer rather than copying it into the queue.
const directFrame = 32 << 10

// writeDirect writes a large frame without copying it: it waits to be the
// writer (the current writer hands over after its write in progress), then
// writes what is queued and frame with one vectored write, then drains
// what was queued meanwhile, as send does. Frame order is kept: what was
// queued before frame goes before it. It returns once frame is written.
func (w *connWriter) writeDirect(frame []byte) error {
	w.mu.Lock()
	for w.err == nil && w.writing {
		w.direct++
		w.congested.Store(true)
		w.sleep()
		w.direct--
		if w.waiters == 0 && w.direct == 0 {
			w.congested.Store(false)
		}
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.writing = true
	b := w.queue
	w.queue = w.spare[:0]
	if w.sleepers > 0 {
		w.room.Broadcast()
	}
	w.mu.Unlock()
	if w.clock != nil {
		w.busySince.Store(w.clock.Load())
	}
	var err error
	if len(b) == 0 {
		_, err = w.conn.Write(frame)
	} else {
		bufs := net.Buffers{b, frame}
		_, err = bufs.WriteTo(w.conn)
	}
	if w.clock != nil {
		w.busySince.Store(0)
	}
	w.mu.Lock()
	if cap(b) <= maxRetainedQueue {
		w.spare = b[:0]
	} else {
		w.spare = nil
	}
	if err != nil {
		w.err = err
		w.queue = nil
	}
	return w.drainLocked()
}
