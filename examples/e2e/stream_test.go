package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/internal/testservers"
	storks "github.com/storks-rpc/storks/runtime"
)

// All three streaming kinds of the generated Echo client, through a real
// etcd, over TLS, with an auth check in stream and unary server
// interceptors and the token added by client interceptors.
func TestStreamsThroughEtcdWithTLSAndAuth(t *testing.T) {
	etcd := testservers.StartEtcd(t)
	url := etcd.URL(fmt.Sprintf("/streams-%d?ttl=%s", time.Now().UnixNano(), ttl))
	serverTLS, clientTLS := testTLS(t)

	const token = "Bearer s3cret"
	var streamsSeen, refused atomic.Int64
	auth := func(ctx context.Context) error {
		if storks.FromIncomingContext(ctx)["authorization"] != token {
			refused.Add(1)
			return storks.Errorf(storks.CodeUnauthenticated, "missing or wrong token")
		}
		return nil
	}
	srv := storks.NewServer(
		storks.WithRegistry(openURL(t, url)),
		storks.WithTLSConfig(serverTLS),
		storks.WithShutdownWait(0),
		storks.WithServerInterceptor(func(ctx context.Context, req any, _ *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
			if err := auth(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		storks.WithStreamServerInterceptor(func(srv any, ss storks.ServerStream, info *storks.StreamServerInfo, h storks.StreamHandler) error {
			if err := auth(ss.Context()); err != nil {
				return err
			}
			streamsSeen.Add(1)
			return h(srv, ss)
		}),
	)
	ex, err := echov1.RegisterEchoServer(srv, &impl.Echo{Name: "tls"})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-served })
	deadline := time.Now().Add(20 * time.Second)
	for ex.State() != storks.ExportRegistered {
		if time.Now().After(deadline) {
			t.Fatalf("export not registered: %v %v", ex.State(), ex.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}

	addToken := func(ctx context.Context) context.Context {
		return storks.NewOutgoingContext(ctx, storks.Metadata{"authorization": token})
	}
	cli, err := storks.NewClient(
		storks.WithRegistry(openURL(t, url)),
		storks.WithTLSConfig(clientTLS),
		storks.WithClientInterceptor(func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
			return inv(addToken(ctx), method, req, reply)
		}),
		storks.WithStreamClientInterceptor(func(ctx context.Context, desc *storks.StreamDesc, method string, streamer storks.Streamer) (storks.ClientStream, error) {
			return streamer(addToken(ctx), desc, method)
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, echov1.Echo_ServiceName, storks.WithRemote(), storks.WithWaitForProvider())
	if err != nil {
		t.Fatal(err)
	}
	echo := echov1.NewEchoClient(ref)

	// Server-streaming.
	count, err := echo.Count(ctx, &echov1.CountRequest{Text: "tick", Times: 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := count.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetBody())
	}
	if strings.Join(got, ",") != "tick 1,tick 2,tick 3,tick 4,tick 5" {
		t.Fatalf("Count: %v", got)
	}
	// Client-streaming.
	collect, err := echo.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if err := collect.Send(&commonv1.Text{Body: s}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := collect.CloseAndRecv()
	if err != nil || res.GetBody() != "abc" {
		t.Fatalf("Collect: %v, %v", res, err)
	}
	// Bidi.
	chat, err := echo.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		body := fmt.Sprint("hi ", i)
		if err := chat.Send(&commonv1.Text{Body: body}); err != nil {
			t.Fatal(err)
		}
		m, err := chat.Recv()
		if err != nil || m.GetBody() != body {
			t.Fatalf("Chat: %v, %v", m, err)
		}
	}
	chat.CloseSend()
	if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Chat end: %v", err)
	}
	if n := streamsSeen.Load(); n != 3 {
		t.Fatalf("the stream server interceptor saw %d streams, want 3", n)
	}

	// Without the token the stream interceptor refuses.
	bare, err := storks.NewClient(storks.WithRegistry(openURL(t, url)), storks.WithTLSConfig(clientTLS))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bare.Close() })
	bref, err := bare.Refer(ctx, echov1.Echo_ServiceName, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := echov1.NewEchoClient(bref).Count(ctx, &echov1.CountRequest{Text: "x", Times: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Recv()
	if storks.CodeOf(err) != storks.CodeUnauthenticated {
		t.Fatalf("a stream without the token: %v, want Unauthenticated", err)
	}
	if refused.Load() == 0 {
		t.Fatal("the auth check refused nothing")
	}
}

// testTLS returns a server config with a certificate for 127.0.0.1 and a
// client config that trusts only its CA.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "storks e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}
