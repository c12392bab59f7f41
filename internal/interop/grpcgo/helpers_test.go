package grpcgo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// providerBin is the examples/provider program, built by TestMain (without
// the race detector: it is the system under test, not this binary).
var providerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "storks-interop-grpcgo-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpcgo: TestMain:", err)
		os.Exit(1)
	}
	providerBin = filepath.Join(dir, "provider")
	out, err := exec.Command("go", "build", "-o", providerBin, "github.com/storks-rpc/storks/examples/provider").CombinedOutput()
	if err != nil {
		// A failure, never a skip: every test here needs the provider.
		fmt.Fprintf(os.Stderr, "grpcgo: TestMain: go build examples/provider (the go command must be on $PATH): %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// provider is one examples/provider process.
type provider struct {
	name, addr string
	cmd        *exec.Cmd
	ready      chan struct{} // closed at the READY line
	exited     chan struct{} // closed when the process has exited
	exitErr    error         // set before exited is closed

	mu  sync.Mutex
	out strings.Builder // stdout and stderr
}

var readyLine = regexp.MustCompile(`^READY (\S+) (\S+)$`)

// startProvider starts examples/provider registering in the registry at
// url, named name, listening on a free loopback port (args may override
// that with -listen, the last flag wins), and waits for its READY line. It
// is killed when the test ends, and its output is logged if the test
// failed.
func startProvider(t *testing.T, url, name string, args ...string) *provider {
	t.Helper()
	p, err := launch(t, url, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// launch is startProvider, for any goroutine.
func launch(t *testing.T, url, name string, args ...string) (*provider, error) {
	p := &provider{name: name, ready: make(chan struct{}), exited: make(chan struct{})}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(providerBin, append([]string{"-registry", url, "-name", name, "-listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	err = p.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if m := readyLine.FindStringSubmatch(line); m != nil && p.addr == "" {
				p.addr = m[2]
				close(p.ready)
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		<-scanned // the whole output is in p.out
		p.exitErr = err
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("output of provider %s:\n%s", p.name, p.output())
		}
	})
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("provider %s exited (%v) before READY:\n%s", name, p.exitErr, p.output())
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("provider %s not READY after 60s:\n%s", name, p.output())
	}
}

func (p *provider) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// terminate sends SIGTERM, which makes the provider shut down gracefully.
func (p *provider) terminate(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to provider %s: %v", p.name, err)
	}
	return at
}

// waitExit waits for the provider to exit and fails the test unless it
// exited with status 0 within timeout.
func (p *provider) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("provider %s still running %v after SIGTERM:\n%s", p.name, timeout, p.output())
	}
	if p.exitErr != nil {
		t.Fatalf("provider %s: graceful shutdown failed (%v):\n%s", p.name, p.exitErr, p.output())
	}
}

// hasExited reports whether the provider has exited.
func (p *provider) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// dial makes a grpc-go client of target (a host:port, or any target that
// the options' resolvers know), closed when the test ends.
func dial(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if !strings.Contains(target, "://") {
		target = "passthrough:///" + target
	}
	cc, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%q): %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// timeout returns a context that ends after d or when the test ends.
func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// readLines returns the lines of the file at path, none if it does not
// exist.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
