package runtime

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of one request a server handles. It ends when the
// client cancels the call (cancel frame), when the call's deadline passes, or
// when the connection or server closes; the connection cancels it directly,
// so it is not a child of the connection's context. It costs one allocation
// per request, where context.WithCancel costs two and a lock on the parent
// shared by every request of the connection. The Done channel is made only
// if someone asks for it.
//
// It implements AfterFunc, so contexts a handler derives from it with the
// context package do not each start a goroutine to watch it. It also carries
// the request to the goroutine that handles it, which saves the allocation
// of a goroutine closure.
type callCtx struct {
	parent   context.Context // Value lookups only
	deadline time.Time

	// The request, from the connection's reader to the handler goroutine
	// (see Server.dispatch); cleared when the handler takes it.
	sc   *serverConn
	id   uint64
	m    *method
	rh   requestHeader
	body *[]byte

	mu     sync.Mutex
	done   chan struct{}
	err    error
	timer  *time.Timer
	afters map[*afterFunc]struct{}
}

type afterFunc struct{ f func() }

// closedChan is the Done channel of contexts that ended before anyone asked.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newCallCtx(parent context.Context, timeout time.Duration) *callCtx {
	c := &callCtx{parent: parent}
	if timeout > 0 {
		c.deadline = time.Now().Add(timeout)
		c.mu.Lock()
		c.timer = time.AfterFunc(timeout, func() { c.cancel(context.DeadlineExceeded) })
		c.mu.Unlock()
	}
	return c
}

func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *callCtx) Value(key any) any { return c.parent.Value(key) }

func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			c.done = closedChan
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *callCtx) String() string { return "storks request context" }

// AfterFunc arranges for f to run in its own goroutine once c ends, as
// context.AfterFunc does.
func (c *callCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	if c.afters == nil {
		c.afters = make(map[*afterFunc]struct{})
	}
	c.afters[a] = struct{}{}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.afters[a]
		delete(c.afters, a)
		return ok
	}
}

// cancel ends the context with err; later calls do nothing.
func (c *callCtx) cancel(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done == nil {
		c.done = closedChan
	} else {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for a := range afters {
		go a.f()
	}
}
