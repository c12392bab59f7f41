package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// storksBin is the storks binary the tests run, built once by TestMain
// (with -race when the tests run with -race).
var storksBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "storks-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	storksBin = filepath.Join(dir, "storks")
	args := []string{"build", "-o", storksBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command(goTool(), append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building storks: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// goTool returns the go command.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// moduleRoot is the repository root, relative to this package's directory:
// the binary runs there, so that paths like examples/proto work.
const moduleRoot = "../.."

// result is what a run of the binary produced.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runStorks runs the binary with args in the module root and returns what it
// printed. $STORKS_REGISTRY is unset for it.
func runStorks(t *testing.T, args ...string) result {
	t.Helper()
	return storksStdin(t, nil, args...)
}

// storksStdin is runStorks with stdin.
func storksStdin(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := storksCmd(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		r.code = exitErr.ExitCode()
	default:
		t.Fatalf("storks %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// storksCmd returns the command that runs the binary with args in the
// module root, without $STORKS_REGISTRY.
func storksCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, storksBin, args...)
	cmd.Dir = moduleRoot
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STORKS_REGISTRY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// mustSucceed fails the test unless r is a successful run without any
// output on stderr.
func mustSucceed(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want success and no stderr, got %s", r)
	}
}

// checkOneLineError checks that r failed with exit code, nothing on stdout
// and exactly one line on stderr, "storks: ..." containing want, and no Go
// stack trace.
func checkOneLineError(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\n%s", r.code, code, r)
	}
	if r.stdout != "" {
		t.Errorf("stdout not empty:\n%s", r)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic") {
		t.Errorf("stderr has a stack trace:\n%s", r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is %d lines, want one:\n%s", len(lines), r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "storks: ") {
		t.Errorf("stderr does not start with \"storks: \":\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
	}
}

// lineReader collects the lines a running process writes, for tests that
// wait for output.
type lineReader struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{} // closed and replaced on every new line or EOF
	done  bool
}

func newLineReader(r io.Reader) *lineReader {
	lr := &lineReader{cond: make(chan struct{})}
	go func() {
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := r.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				lr.add(string(buf[:i]), false)
				buf = buf[i+1:]
			}
			if err != nil {
				if len(buf) > 0 {
					lr.add(string(buf), false)
				}
				lr.add("", true)
				return
			}
		}
	}()
	return lr
}

func (lr *lineReader) add(line string, eof bool) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if eof {
		lr.done = true
	} else {
		lr.lines = append(lr.lines, line)
	}
	close(lr.cond)
	lr.cond = make(chan struct{})
}

// waitFor waits until a line after the first `from` lines satisfies ok, and
// returns its index.
func (lr *lineReader) waitFor(t *testing.T, from int, what string, ok func(string) bool) int {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		lr.mu.Lock()
		for i := from; i < len(lr.lines); i++ {
			if ok(lr.lines[i]) {
				lr.mu.Unlock()
				return i
			}
		}
		done, cond, all := lr.done, lr.cond, strings.Join(lr.lines, "\n")
		lr.mu.Unlock()
		if done {
			t.Fatalf("output ended without %s; output:\n%s", what, all)
		}
		select {
		case <-cond:
		case <-deadline:
			t.Fatalf("no %s within 30s; output:\n%s", what, all)
		}
	}
}

func (lr *lineReader) String() string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return strings.Join(lr.lines, "\n")
}
