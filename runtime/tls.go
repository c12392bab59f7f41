package runtime

import (
	"context"
	"crypto/tls"
	"net"
)

// secure wraps a freshly dialed provider connection in TLS when the client
// has WithTLSConfig, running the handshake bounded by ctx and the dial
// timeout. On error nc is closed and the error is CodeUnavailable naming the
// TLS failure (or CodeInvalidArgument for a bad option). Called by
// (*Client).dial.
func (c *Client) secure(ctx context.Context, nc net.Conn, addr string) (net.Conn, error) {
	t := c.cfg.tls
	if t.err != nil {
		nc.Close()
		return nil, t.err
	}
	if t.config == nil {
		return nc, nil
	}
	conf := t.config
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
