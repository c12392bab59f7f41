package runtime

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
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
	n, err := r.Conn.Read(p)
	if n > 0 && !r.partial {
		r.partial = true
		r.frameStart = r.sc.s.tick.Load()
	}
	return n, err
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
		acts = acts[:0]
		s.mu.RLock()
		for sc := range s.conns {
			if !sc.ready.Load() || sc.closing.Load() {
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
			if started != wd.seen || started != sc.finished.Load() {
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
	sc.s.cfg.logger.Warn("storks: closing connection: "+reason, "remote", sc.c.RemoteAddr().String())
	sc.c.Close()
}

// handshake runs the TLS handshake of a TLS server's connection, bounded by
// the frame timeout (or the idle timeout), and reports whether the
// connection may be used. A client that speaks plaintext Storks is answered,
// in plaintext, with an error saying that the server requires TLS.
func (sc *serverConn) handshake() bool {
	tc, ok := sc.rw.(*tls.Conn)
	if !ok {
		return true
	}
	s := sc.s
	timeout := s.cfg.sec.frameTimeout
	if timeout <= 0 {
		timeout = s.cfg.sec.idleTimeout
	}
	if timeout > 0 {
		sc.c.SetDeadline(time.Now().Add(timeout))
	}
	remote := sc.c.RemoteAddr().String()
	var first [headerSize]byte
	if _, err := io.ReadFull(sc.c, first[:1]); err != nil {
		if !isQuietClose(err) {
			s.cfg.logger.Warn("storks: closing connection: nothing received for the TLS handshake", "remote", remote, "err", err)
		}
		return false
	}
	if first[0] == magic0 {
		// A Storks frame: the client does not use TLS. Tell it, if it sent
		// a header we can answer.
		s.cfg.logger.Warn("storks: closing connection: plaintext client on a TLS server", "remote", remote)
		if _, err := io.ReadFull(sc.c, first[1:]); err == nil && first[1] == magic1 {
			fh, _ := parseHeader(first[:], 1<<31-1)
			b := appendHeader(nil, frameGoAway, 0, 0)
			start := len(b)
			b = appendHeader(b, frameError, fh.id, 0)
			b = appendErrorBody(b, Errorf(CodeUnavailable, "server %s requires TLS; give the client runtime.WithTLSConfig", s.Addr()), errNotExecuted)
			setBodyLen(b[start:])
			sc.c.Write(b)
		}
		return false
	}
	sc.in.prefix = append(sc.in.prefix[:0], first[0])
	if err := tc.HandshakeContext(sc.ctx); err != nil {
		if sc.ctx.Err() == nil {
			s.cfg.logger.Warn("storks: closing connection: TLS handshake failed", "remote", remote, "err", err)
		}
		return false
	}
	if timeout > 0 {
		sc.c.SetDeadline(time.Time{})
	}
	return true
}

func isQuietClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
