package runtime

import (
	"errors"
	"net"
	"os"
	"time"
)

// How a server guards its connections against slow or hostile clients.
//
// A watchdog goroutine per Server (started by the first Serve, when a frame
// or idle timeout is set) sweeps the connections every sweepInterval and
// advances the server's coarse clock, Server.tick. The hot path only reads
// that clock and publishes state with an atomic store when it changes:
//
//   - connReader.Read publishes, in serverConn.readSince, the clock value at
//     which the first byte of the frame being read arrived, whenever it must
//     wait for more bytes of it; 0 when the frame is complete or none has
//     started. A frame still incomplete frameTimeout after its first byte
//     closes the connection.
//   - connWriter publishes in busySince when a write to the connection
//     started; a write still blocked after frameTimeout (the client stopped
//     reading) closes the connection. The writer's queue is bounded
//     (maxQueuedReplies), so handlers wait rather than pile up replies.
//   - serverConn.started and finished count requests handed to a handler
//     and answered; their difference is checked against the per-connection
//     cap before a request is dispatched. A connection with no request
//     running and none started for idleTimeout is sent goaway, so a Storks
//     client closes it as soon as its last reply arrives and dials afresh
//     for its next call; one that ignores goaway is closed a frame timeout
//     later, once it has no call running.

// DefaultFrameTimeout is how long a server waits for the rest of a frame once
// its first byte has arrived, and how long one write of replies to a client
// may take. A client that trickles a frame, announces a large frame and then
// stalls, or stops reading its replies is disconnected after it.
const DefaultFrameTimeout = 30 * time.Second

// DefaultIdleTimeout is how long a server keeps a connection that has no call
// running and sends no request. It then sends goaway, so the client closes
// the connection and dials again on its next call; nothing is lost.
const DefaultIdleTimeout = 5 * time.Minute

// DefaultMaxConcurrentRequests is the number of requests one connection may
// have running on a server at once.
const DefaultMaxConcurrentRequests = 10000

// WithFrameTimeout sets how long a server waits for the rest of a frame once
// its first byte has arrived (and for a TLS handshake to complete), and how
// long one write of replies to a client may block (default
// DefaultFrameTimeout). A connection that exceeds it is closed and the reason
// logged: this is what frees a server from clients that trickle bytes,
// announce a large frame and stall, or stop reading. Zero disables it; a
// negative value makes Serve fail.
func WithFrameTimeout(d time.Duration) ServerOption {
	if d < 0 {
		return reject("WithFrameTimeout", "frame timeout %v must not be negative (0 disables it)", d)
	}
	return serverFunc(func(c *serverConfig) { c.sec.frameTimeout = d })
}

// WithIdleTimeout sets how long a server keeps a connection on which no call
// is running and no request arrives (default DefaultIdleTimeout). Pings do
// not count as activity. The server then sends goaway: a Storks client
// closes the connection once its last reply is in and dials again for its
// next call, so no call fails. A client that keeps the connection open
// anyway is disconnected one frame timeout later. Zero disables it; a
// negative value makes Serve fail.
func WithIdleTimeout(d time.Duration) ServerOption {
	if d < 0 {
		return reject("WithIdleTimeout", "idle timeout %v must not be negative (0 disables it)", d)
	}
	return serverFunc(func(c *serverConfig) { c.sec.idleTimeout = d })
}

// WithMaxConcurrentRequests caps the requests one connection may have
// running on the server at once (default DefaultMaxConcurrentRequests). A
// request over the cap is not run and not queued: it is answered at once
// with CodeResourceExhausted, flagged as not executed. Zero removes the cap;
// a negative value makes Serve fail.
func WithMaxConcurrentRequests(n int) ServerOption {
	if n < 0 {
		return reject("WithMaxConcurrentRequests", "limit %d must not be negative (0 means no limit)", n)
	}
	return serverFunc(func(c *serverConfig) { c.sec.maxConcurrent = n })
}

// maxQueuedReplies bounds the reply bytes queued on a server connection
// behind a write in progress.
const maxQueuedReplies = 1 << 20

// connReader is what a server connection's frames are read through (below
// TLS, if any). Only the connection's reader goroutine uses it.
type connReader struct {
	net.Conn
	sc         *serverConn
	prefix     []byte // bytes read while sniffing for TLS, returned first
	partial    bool   // bytes of the frame being read have arrived
	frameStart int64  // Server.tick when they did
	published  int64  // the value last stored in sc.readSince

	// Idle detection (connread.go): while the connection holds a read
	// buffer, a read deadline is armed every idleRelease; when it
	// expires during a wait for a frame and no byte arrived since it was
	// armed, Read returns errIdle and the buffer is given back.
	hold       bool // the connection holds a read buffer
	armed      bool // the idle deadline is set
	active     bool // bytes arrived since it was
	noDeadline bool // the connection does not support deadlines
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.prefix) > 0 {
		n := copy(p, r.prefix)
		r.prefix = r.prefix[n:]
		return n, nil
	}
	var want int64
	if r.partial {
		want = r.frameStart
	}
	if want != r.published {
		r.sc.readSince.Store(want)
		r.published = want
	}
	if r.hold && !r.armed && !r.partial && !r.noDeadline {
		r.arm()
	}
	for {
		n, err := r.Conn.Read(p)
		if n > 0 {
			r.active = true
			if !r.partial {
				r.partial = true
				r.frameStart = r.sc.s.tick.Load()
			}
		}
		if n > 0 || !r.armed || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		// The idle deadline: idle if no byte came since it was armed.
		r.armed = false
		if r.hold && !r.partial && !r.active {
			r.Conn.SetReadDeadline(time.Time{})
			return 0, errIdle
		}
		if r.hold && !r.partial {
			r.arm()
		} else {
			r.Conn.SetReadDeadline(time.Time{})
		}
	}
}

