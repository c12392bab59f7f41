package runtime

import (
	"strconv"
	"sync"
	"time"
)

// The warnings a server logs about one connection (a bad frame, a frame
// or write timeout, a failed TLS handshake, a refusal at a connection
// limit) are rate-limited: a flood of hostile connections would otherwise
// log one line each. Each kind of warning gets at most warnBurst lines per
// warnWindow; past that the lines are counted, and once the window is over
// one line says how many were suppressed. The limiter is lazy (no
// goroutine): the summary is logged by the next warning of that kind after
// the window, by the watchdog's next sweep, or by Close.

// warnKind is what a connection warning is about; each kind is limited on
// its own, so a flood of one does not hide the others.
type warnKind uint8

const (
	warnProtocol  warnKind = iota // a malformed or unexpected frame or request
	warnTooLarge                  // a frame over the message size limit
	warnTruncated                 // a connection closed in the middle of a frame
	warnTimeout                   // closed by the watchdog: frame, write or idle timeout
	warnTLS                       // a TLS handshake that failed or never started
	warnLimit                     // refused at a connection limit
	warnStream                    // a stream ended for a stream error
	numWarnKinds
)

var warnKindNames = [numWarnKinds]string{
	warnProtocol:  "protocol error",
	warnTooLarge:  "frame too large",
	warnTruncated: "truncated frame",
	warnTimeout:   "timeout",
	warnTLS:       "TLS",
	warnLimit:     "connection limit",
	warnStream:    "stream error",
}

const (
	warnBurst  = 10          // lines per kind per window
	warnWindow = time.Second // the window
)

// warnLimiter counts the warnings of each kind in the current window.
type warnLimiter struct {
	mu    sync.Mutex
	kinds [numWarnKinds]warnCount
}

type warnCount struct {
	start      time.Time // of the window; zero before the first warning
	logged     int
	suppressed int
	last       string // the message of the last suppressed warning
}

// warnSummary is the line that reports suppressed warnings.
type warnSummary struct {
	kind       warnKind
	suppressed int
	window     time.Duration
	last       string
}

// allow reports whether a warning of kind k may be logged now, and returns
// the summary of the window that just ended, if it suppressed anything.
func (l *warnLimiter) allow(k warnKind, msg string, now time.Time) (ok bool, sum warnSummary) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &l.kinds[k]
	if c.start.IsZero() || now.Sub(c.start) >= warnWindow {
		sum = c.end(k, now)
		c.start = now
	}
	if c.logged < warnBurst {
		c.logged++
		return true, sum
	}
	c.suppressed++
	c.last = msg
	return false, sum
}

// end closes the window, returning its summary, and starts none.
func (c *warnCount) end(k warnKind, now time.Time) warnSummary {
	sum := warnSummary{kind: k, suppressed: c.suppressed, window: now.Sub(c.start), last: c.last}
	*c = warnCount{}
	return sum
}

// flush ends every window that is over (all of them if force) and returns
// the summaries of those that suppressed warnings.
func (l *warnLimiter) flush(now time.Time, force bool) []warnSummary {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []warnSummary
	for k := range l.kinds {
		c := &l.kinds[k]
		if c.suppressed == 0 || (!force && now.Sub(c.start) < warnWindow) {
			continue
		}
		out = append(out, c.end(warnKind(k), now))
	}
	return out
}

// warn logs a warning about a connection, rate-limited by kind.
func (s *Server) warn(k warnKind, msg string, args ...any) {
	ok, sum := s.warns.allow(k, msg, time.Now())
	s.logSuppressed(sum)
	if ok {
		s.cfg.logger.Warn(msg, args...)
	}
}

// flushWarnings logs the summaries of the windows that are over (of every
// window if force).
func (s *Server) flushWarnings(force bool) {
	for _, sum := range s.warns.flush(time.Now(), force) {
		s.logSuppressed(sum)
	}
}

func (s *Server) logSuppressed(sum warnSummary) {
	if sum.suppressed == 0 {
		return
	}
	s.cfg.logger.Warn("storks: suppressed "+strconv.Itoa(sum.suppressed)+" similar warnings in the last "+sum.window.Round(10*time.Millisecond).String(),
		"kind", warnKindNames[sum.kind], "last", sum.last)
}
