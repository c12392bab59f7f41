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
// the golden tests use) produces, and writes its warnings to stderr.
func TestBinaryMatchesInProcess(t *testing.T) {
	files := protoFiles(t, protoDir)
	req := gen.NewRequest(files, "module="+goldenModule, compile(t, protoDir, files).Protos)
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runBinary(t, in)
	wantResp, diags := gen.RunStorks(req)
	if len(diags) == 0 {
		t.Fatal("no warnings for the golden protos")
	}
	if wantStderr := strings.Join(warningLines(diags), "\n") + "\n"; code != 0 || stderr != wantStderr {
		t.Fatalf("exit %d, stderr:\n%s\nwant 0 and:\n%s", code, stderr, wantStderr)
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatal(err)
	}
	got := responseFiles(t, &resp)
	want := responseFiles(t, wantResp)
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

// TestBinaryWarnings runs the binary on the colliding protos, unary and
// streaming: the warnings go to stderr, and stdout stays a
// CodeGeneratorResponse with the generated files and no error.
func TestBinaryWarnings(t *testing.T) {
	files := []string{"collide/v1/collide.proto", "collide/v1/collide_types.proto", "streamcollide/v1/streamcollide.proto"}
	req := gen.NewRequest(files, "module="+goldenModule, compile(t, protoDir, files).Protos)
	in, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runBinary(t, in)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{
		"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: FooClient collides with message FooClient (collide/v1/collide_types.proto) in package collidev1; generated as FooClient_\n",
		"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method Recv: Pipe_RecvClient collides with message Pipe_RecvClient in package streamcollidev1; the grpc-go-style alias of its client stream type is omitted\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatalf("stdout is not a CodeGeneratorResponse: %v", err)
	}
	got := responseFiles(t, &resp)
	_, collide := got["collide/v1/collide.storks.go"]
	if _, stream := got["streamcollide/v1/streamcollide.storks.go"]; !collide || !stream || len(got) != 2 {
		t.Errorf("generated %q, want collide/v1/collide.storks.go and streamcollide/v1/streamcollide.storks.go", sortedKeys(got))
	}
}

// TestProtocPassesWarnings runs protoc with the binary: protoc passes the
// warnings through to its stderr and succeeds. Without protoc the test is
// skipped, except on CI (CI=true), where it fails.
func TestProtocPassesWarnings(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("protoc is required on CI: %v", err)
		}
		t.Skipf("protoc not found: %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("protoc", "-I", protoDir, "--plugin=protoc-gen-storks="+pluginBinary(t),
		"--storks_out="+out, "--storks_opt=module="+goldenModule,
		"streamcollide/v1/streamcollide.proto", "streamcollide/v1/streamcollide_types.proto")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, stderr.String())
	}
	var want []string
	for _, w := range goldenWarnings {
		if strings.Contains(w, "streamcollide/v1/streamcollide.proto") {
			want = append(want, w+"\n")
		}
	}
	if got := stderr.String(); got != strings.Join(want, "") || stdout.Len() != 0 {
		t.Errorf("protoc stdout %q, stderr:\n%s\nwant no stdout and:\n%s", stdout.String(), got, strings.Join(want, ""))
	}
	if _, err := os.Stat(filepath.Join(out, "streamcollide/v1/streamcollide.storks.go")); err != nil {
		t.Error(err)
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