// arm sets the idle deadline.
func (r *connReader) arm() {
	if err := r.Conn.SetReadDeadline(time.Now().Add(idleRelease)); err != nil {
		r.noDeadline = true
		return
	}
	r.armed, r.active = true, false
}

// disarm ends idle detection for good: the connection is handed to the
// gRPC server, which reads it its own way.
func (r *connReader) disarm() {
	r.hold = false
	if r.armed {
		r.armed = false
		_ = r.Conn.SetReadDeadline(time.Time{})
	}
}

// frameStarted is called by the reader goroutine when the first byte of a
// frame is available to it.
func (r *connReader) frameStarted() {
	if !r.partial {
		r.partial = true
		r.frameStart = r.sc.s.tick.Load()
	}
}

// frameDone is called by the reader goroutine after each frame.
func (r *connReader) frameDone() {
	r.partial = false
	if r.published != 0 {
		r.sc.readSince.Store(0)
		r.published = 0
	}
}

// sweepInterval is how often the watchdog runs: a tenth of the shortest
// timeout, between 5 ms and 1 s. Timeouts are enforced within two intervals.
func (c *serverSecurity) sweepInterval() time.Duration {
	var d time.Duration
	for _, t := range []time.Duration{c.frameTimeout, c.idleTimeout} {
		if t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	return min(max(d/10, 5*time.Millisecond), time.Second)
}

// goAwayGrace is how long a client that was sent goaway for being idle may
// keep its connection.
func (c *serverSecurity) goAwayGrace() time.Duration {
	if c.frameTimeout > 0 {
		return c.frameTimeout
	}
	return DefaultFrameTimeout
}

// watch is the watchdog; see the comment at the top of this file.
func (s *Server) watch() {
	defer s.bg.Done()
	sec := &s.cfg.sec
	interval := sec.sweepInterval()
	ft, it := int64(sec.frameTimeout), int64(sec.idleTimeout)
	slack := int64(interval) // the clock lags by up to one interval
	grace := int64(sec.goAwayGrace())
	t := time.NewTicker(interval)
	defer t.Stop()
	type action struct {
		sc     *serverConn
		reason string
		goAway bool
	}
	var acts []action
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := int64(time.Since(s.epoch)) + 1
		s.tick.Store(now)
		s.flushWarnings(false)
		acts = acts[:0]
		s.mu.RLock()
		for sc := range s.conns {
			if !sc.ready.Load() || sc.closing.Load() || sc.version.Load() == versionGRPC {
				continue // handshakes have a deadline of their own
			}
			wd := &sc.wd
			if ft > 0 {
				if since := sc.readSince.Load(); since != 0 && now-since >= ft+slack {
					acts = append(acts, action{sc: sc, reason: "frame not complete " + sec.frameTimeout.String() + " after its first byte (slow or stalled client)"})
					continue
				}
				if since := sc.w.busySince.Load(); since != 0 && now-since >= ft+slack {
					acts = append(acts, action{sc: sc, reason: "replies not read by the client for " + sec.frameTimeout.String()})
					continue
				}
			}
			if it <= 0 {
				continue
			}
			started := sc.started.Load()
			if started != wd.seen || started != sc.finished.Load() || sc.nstreams.Load() > 0 {
				wd.seen, wd.busy = started, now
				continue
			}
			switch {
			case wd.goAwayAt == 0 && now-wd.busy >= it+slack:
				wd.goAwayAt = now
				acts = append(acts, action{sc: sc, goAway: true})
			case wd.goAwayAt != 0 && now-wd.goAwayAt >= grace && now-wd.busy >= grace:
				acts = append(acts, action{sc: sc, reason: "idle connection kept open " + time.Duration(grace).String() + " after goaway"})
			}
		}
		s.mu.RUnlock()
		for _, a := range acts {
			if a.goAway {
				s.cfg.logger.Debug("storks: idle connection: sending goaway", "remote", a.sc.c.RemoteAddr().String(), "idle", sec.idleTimeout)
				// The write may block on a client that does not read;
				// the watchdog must not.
				s.bg.Add(1)
				go func(sc *serverConn) {
					defer s.bg.Done()
					sc.goAway()
				}(a.sc)
				continue
			}
			a.sc.closeFor(a.reason)
		}
		clear(acts)
	}
}

// closeFor closes the connection, logging why.
func (sc *serverConn) closeFor(reason string) {
	if sc.closing.Swap(true) {
		return
	}
	sc.s.warn(warnTimeout, "storks: closing connection: "+reason, "remote", sc.c.RemoteAddr().String())
	sc.c.Close()
}
