package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// WithTLSConfig makes a Server accept only TLS connections, and a Client
// speak TLS to every provider, with the standard crypto/tls configuration.
//
// A server's config needs a certificate (Certificates, GetCertificate or
// GetConfigForClient); for mutual TLS set ClientAuth and ClientCAs. A client
// verifies the provider with RootCAs (the system pool if nil); when ServerName
// is empty it is set to the host of the provider's registered address, so a
// certificate must name the host or IP address providers register. For mutual
// TLS give the client Certificates. The config is cloned; later changes to it
// have no effect.
//
// A plaintext client calling a TLS server gets CodeUnavailable saying that
// the server requires TLS; a TLS client calling a plaintext server, or one
// that does not trust the server's certificate, gets CodeUnavailable naming
// the TLS handshake failure. Calls to a service exported in the same process
// do not use the network and so do not use TLS.
//
// A nil config, a MinVersion above MaxVersion, and a server config without
// a certificate are errors naming WithTLSConfig.
func WithTLSConfig(c *tls.Config) Option {
	if c == nil {
		return reject("WithTLSConfig", "the *tls.Config is nil")
	}
	if c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return reject("WithTLSConfig", "MinVersion %s is above MaxVersion %s", tls.VersionName(c.MinVersion), tls.VersionName(c.MaxVersion))
	}
	return tlsOption{c}
}

type tlsOption struct{ c *tls.Config }

func (o tlsOption) applyServer(c *serverConfig) {
	if t := o.c; len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		c.invalid("WithTLSConfig", "the server's tls.Config has no certificate (set Certificates or GetCertificate)")
		return
	}
	c.sec.tls = o.c.Clone()
}

func (o tlsOption) applyClient(c *clientConfig) { c.tls = o.c.Clone() }

// secure wraps a freshly dialed provider connection in TLS when the client
// has WithTLSConfig, running the handshake bounded by ctx and the dial
// timeout. On error nc is closed and the error is CodeUnavailable naming the
// TLS failure. Called by (*Client).dial.
func (c *Client) secure(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	conf := c.cfg.tls
	if conf == nil {
		return nc, nil
	}
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(nc, conf)
	hctx := ctx
	if d := c.cfg.dialTimeout; d > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "TLS handshake with "+addr)
		}
		return nil, wrapError(CodeUnavailable, err, "TLS handshake with %s failed: %s", addr, describeTLSError(err))
	}
	return tc, nil
}

// describeTLSError adds a hint to a client's TLS handshake error.
func describeTLSError(err error) string {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fmt.Sprintf("%v (the provider does not seem to speak TLS)", err)
	}
	return err.Error()
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
			s.warn(warnTLS, "storks: closing connection: nothing received for the TLS handshake", "remote", remote, "err", err)
		}
		return false
	}
	if first[0] == magic0 {
		// A Storks frame: the client does not use TLS. Tell it, if it sent
		// a header we can answer.
		s.warn(warnTLS, "storks: closing connection: plaintext client on a TLS server", "remote", remote)
		if _, err := io.ReadFull(sc.c, first[1:]); err == nil && first[1] == magic1 {
			fh, _ := parseHeader(first[:], 1<<31-1, acceptV2)
			b := appendHeader(nil, frameGoAway, 0, 0)
			start := len(b)
			b = appendHeader(b, frameError, fh.id, 0)
			b = appendErrorBody(b, Errorf(CodeUnavailable, "server %s requires TLS; give the client storks.WithTLSConfig", s.Addr()), errNotExecuted)
			setBodyLen(b[start:])
			sc.c.Write(b)
		}
		return false
	}
	sc.in.prefix = append(sc.in.prefix[:0], first[0])
	if err := tc.HandshakeContext(sc.ctx); err != nil {
		if sc.ctx.Err() == nil {
			s.warn(warnTLS, "storks: closing connection: TLS handshake failed", "remote", remote, "err", err)
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
