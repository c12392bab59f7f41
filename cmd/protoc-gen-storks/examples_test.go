package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const examplesModule = "github.com/storks-rpc/storks/examples/gen"

// generatedFiles returns the generated Go files (*.pb.go, *.storks.go)
// under dir by slash-separated relative path. Hand-written files (doc.go)
// are not included.
func generatedFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := make(map[string]string)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".pb.go") && !strings.HasSuffix(path, ".storks.go") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestExamplesMatchProtoc regenerates examples/gen with the real protoc,
// through scripts/gen.sh, into a temporary directory and checks that the
// result equals the checked-in examples/gen byte for byte. Without protoc
// the test is skipped, except on CI (CI=true), where it fails.
func TestExamplesMatchProtoc(t *testing.T) {
	for _, tool := range []string{"protoc", "bash", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required on CI to check examples/gen: %v", tool, err)
			}
			t.Skipf("%s not found, cannot check examples/gen against protoc: %v", tool, err)
		}
	}
	root := moduleRoot(t)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "gen")
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "gen.sh"), out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BIN="+filepath.Join(tmp, "bin"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/gen.sh: %v\n%s", err, b)
	}

	want := generatedFiles(t, filepath.Join(root, "examples", "gen"))
	got := generatedFiles(t, out)
	if len(got) == 0 {
		t.Fatal("scripts/gen.sh generated nothing")
	}
	for _, name := range sortedKeys(got) {
		w, ok := want[name]
		if !ok {
			t.Errorf("examples/gen/%s is missing; run scripts/gen.sh", name)
			continue
		}
		if d := diff(w, got[name]); d != "" {
			t.Errorf("examples/gen/%s is out of date; run scripts/gen.sh:\n%s", name, d)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("examples/gen/%s is not generated any more; run scripts/gen.sh", name)
		}
	}
}

// TestExamplesWithoutProtoc compiles examples/proto in-process (as a
// protoc-free "storks generate" would) and checks that the .storks.go files
// equal those protoc produced in examples/gen byte for byte: the output of
// the generator depends only on the descriptors.
func TestExamplesWithoutProtoc(t *testing.T) {
	root := moduleRoot(t)
	protoRoot := filepath.Join(root, "examples", "proto")
	files := protoFiles(t, protoRoot)
	got := runGoAndStorks(t, newRequest(files, "module="+examplesModule, compile(t, protoRoot, files)))
	want := generatedFiles(t, filepath.Join(root, "examples", "gen"))

	n := 0
	for _, name := range sortedKeys(got) {
		if !strings.HasSuffix(name, ".storks.go") {
			continue
		}
		n++
		if d := diff(want[name], got[name]); d != "" {
			t.Errorf("%s differs from examples/gen (run scripts/gen.sh?):\n%s", name, d)
		}
	}
	for name := range want {
		if _, ok := got[name]; strings.HasSuffix(name, ".storks.go") && !ok {
			t.Errorf("examples/gen/%s is not generated in-process", name)
		}
	}
	if n == 0 {
		t.Fatal("no .storks.go generated for examples/proto")
	}
}
