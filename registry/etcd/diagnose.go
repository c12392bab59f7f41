package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// maxDiagnose bounds how long New spends finding out why no member
// answered.
const maxDiagnose = 2 * time.Second

// diagnose is called when no member answered within the dial timeout. The
// gRPC client only reports the deadline then, so it connects to the
// endpoints itself, the way the client would, and returns what went wrong
// with the first one that fails (refused connection, TLS handshake,
// certificate required, plain client on a TLS port), or "" if it finds
// nothing. It costs nothing unless New fails.
func diagnose(ctx context.Context, cfg Config) string {
	ctx, cancel := context.WithTimeout(ctx, min(cfg.DialTimeout, maxDiagnose))
	defer cancel()
	for _, ep := range cfg.Endpoints {
		if ctx.Err() != nil {
			return ""
		}
		if reason := diagnoseEndpoint(ctx, cfg, ep); reason != "" {
			return reason
		}
	}
	return ""
}

func diagnoseEndpoint(ctx context.Context, cfg Config, ep string) string {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		if ctx.Err() != nil {
			return ""
		}
		return fmt.Sprintf("connecting to %s: %v", ep, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(ep)
	if cfg.TLS == nil {
		// A plain client on a TLS port gets no answer at all. Does the
		// server speak TLS?
		tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if tc.HandshakeContext(ctx) == nil {
			return fmt.Sprintf("%s speaks TLS, and this client does not: add tls=true to the URL (and ca=FILE for a private CA) or set Config.TLS", ep)
		}
		return ""
	}
	tcfg := cfg.TLS.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = host
	}
	tcfg.NextProtos = []string{"h2"}
	tc := tls.Client(conn, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return ""
		}
		return fmt.Sprintf("TLS handshake with %s: %v", ep, err)
	}
	// With TLS 1.3 the server checks the client's certificate after the
	// client finished its handshake, and says so in an alert.
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
		hint := ""
		if len(tcfg.Certificates) == 0 && tcfg.GetClientCertificate == nil {
			hint = " (the server may require a client certificate: add cert=FILE&key=FILE to the URL)"
		}
		return fmt.Sprintf("%s rejected the TLS connection: %v%s", ep, err, hint)
	}
	return ""
}
