package runtime

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Flow control of streams (docs/protocol.md, "Flow control"): credit-based,
// per stream and per connection, counted in data-frame body bytes.
//
// The sending side of each stream and of the connection has a sendQuota:
// the credit its peer granted and it has not used yet. The receiving side
// has a recvWindow: what it granted, what arrived, and what it can grant
// again. A connection has one of each for itself, and each stream one of
// each (a stream that only sends in one direction leaves the other unused).
//
// The wiring uses them so:
//
//   - Sending a chunk: acquireData(ctx, &stream.send, &conn.send, 1+len)
//     returns n >= 1; the sender puts n-1 bytes of the message in one data
//     frame and queues it. Window updates from the peer go to add (ID 0:
//     the connection's quota); an error from add is a connection error.
//   - Receiving a data frame of n body bytes: conn.recv.consume(n) and
//     stream.recv.consume(n), either error being a connection error; then
//     conn.recv.release(n) at once, as the frame is queued on its stream (or
//     dropped, for a closed stream), and stream.recv.release(n) when the
//     application takes the bytes. A release that returns u > 0 is sent as
//     a window update of u.
//   - Ending a stream: close its sendQuota with the reason, which wakes its
//     sender; closing the connection closes every quota.
//
// Neither type starts goroutines or allocates after init.

// sendQuota is the credit for sending data frames on one stream, or on the
// connection: the peer's window as this side knows it, less what acquire
// has taken. It is safe for concurrent use. Its mutex guards a few integers
// and is never held while waiting. A sender that finds no credit, or finds
// others already waiting, waits for the turn: wake carries it (capacity 1),
// and the channel's FIFO order of receivers hands it to the longest waiting
// sender first; a sender that takes credit and leaves some passes the turn
// on. Senders sharing a connection's quota are thus served in turn, and
// none starves.
type sendQuota struct {
	mu      sync.Mutex
	avail   int64 // credit not taken: 0 <= avail <= maxWindow
	waiters int   // acquire calls waiting for the turn
	err     error // set by close
	wake    chan struct{}
}

// init sets the quota to the initial window the peer announced. It comes
// before any other method.
func (q *sendQuota) init(window int) {
	q.avail = int64(window)
	q.wake = make(chan struct{}, 1)
}

// acquire takes up to n (n >= 1) bytes of credit, at least 1, waiting until
// some is available. It returns what it took, or 0 and the error if the
// quota was closed or ctx ended first. Credit that is there is taken even if
// ctx has ended: the caller checks ctx itself before sending.
func (q *sendQuota) acquire(ctx context.Context, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	q.mu.Lock()
	if q.err == nil && q.avail > 0 && q.waiters == 0 {
		got := q.take(n)
		q.mu.Unlock()
		return got, nil
	}
	q.waiters++
	for {
		if q.err != nil {
			q.waiters--
			err := q.err
			q.mu.Unlock()
			return 0, err
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			q.mu.Lock()
			q.waiters--
			q.mu.Unlock()
			return 0, ctx.Err()
		}
		q.mu.Lock()
		if q.err == nil && q.avail > 0 {
			got := q.take(n)
			q.waiters--
			if q.avail > 0 && q.waiters > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return got, nil
		}
		// A turn passed on before its credit was taken: wait again.
	}
}

// take takes up to n bytes of credit. q.mu is held and q.avail > 0.
func (q *sendQuota) take(n int) int {
	got := min(int64(n), q.avail)
	q.avail -= got
	return int(got)
}

// signal hands the turn to a waiting sender, unless it is already on its
// way. q.mu is held.
func (q *sendQuota) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add adds the increment of a window update (1 to maxWindow; see
// parseWindowUpdate). Credit that would exceed maxWindow is a flow-control
// violation by the peer: add returns a *FrameError and leaves the quota as
// it was. On a closed quota add does nothing.
func (q *sendQuota) add(n int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return nil
	}
	if n <= 0 {
		return &FrameError{Reason: fmt.Sprintf("window increment %d (must be 1 to %d)", n, maxWindow)}
	}
	if q.avail+int64(n) > maxWindow {
		return &FrameError{Reason: fmt.Sprintf("window update of %d overflows the window (%d + %d > %d)", n, q.avail, n, maxWindow)}
	}
	q.avail += int64(n)
	if q.waiters > 0 {
		q.signal()
	}
	return nil
}

// refund gives back credit that acquire took and the sender did not use.
func (q *sendQuota) refund(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.avail = min(q.avail+int64(n), maxWindow)
	if q.waiters > 0 {
		q.signal()
	}
}

// close makes every waiting and later acquire return err (not nil). Only
// the first close counts.
func (q *sendQuota) close(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	close(q.wake)
}

// acquireData takes credit for one data frame of at most n body bytes from
// a stream's quota and then from its connection's, and returns what it
// took from both (at least 1). It takes the stream's first and gives back
// what the connection could not match, so that a sender waiting for its
// own stream's window holds no connection credit that other streams could
// use.
func acquireData(ctx context.Context, stream, conn *sendQuota, n int) (int, error) {
	got, err := stream.acquire(ctx, n)
	if err != nil {
		return 0, err
	}
	c, err := conn.acquire(ctx, got)
	if err != nil {
		stream.refund(got)
		return 0, err
	}
	if c < got {
		stream.refund(got - c)
	}
	return c, nil
}

// recvWindow accounts for the data a peer sends on one stream, or on the
// connection, against the window this side granted. consume is called by
// the connection's reader only; release may be called from any goroutine,
// concurrently with consume. Both are lock-free.
type recvWindow struct {
	window    int64        // the initial window this side announced
	threshold int64        // released bytes worth a window update: half the window
	used      atomic.Int64 // consumed and not yet granted again: the peer's credit is window - used
	released  atomic.Int64 // released and not yet granted again
}

// init sets the window this side announced (minWindow to maxWindow). It
// comes before any other method.
func (w *recvWindow) init(window int) {
	w.window = int64(window)
	w.threshold = (w.window + 1) / 2
}

// consume accounts for a data frame of n body bytes. More than the peer's
// credit is a flow-control violation: consume returns a *FrameError, and the
// connection must be closed.
func (w *recvWindow) consume(n int) error {
	if u := w.used.Add(int64(n)); u > w.window {
		return &FrameError{Reason: fmt.Sprintf("peer sent %d bytes of data with %d bytes of credit (window %d)", n, w.window-(u-int64(n)), w.window)}
	}
	return nil
}

// release accounts for n bytes of consumed data that this side no longer
// holds. It returns the increment of the window update to send, or 0: an
// update is due once at least half the window has been released since the
// last one, so updates are batched.
func (w *recvWindow) release(n int) int {
	r := w.released.Add(int64(n))
	if r < w.threshold || !w.released.CompareAndSwap(r, 0) {
		// Not worth an update yet, or a concurrent release that saw a
		// larger total sends it.
		return 0
	}
	w.used.Add(-r)
	return int(r)
}
