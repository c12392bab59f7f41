package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// providerPkg is the demo provider that every test runs as a process.
const providerPkg = "github.com/storks-rpc/storks/examples/provider"

var (
	// providerBin is the provider that TestMain built, or "" with buildErr.
	providerBin string
	buildErr    error
	// grpcurlBin is grpcurl's path, or "" with grpcurlErr.
	grpcurlBin string
	grpcurlErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "storks-interop-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	providerBin, buildErr = buildProvider(dir)
	grpcurlBin, grpcurlErr = findGrpcurl()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildProvider builds the provider once, without the race detector, into
// dir.
func buildProvider(dir string) (string, error) {
	bin := filepath.Join(dir, "provider")
	cmd := exec.Command("go", "build", "-o", bin, providerPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", providerPkg, err, out)
	}
	return bin, nil
}

// The go command puts its own GOROOT/bin first on the tests' $PATH, so
// "go" here is the go that runs them.

// findGrpcurl returns $GRPCURL, or else the grpcurl that tools/interop's
// `go tool -n grpcurl` builds (at most a few minutes the first time).
func findGrpcurl() (string, error) {
	if p := os.Getenv("GRPCURL"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("GRPCURL=%s: %v", p, err)
		}
		return p, nil
	}
	cmd := exec.Command("go", "tool", "-n", "grpcurl")
	cmd.Dir = filepath.Join("..", "..", "..", "tools", "interop")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n grpcurl in tools/interop: %v\n%s", err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// missingTool fails the test under CI and skips it elsewhere, saying which
// tool is missing and which make target installs it. Never silent.
func missingTool(t *testing.T, what, target string, err error) {
	t.Helper()
	msg := fmt.Sprintf("%s is missing (run `make %s`): %v", what, target, err)
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// needGrpcurl returns grpcurl's path, or fails or skips the test (see
// missingTool).
func needGrpcurl(t *testing.T) string {
	t.Helper()
	if grpcurlErr != nil {
		missingTool(t, "grpcurl", "deps-grpcurl", grpcurlErr)
	}
	return grpcurlBin
}

// provider is one running examples/provider process.
type provider struct {
	name, addr string
	out        *syncBuffer
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// readyTimeout bounds a provider's start; generous, for a loaded 2-core
// machine.
const readyTimeout = 60 * time.Second

// startProvider runs the provider on 127.0.0.1:0 with the in-process
// registry (it serves callers directly) and the extra flags args, and
// returns once it printed its READY line. The process is killed, and its
// output logged if the test failed, when the test ends.
func startProvider(t *testing.T, name string, args ...string) *provider {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	p := &provider{name: name, out: new(syncBuffer)}
	cmd := exec.Command(providerBin, append([]string{"-registry", "inproc://", "-listen", "127.0.0.1:0", "-name", name}, args...)...)
	cmd.Stderr = p.out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.out, line)
			if f := strings.Fields(line); len(f) == 3 && f[0] == "READY" {
				select {
				case ready <- f[2]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	exited := make(chan struct{})
	var exitErr error
	go func() {
		<-copied // Wait closes the pipe: read it all first.
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("output of provider %s:\n%s", name, p.out.String())
		}
	})
	select {
	case p.addr = <-ready:
	case <-exited:
		t.Fatalf("provider %s exited before READY (%v):\n%s", name, exitErr, p.out.String())
	case <-time.After(readyTimeout):
		t.Fatalf("provider %s not READY after %v:\n%s", name, readyTimeout, p.out.String())
	}
	return p
}

// result is what one grpcurl run printed and how it exited.
type result struct {
	args           []string
	stdout, stderr string
	code           int // exit code; grpcurl exits 64+code on a non-OK status
}

func (r result) String() string {
	return fmt.Sprintf("grpcurl %s\nexit %d\nstdout:\n%s\nstderr:\n%s", shellQuote(r.args), r.code, r.stdout, r.stderr)
}

// grpcurl runs grpcurl with args, bounded in time, and returns what it
// printed. It fails the test only if grpcurl could not run or timed out.
func grpcurl(t *testing.T, args ...string) result {
	t.Helper()
	bin := needGrpcurl(t)
	// -connect-timeout and -max-time bound grpcurl itself; the context is a
	// backstop.
	args = append([]string{"-connect-timeout", "20", "-max-time", "60"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("grpcurl timed out:\n%s", r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("grpcurl %s: %v", shellQuote(args), err)
	}
	return r
}

// ok fails the test unless r exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("grpcurl failed:\n%s", r)
	}
	return r
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " '\"{}:$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// selfSigned writes a fresh self-signed ECDSA certificate for 127.0.0.1
// (and localhost) and its key to dir, as PEM, and returns their paths. The
// certificate is its own CA: clients trust it with grpcurl -cacert.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "storks interop test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
