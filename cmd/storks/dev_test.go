package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// devServer is a running "storks dev".
type devServer struct {
	cmd    *exec.Cmd
	url    string
	stdout *lineReader
	stderr *lineReader
	exited chan struct{} // closed when the process has exited
	err    error         // of cmd.Wait, once exited is closed
}

var devURL = regexp.MustCompile(`^etcd://127\.0\.0\.1:[0-9]+/storks$`)

// startDev runs "storks dev --listen 127.0.0.1:0" with the extra args and
// waits for the URL it prints first. The process is killed when the test
// ends if it still runs.
func startDev(t *testing.T, args ...string) *devServer {
	t.Helper()
	cmd := storksCmd(context.Background(), append([]string{"dev", "--listen", "127.0.0.1:0"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devServer{cmd: cmd, stdout: newLineReader(stdout), stderr: newLineReader(stderr), exited: make(chan struct{})}
	go func() { d.err = cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		// Stop it as a user would, so that it removes its data; kill it
		// if that fails.
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-d.exited
		}
	})
	d.stdout.waitFor(t, 0, "registry URL", func(string) bool { return true })
	d.url = strings.Split(d.stdout.String(), "\n")[0]
	if !devURL.MatchString(d.url) {
		t.Fatalf("first line of stdout %q is not etcd://127.0.0.1:PORT/storks; stderr:\n%s", d.url, d.stderr)
	}
	return d
}

// endpoint returns host:port of the URL.
func (d *devServer) endpoint() string {
	return strings.TrimSuffix(strings.TrimPrefix(d.url, "etcd://"), "/storks")
}

// interrupt sends SIGINT and returns the exit code.
func (d *devServer) interrupt(t *testing.T) int {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		var ee *exec.ExitError
		if errors.As(d.err, &ee) {
			return ee.ExitCode()
		}
		if d.err != nil {
			t.Fatal(d.err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("storks dev did not stop within 30s of SIGINT; stderr:\n%s", d.stderr)
		return -1
	}
}

func etcdClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestDev(t *testing.T) {
	d := startDev(t)

	// It is a real etcd.
	cli := etcdClient(t, d.endpoint())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/storks-test/k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	resp, err := cli.Get(ctx, "/storks-test/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}

	m := regexp.MustCompile(`temporary directory (\S+), removed on exit`).FindStringSubmatch(d.stderr.String())
	if m == nil {
		t.Fatalf("stderr does not name the temporary data directory:\n%s", d.stderr)
	}
	dataDir := m[1]
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatalf("data directory: %v", err)
	}

	if code := d.interrupt(t); code != 0 {
		t.Errorf("exit code after SIGINT %d, want 0; stderr:\n%s", code, d.stderr)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("temporary data directory %s not removed: %v", dataDir, err)
	}
	if lines := strings.Split(d.stdout.String(), "\n"); len(lines) != 1 {
		t.Errorf("stdout has more than the URL:\n%s", d.stdout)
	}
}

func TestDevDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	d := startDev(t, "--data-dir", dir)
	if code := d.interrupt(t); code != 0 {
		t.Errorf("exit code after SIGINT %d, want 0; stderr:\n%s", code, d.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "member")); err != nil {
		t.Errorf("data directory not kept: %v", err)
	}
}

func TestDevSIGTERM(t *testing.T) {
	d := startDev(t)
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		if d.err != nil {
			t.Errorf("after SIGTERM: %v; stderr:\n%s", d.err, d.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("storks dev did not stop within 30s of SIGTERM")
	}
}
