package testservers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// etcdTLSFiles are the PEM files of a test CA, a server certificate for
// 127.0.0.1 and localhost, and a client certificate, all in dir.
type etcdTLSFiles struct {
	dir                   string
	ca                    string
	serverCert, serverKey string
	clientCert, clientKey string
	caCert                *x509.Certificate
	clientPair            tls.Certificate
}

// newEtcdTLSFiles generates a CA and the server and client certificates it
// signs (ECDSA P-256, valid for a day) and writes them to dir.
func newEtcdTLSFiles(dir string) (*etcdTLSFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f := &etcdTLSFiles{
		dir:        dir,
		ca:         filepath.Join(dir, "ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"),
		serverKey:  filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client-key.pem"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "storks test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	if f.caCert, err = x509.ParseCertificate(caDER); err != nil {
		return nil, err
	}
	if err := etcdWritePEM(f.ca, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage []x509.ExtKeyUsage, ips []net.IP, dns []string, certPath, keyPath string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  usage,
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := etcdWritePEM(certPath, "CERTIFICATE", der); err != nil {
			return err
		}
		return etcdWritePEM(keyPath, "EC PRIVATE KEY", keyDER)
	}
	// The server certificate also serves as a client certificate: the
	// embedded server's gateway dials the server with it.
	if err := leaf(2, "127.0.0.1", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"}, f.serverCert, f.serverKey); err != nil {
		return nil, err
	}
	if err := leaf(3, "storks-client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		nil, nil, f.clientCert, f.clientKey); err != nil {
		return nil, err
	}
	if f.clientPair, err = tls.LoadX509KeyPair(f.clientCert, f.clientKey); err != nil {
		return nil, fmt.Errorf("loading the client certificate: %w", err)
	}
	return f, nil
}

func etcdWritePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// clientConfig trusts the CA and presents the client certificate.
func (f *etcdTLSFiles) clientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(f.caCert)
	return &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{f.clientPair},
		MinVersion:   tls.VersionTLS12,
	}
}
