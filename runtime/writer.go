package runtime

import (
	"net"
	goruntime "runtime"
	"sync"
)

// connWriter batches frames from many goroutines onto one connection without
// a writer goroutine. A goroutine that finds nobody writing becomes the
// writer: it writes what is queued, then whatever other goroutines queued
// meanwhile, until the queue is empty. A lone caller therefore writes inline
// with no hand-off, and under load one write system call carries many frames.
type connWriter struct {
	conn net.Conn

	mu      sync.Mutex
	queue   []byte
	spare   []byte
	writing bool
	err     error
}

// maxRetainedQueue is the largest queue buffer kept between batches.
const maxRetainedQueue = 256 << 10

// write queues the frame (copying it) and, if no other goroutine is writing,
// writes the queue. It returns the connection's write error, if any.
func (w *connWriter) write(frame []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.queue = append(w.queue, frame...)
	if w.writing {
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	// Let goroutines that are ready to run queue their frames first: under
	// load one write then carries many frames; when nothing else is
	// runnable, Gosched returns at once.
	w.mu.Unlock()
	goruntime.Gosched()
	w.mu.Lock()
	for len(w.queue) > 0 {
		b := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()
		_, err := w.conn.Write(b)
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
	w.mu.Unlock()
}
