package runtime_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate for 127.0.0.1 and localhost, usable by a
// server or a client.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsPeers returns a server config with a certificate from a fresh CA and a
// client config that trusts that CA.
func tlsPeers(t testing.TB) (ca *testCA, server, client *tls.Config) {
	ca = newTestCA(t, "storks test CA")
	server = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "provider")}}
	client = &tls.Config{RootCAs: ca.pool}
	return ca, server, client
}

func TestTLS(t *testing.T) {
	ca, serverConf, clientConf := tlsPeers(t)
	reg := newRegistry(t)
	var logs logBuffer
	srv, lis := startProvider(t, reg, &echoImpl{name: "tls"}, []storks.ServerOption{
		storks.WithTLSConfig(serverConf), storks.WithLogger(logs.logger()), storks.WithFrameTimeout(time.Second),
	})

	t.Run("call over TLS", func(t *testing.T) {
		_, ref := refer(t, reg, []storks.ClientOption{storks.WithTLSConfig(clientConf)})
		for i := range 20 {
			if got, err := callEcho(context.Background(), ref, "hi"); err != nil || got != "tls:hi" {
				t.Fatalf("call %d: %q, %v", i, got, err)
			}
		}
	})

	t.Run("ServerName from the registered host", func(t *testing.T) {
		// The certificate names 127.0.0.1 and localhost; a client whose
		// ServerName is set to another name fails, one without
		// ServerName verifies against the address's host.
		other := clientConf.Clone()
		other.ServerName = "elsewhere.example"
		_, ref := refer(t, reg, []storks.ClientOption{storks.WithTLSConfig(other)})
		_, err := callEcho(context.Background(), ref, "hi")
		wantCode(t, err, storks.CodeUnavailable, "certificate is valid for localhost, not elsewhere.example")
	})

	t.Run("client with the wrong CA", func(t *testing.T) {
		wrong := newTestCA(t, "another CA")
		_, ref := refer(t, reg, []storks.ClientOption{storks.WithTLSConfig(&tls.Config{RootCAs: wrong.pool})})
		start := time.Now()
		_, err := callEcho(context.Background(), ref, "hi")
		wantCode(t, err, storks.CodeUnavailable, "TLS handshake with "+srv.Addr()+" failed: tls: failed to verify certificate: x509: certificate signed by unknown authority")
		t.Logf("wrong CA: %v after %v", err, time.Since(start).Round(time.Millisecond))
	})

	t.Run("plaintext client", func(t *testing.T) {
		_, ref := refer(t, reg, nil)
		start := time.Now()
		_, err := callEcho(context.Background(), ref, "hi")
		wantCode(t, err, storks.CodeUnavailable, "server "+srv.Addr()+" requires TLS; give the client storks.WithTLSConfig")
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("took %v", d)
		}
		t.Logf("plaintext client: %v after %v", err, time.Since(start).Round(time.Millisecond))
		waitFor(t, func() bool { return strings.Contains(logs.String(), "plaintext client on a TLS server") })
	})

	t.Run("mutual TLS", func(t *testing.T) {
		clientCA := newTestCA(t, "client CA")
		mconf := serverConf.Clone()
		mconf.ClientAuth = tls.RequireAndVerifyClientCert
		mconf.ClientCAs = clientCA.pool
		mreg := newRegistry(t)
		startProvider(t, mreg, &echoImpl{name: "mtls"}, []storks.ServerOption{storks.WithTLSConfig(mconf), storks.WithLogger(logs.logger())})

		withCert := clientConf.Clone()
		withCert.Certificates = []tls.Certificate{clientCA.issue(t, "consumer")}
		_, ref := refer(t, mreg, []storks.ClientOption{storks.WithTLSConfig(withCert)})
		if got, err := callEcho(context.Background(), ref, "hi"); err != nil || got != "mtls:hi" {
			t.Fatalf("with a client certificate: %q, %v", got, err)
		}

		_, anon := refer(t, mreg, []storks.ClientOption{storks.WithTLSConfig(clientConf)})
		_, err := callEcho(context.Background(), anon, "hi")
		wantCode(t, err, storks.CodeUnavailable, "certificate required")

		wrongCert := clientConf.Clone()
		wrongCert.Certificates = []tls.Certificate{ca.issue(t, "stranger")}
		_, stranger := refer(t, mreg, []storks.ClientOption{storks.WithTLSConfig(wrongCert)})
		_, err = callEcho(context.Background(), stranger, "hi")
		wantCode(t, err, storks.CodeUnavailable, "certificate")
		t.Logf("client certificate from an untrusted CA: %v", err)
	})

	t.Run("handshake that never comes", func(t *testing.T) {
		raw, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if _, err := io.Copy(io.Discard, raw); err != nil {
			t.Fatalf("server did not close a connection without a handshake: %v", err)
		}
		t.Logf("silent connection closed after %v (frame timeout 1s)", time.Since(start).Round(time.Millisecond))
	})

	if n := lis.accepted.Load(); n < 4 {
		t.Fatalf("server accepted %d connections", n)
	}
}

// A TLS client against a plaintext server fails at once and says why; the
// server logs that the client speaks TLS.
func TestTLSClientPlaintextServer(t *testing.T) {
	_, _, clientConf := tlsPeers(t)
	reg := newRegistry(t)
	var logs logBuffer
	startProvider(t, reg, &echoImpl{name: "plain"}, []storks.ServerOption{storks.WithLogger(logs.logger())})
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithTLSConfig(clientConf)})
	start := time.Now()
	_, err := callEcho(context.Background(), ref, "hi")
	wantCode(t, err, storks.CodeUnavailable, "the provider does not seem to speak TLS")
	if !strings.Contains(err.Error(), "TLS handshake with") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	t.Logf("TLS client, plaintext server: %v after %v", err, time.Since(start).Round(time.Millisecond))
	waitFor(t, func() bool {
		return strings.Contains(logs.String(), "the peer speaks TLS but this side has no TLS config")
	})
}

func TestTLSConfigIsChecked(t *testing.T) {
	srv := storks.NewServer(storks.WithTLSConfig(&tls.Config{}))
	defer srv.Close()
	err := srv.Serve(listen(t))
	wantCode(t, err, storks.CodeInvalidArgument, "WithTLSConfig: the server's tls.Config has no certificate")

	cli, err := storks.NewClient(storks.WithTLSConfig(nil))
	if cli != nil {
		t.Error("NewClient returned a client with its error")
	}
	wantCode(t, err, storks.CodeInvalidArgument, "WithTLSConfig: the *tls.Config is nil")

	_, err = storks.NewClient(storks.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}))
	wantCode(t, err, storks.CodeInvalidArgument, "WithTLSConfig: MinVersion TLS 1.3 is above MaxVersion TLS 1.2")
}
