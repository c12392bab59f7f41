package runtime

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// Limits on the number of connections a server keeps, and how a connection
// over them is refused: it is accepted, each request on it is answered
// with CodeUnavailable and the not-executed flag, naming the limit, after
// goaway (so a Storks client sends the call to another instance, or fails
// it with that error), and it is closed. See the per-connection limits in
// limits.go.

// WithMaxConnections caps the connections a server keeps open at once,
// over all its listeners. A connection over the cap is accepted and
// answered, within a couple of seconds, with goaway and, for each request
// it carries, CodeUnavailable flagged as not executed, naming the limit: a
// Storks client sends the call to another instance, or fails it with that
// error if there is none. It is then closed, and the refusal logged
// (rate-limited). A connection closed frees its place at once. Zero (the
// default) means no limit; a negative value makes Serve fail.
func WithMaxConnections(n int) ServerOption {
	if n < 0 {
		return reject("WithMaxConnections", "limit %d must not be negative (0 means no limit)", n)
	}
	return serverFunc(func(c *serverConfig) { c.sec.maxConns = n })
}

// WithMaxConnectionsPerIP caps the connections a server keeps open at once
// from one client IP address; a connection over it is refused as one over
// WithMaxConnections. Zero (the default) means no limit; a negative value
// makes Serve fail.
func WithMaxConnectionsPerIP(n int) ServerOption {
	if n < 0 {
		return reject("WithMaxConnectionsPerIP", "limit %d must not be negative (0 means no limit)", n)
	}
	return serverFunc(func(c *serverConfig) { c.sec.maxConnsPerIP = n })
}

// maxRefusing bounds the refused connections answered at once; further
// ones are closed without an answer (a client sees a broken connection).
const maxRefusing = 64

// refuseWait bounds how long a refused connection is kept to answer it.
const refuseWait = 2 * time.Second

// maxRefusedBody bounds the body of a frame a refused connection may send
// (its requests are skipped unread): a settings frame is far smaller.
const maxRefusedBody = 1 << 16

// admitLocked checks the connection limits for sc and counts it. It returns
// why sc is refused, or "". s.mu is held.
func (s *Server) admitLocked(sc *serverConn) string {
	sec := &s.cfg.sec
	if n := sec.maxConns; n > 0 && len(s.conns) >= n {
		return fmt.Sprintf("the server is at its limit of %d connections (WithMaxConnections)", n)
	}
	if n := sec.maxConnsPerIP; n > 0 {
		sc.ip = remoteIP(sc.c)
		if s.perIP[sc.ip] >= n {
			return fmt.Sprintf("the server is at its limit of %d connections from %s (WithMaxConnectionsPerIP)", n, sc.ip)
		}
		if s.perIP == nil {
			s.perIP = make(map[string]int)
		}
		s.perIP[sc.ip]++
	}
	return ""
}

// dropConnLocked forgets a connection that ended, freeing its place under
// the limits. s.mu is held.
func (s *Server) dropConnLocked(sc *serverConn) {
	delete(s.conns, sc)
	if sc.ip == "" {
		return
	}
	if s.perIP[sc.ip] <= 1 {
		delete(s.perIP, sc.ip)
	} else {
		s.perIP[sc.ip]--
	}
}

func remoteIP(c net.Conn) string {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	a := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(a); err == nil {
		return host
	}
	return a
}

// refuse logs the refusal of c and starts answering it, or closes it if
// too many are being answered or the server is closed.
func (s *Server) refuse(c net.Conn, reason string) {
	s.warn(warnLimit, "storks: refusing connection: "+reason, "remote", c.RemoteAddr().String())
	s.mu.Lock()
	if s.closed || s.refusals.Load() >= maxRefusing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.refusals.Add(1)
	s.bg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.bg.Done()
		defer s.refusals.Add(-1)
		s.answerRefused(c, reason)
	}()
}

// answerRefused answers a refused connection: the server's settings (to a
// client that sent settings, so that it does not take the server for a
// version 1 one), goaway, and an error for each request, until the client
// closes the connection or refuseWait passes. Request bodies are skipped,
// never kept.
func (s *Server) answerRefused(c net.Conn, reason string) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(time.Now().Add(refuseWait))
	rw := c
	if conf := s.cfg.sec.tls; conf != nil {
		tc := tls.Server(c, conf)
		if err := tc.Handshake(); err != nil {
			return
		}
		rw = tc
	}
	e := Errorf(CodeUnavailable, "server %s refused the connection: %s", s.Addr(), reason)
	var out []byte
	var h [headerSize]byte
	for first := true; ; first = false {
		if _, err := io.ReadFull(rw, h[:]); err != nil {
			return
		}
		maxType := acceptV2
		if first {
			maxType = acceptFirst
		}
		fh, err := parseHeader(h[:], max(maxRefusedBody, s.cfg.maxMessageSize), maxType)
		if err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, rw, int64(fh.len)); err != nil {
			return
		}
		out = out[:0]
		if first {
			if fh.typ == frameSettings {
				out = appendSettings(appendHeader(out, frameSettings, 0, 0), s.ourSettings())
				setBodyLen(out)
			}
			out = appendHeader(out, frameGoAway, 0, 0)
		}
		start := len(out)
		switch fh.typ {
		case frameRequest:
			out = appendErrorBody(appendHeader(out, frameError, fh.id, 0), e, errNotExecuted)
			setBodyLen(out[start:])
		case frameOpen:
			out = appendEnd(appendHeader(out, frameEnd, fh.id, 0), streamEnd{code: e.Code, flags: errNotExecuted, message: e.Message})
			setBodyLen(out[start:])
		case framePing:
			out = appendHeader(out, framePong, fh.id, 0)
		}
		if len(out) > 0 {
			if _, err := rw.Write(out); err != nil {
				return
			}
		}
	}
}
