package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
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
// with the first one that fails, or "" if it finds nothing. rejected
// reports that a server answered but rejected the client or does not speak
// its protocol (a TLS handshake that fails, a client certificate required,
// a plain client on a TLS port, HTTP/1 on the port): a mistake in the
// configuration, which New reports, as opposed to a server that cannot be
// reached (a refused connection, no answer), which New does not fail for.
// It costs nothing unless New fails to read from the cluster.
func diagnose(ctx context.Context, cfg Config) (reason string, rejected bool) {
	ctx, cancel := context.WithTimeout(ctx, min(cfg.DialTimeout, maxDiagnose))
	defer cancel()
	for _, ep := range cfg.Endpoints {
		if ctx.Err() != nil {
			break
		}
		r, rej := diagnoseEndpoint(ctx, cfg, ep)
		if rej {
			return r, true
		}
		if reason == "" {
			reason = r
		}
	}
	return reason, false
}

func diagnoseEndpoint(ctx context.Context, cfg Config, ep string) (string, bool) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		if ctx.Err() != nil {
			return "", false
		}
		return fmt.Sprintf("connecting to %s: %v", ep, err), false
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
			return fmt.Sprintf("%s speaks TLS, and this client does not: add tls=true to the URL (and ca=FILE for a private CA) or set Config.TLS", ep), true
		}
		return diagnoseHTTP2(ctx, ep)
	}
	tcfg := cfg.TLS.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = host
	}
	tcfg.NextProtos = []string{"h2"}
	tc := tls.Client(conn, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return "", false
		}
		return fmt.Sprintf("TLS handshake with %s: %v", ep, err), true
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
		return fmt.Sprintf("%s rejected the TLS connection: %v%s", ep, err, hint), true
	}
	return "", false
}

// http2Preface opens an HTTP/2 connection: the client preface and an empty
// SETTINGS frame.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + "\x00\x00\x00\x04\x00\x00\x00\x00\x00"

// diagnoseHTTP2 opens an HTTP/2 connection to ep, as a plain gRPC client
// does, and reports a server that answers HTTP/1 instead (an HTTP API on
// the port, such as Consul's). A server that answers HTTP/2, closes the
// connection or says nothing is not found wrong.
func diagnoseHTTP2(ctx context.Context, ep string) (string, bool) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ep)
	if err != nil {
		return "", false
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte(http2Preface)); err != nil {
		return "", false
	}
	b := make([]byte, 64)
	n, _ := io.ReadAtLeast(conn, b, 8)
	b = b[:n]
	if !bytes.HasPrefix(b, []byte("HTTP/")) {
		return "", false
	}
	status, _, _ := bytes.Cut(b, []byte("\r\n"))
	return fmt.Sprintf("%s answers HTTP/1 (%q), not etcd's gRPC: is it the client port of an etcd member (usually 2379)?", ep, status), true
}
