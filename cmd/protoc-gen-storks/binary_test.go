package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/storks-rpc/storks/internal/gen"
	"github.com/storks-rpc/storks/templates"
)

var (
	buildOnce   sync.Once
	builtPlugin string
	buildErr    error
	buildDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginBinary builds protoc-gen-storks once per test run and returns its
// path.
func pluginBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildErr = os.MkdirTemp("", "protoc-gen-storks-test")
		if buildErr != nil {
			return
		}
		builtPlugin = filepath.Join(buildDir, "protoc-gen-storks")
		out, err := exec.Command(goTool, "build", "-o", builtPlugin, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building protoc-gen-storks: %v", buildErr)
	}
	return builtPlugin
}

// runBinary runs the plugin binary with args and stdin (nil: /dev/null).
func runBinary(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(pluginBinary(t), args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := runBinary(t, nil, "--version")
	if want := "protoc-gen-storks " + templates.Version + "\n"; stdout != want || stderr != "" || code != 0 {
		t.Errorf("--version: stdout %q, stderr %q, exit %d; want %q, \"\", 0", stdout, stderr, code, want)
	}
}

// TestDirectInvocation checks that running the plugin by hand explains how
// to use it and fails, rather than waiting for a request on a terminal or
// silently producing garbage.
func TestDirectInvocation(t *testing.T) {
	for _, args := range [][]string{
		{"x.proto"},
		{"--help"},
		{"--version", "extra"},
		// No arguments, stdin a character device (/dev/null; a terminal
		// behaves the same).
		nil,
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			stdout, stderr, code := runBinary(t, nil, args...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout != "" {
				t.Errorf("wrote to stdout: %q", stdout)
			}
			for _, want := range []string{"protoc plugin", "protoc --go_out=. --storks_out=. x.proto"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr %q does not contain %q", stderr, want)
				}
			}
		})
	}
}

// TestBinaryMatchesInProcess feeds the binary the request protoc would send
// and checks that it answers exactly what the in-process generator (which
// the golden tests use) produces.
func TestBinaryMatchesInProcess(t *testing.T) {
	files := protoFiles(t, protoDir)
	req := gen.NewRequest(files, "module="+goldenModule, compile(t, protoDir, files).Protos)
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runBinary(t, in)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatal(err)
	}
	got := responseFiles(t, &resp)
	want := responseFiles(t, gen.RunStorks(req))
	if len(want) == 0 {
		t.Fatal("in-process generator produced nothing")
	}
	if !equalKeys(got, want) {
		t.Fatalf("binary generated %q, in-process %q", sortedKeys(got), sortedKeys(want))
	}
	for name := range want {
		if d := diff(want[name], got[name]); d != "" {
			t.Errorf("%s:\n%s", name, d)
		}
	}
}

func equalKeys(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
