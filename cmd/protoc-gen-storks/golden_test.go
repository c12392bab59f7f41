package main

import (
	"bytes"
	"flag"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under "+goldenDir)

// goldenFiles generates .pb.go and .storks.go for every test proto with
// module=goldenModule, so that names are paths relative to goldenDir.
func goldenFiles(t *testing.T) map[string]string {
	t.Helper()
	files := protoFiles(t, protoDir)
	return runGoAndStorks(t, compile(t, protoDir, files), "module="+goldenModule)
}

// TestGolden compares the generated code for testdata/proto with
// testdata/golden. Run with -update to rewrite the golden files.
func TestGolden(t *testing.T) {
	got := goldenFiles(t)

	if *update {
		if err := os.RemoveAll(goldenDir); err != nil {
			t.Fatal(err)
		}
		for name, content := range got {
			path := filepath.Join(goldenDir, filepath.FromSlash(name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %d golden files", len(got))
		return
	}

	for _, name := range sortedKeys(got) {
		want, err := os.ReadFile(filepath.Join(goldenDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v (run go test -update to create it)", name, err)
			continue
		}
		if d := diff(string(want), got[name]); d != "" {
			t.Errorf("%s differs from the golden file (run go test -update if the change is intended):\n%s", name, d)
		}
	}
	// Golden files nobody generates any more.
	err := filepath.WalkDir(goldenDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(goldenDir, path)
		if err != nil {
			return err
		}
		if _, ok := got[filepath.ToSlash(rel)]; !ok {
			t.Errorf("stale golden file %s (run go test -update to remove it)", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGoldenOnlyServiceFiles checks which .proto files get a .storks.go: all
// with services, none without.
func TestGoldenOnlyServiceFiles(t *testing.T) {
	got := goldenFiles(t)
	var storks []string
	for name := range got {
		if strings.HasSuffix(name, ".storks.go") {
			storks = append(storks, name)
		}
	}
	slices.Sort(storks)
	want := []string{
		"collide/v1/collide.storks.go",
		"editions/v1/editions.storks.go",
		"keywords/keywords.storks.go",
		"multi/v1/multi.storks.go",
		"other/gopkg/other.storks.go",
		"shadow/shadow.storks.go",
		"stream/v1/stream.storks.go",
	}
	if !slices.Equal(storks, want) {
		t.Errorf("generated .storks.go files\n got %q\nwant %q", storks, want)
	}
	// Every .storks.go sits next to the .pb.go of the same file.
	for _, name := range storks {
		pb := strings.TrimSuffix(name, ".storks.go") + ".pb.go"
		if _, ok := got[pb]; !ok {
			t.Errorf("%s has no %s next to it", name, pb)
		}
	}
}

// TestGoldenGofmt checks that every generated file is gofmt-clean.
func TestGoldenGofmt(t *testing.T) {
	for name, content := range goldenFiles(t) {
		formatted, err := format.Source([]byte(content))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(formatted, []byte(content)) {
			t.Errorf("%s is not gofmt-clean:\n%s", name, diff(content, string(formatted)))
		}
	}
}

// TestGoldenDeterministic checks that the order in which protoc lists files
// (which changes the order of ProtoFile and of protogen's Files) does not
// change the output, collision suffixes included.
func TestGoldenDeterministic(t *testing.T) {
	files := protoFiles(t, protoDir)
	first := runGoAndStorks(t, compile(t, protoDir, files), "module="+goldenModule)

	reversed := slices.Clone(files)
	slices.Reverse(reversed)
	second := runGoAndStorks(t, compile(t, protoDir, reversed), "module="+goldenModule)

	for _, name := range sortedKeys(first) {
		if !strings.HasSuffix(name, ".storks.go") {
			continue
		}
		if d := diff(first[name], second[name]); d != "" {
			t.Errorf("%s depends on the order of files in the request:\n%s", name, d)
		}
	}
}

// TestGoldenVet runs go vet, which also type-checks, on the golden
// packages. "./..." from the module root skips testdata directories, but a
// pattern rooted inside testdata matches the packages below it.
func TestGoldenVet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go vet; skipped in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	const pattern = "./" + goldenDir + "/..."
	out, err := exec.Command(goTool, "list", pattern).CombinedOutput()
	if err != nil || !strings.Contains(string(out), goldenModule+"/multi/v1\n") {
		t.Fatalf("go list %s: %v\n%s", pattern, err, out)
	}
	if out, err := exec.Command(goTool, "vet", pattern).CombinedOutput(); err != nil {
		t.Fatalf("go vet %s: %v\n%s", pattern, err, out)
	}
}
