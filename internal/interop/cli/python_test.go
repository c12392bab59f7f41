package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Debian's Python, protoc and gRPC plugin (make deps-python): their
// versions match one another (protoc and python3-protobuf 3.21.12, grpcio
// 1.51). A python3 earlier on $PATH (pyenv, a venv) does not see Debian's
// grpcio, and another protoc may generate code that this protobuf runtime
// refuses, so the paths are fixed.
const (
	python     = "/usr/bin/python3"
	protoc     = "/usr/bin/protoc"
	grpcPlugin = "/usr/bin/grpc_python_plugin"
)

// needPython fails or skips the test (see missingTool) unless Debian's
// Python with grpcio and protobuf, protoc and the gRPC plugin are there.
func needPython(t *testing.T) {
	t.Helper()
	for _, p := range []string{python, protoc, grpcPlugin} {
		if _, err := exec.LookPath(p); err != nil {
			missingTool(t, p, "deps-python", err)
		}
	}
	if out, err := exec.Command(python, "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		missingTool(t, "Python's grpcio or protobuf", "deps-python", fmt.Errorf("%v: %s", err, out))
	}
}

// TestPythonClient: stubs that Debian's protoc generates for greeter.proto
// let a Python grpcio client call a Storks provider, with a deadline and
// the storks-version metadata, and read its error statuses.
func TestPythonClient(t *testing.T) {
	needPython(t)
	stubs := t.TempDir()
	gen := exec.Command(protoc, "--python_out="+stubs, "--grpc_python_out="+stubs,
		"--plugin=protoc-gen-grpc_python="+grpcPlugin,
		"-I", filepath.Join("..", "..", "..", "examples", "proto"), "greeter/v1/greeter.proto")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(gen.Args, " "), err, out)
	}

	p := startProvider(t, "py-provider", "-version", "v2")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, filepath.Join("testdata", "greeter_client.py"),
		"--addr", p.addr, "--name", "Python", "--version", "v2")
	cmd.Env = append(os.Environ(), "PYTHONPATH="+stubs, "PYTHONDONTWRITEBYTECODE=1", "PYTHONNOUSERSITE=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("greeter_client.py: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("greeter_client.py printed:\n%s", stdout.String())
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		k, v, _ := strings.Cut(l, " ")
		lines[k] = v
	}

	var reply struct{ Message, Provider string }
	if err := json.Unmarshal([]byte(lines["reply"]), &reply); err != nil || reply.Message != "Hello, Python" || reply.Provider != "py-provider" {
		t.Errorf("reply %q (%v), want message \"Hello, Python\" from py-provider", lines["reply"], err)
	}
	if u := lines["unversioned"]; !strings.HasPrefix(u, "UNIMPLEMENTED ") || !strings.Contains(u, "v2") {
		t.Errorf("call without storks-version: %q, want UNIMPLEMENTED naming v2", u)
	}
	if f := lines["fail"]; f != "PERMISSION_DENIED not for Python" {
		t.Errorf("Fail: %q, want PERMISSION_DENIED not for Python", f)
	}
	switch h := lines["health"]; {
	case strings.HasPrefix(h, "skipped:"):
		// Debian's python3-grpcio has no grpc_health; the grpcurl test
		// covers grpc.health.v1.
		t.Logf("Python health check %s", h)
	case h != "SERVING":
		t.Errorf("health %q, want SERVING", h)
	}
}
