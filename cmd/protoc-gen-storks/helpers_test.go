package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/pluginpb"

	"github.com/storks-rpc/storks/internal/gen"
	"github.com/storks-rpc/storks/templates"
)

// Test inputs and outputs.
const (
	protoDir  = "testdata/proto"
	goldenDir = "testdata/golden"
	// goldenModule is the Go import path of goldenDir: the go_package of
	// every test proto starts with it, and module= strips it.
	goldenModule = "github.com/storks-rpc/storks/cmd/protoc-gen-storks/testdata/golden"
)

// protoFiles returns the .proto files under dir, relative to it, sorted.
func protoFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".proto") {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .proto files under %s", dir)
	}
	sort.Strings(files)
	return files
}

// compile compiles files (relative to importDir) as storks generate does,
// with gen.Compile: comments kept, and every dependency (well-known types
// included) in dependency order, as protoc puts them in a
// CodeGeneratorRequest.
func compile(t *testing.T, importDir string, files []string) *gen.Result {
	t.Helper()
	res, err := gen.Compile(context.Background(), gen.Config{ImportPaths: []string{importDir}}, files)
	if err != nil {
		t.Fatalf("compiling %v: %v", files, err)
	}
	return res
}

// runGoAndStorks runs protoc-gen-go and then Storks on the compiled files
// with parameter param, in-process through gen.Generate (as storks generate
// and protoc with --go_out and --storks_out do), and returns the generated
// files by name.
func runGoAndStorks(t *testing.T, res *gen.Result, param string) map[string]string {
	t.Helper()
	files, _ := runGoAndStorksWarnings(t, res, param)
	return files
}

// runGoAndStorksWarnings is runGoAndStorks that also returns the warnings,
// as the plugin binary writes them to stderr (without the newlines).
func runGoAndStorksWarnings(t *testing.T, res *gen.Result, param string) (map[string]string, []string) {
	t.Helper()
	generated, diags, err := gen.Generate(res, []gen.Output{
		{Plugin: gen.Go, Param: param},
		{Plugin: gen.Storks, Param: param},
	})
	if err != nil {
		t.Fatal(err)
	}
	files := make(map[string]string)
	for _, f := range generated {
		files[f.Name] = f.Content
	}
	return files, warningLines(diags)
}

// warningLines returns the lines the plugin writes to stderr for diags.
func warningLines(diags []templates.Diagnostic) []string {
	var lines []string
	for _, d := range diags {
		lines = append(lines, d.Warning())
	}
	return lines
}

// responseFiles returns the files of a successful response by name.
func responseFiles(t *testing.T, resp *pluginpb.CodeGeneratorResponse) map[string]string {
	t.Helper()
	if resp.Error != nil {
		t.Fatalf("generator failed: %s", resp.GetError())
	}
	files := make(map[string]string)
	for _, f := range resp.File {
		if _, dup := files[f.GetName()]; dup {
			t.Fatalf("file %s generated twice", f.GetName())
		}
		files[f.GetName()] = f.GetContent()
	}
	return files
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// diff describes how got differs from want, line by line: the first
// differing line with a little context. It returns "" if they are equal.
func diff(want, got string) string {
	if want == got {
		return ""
	}
	wl := strings.Split(want, "\n")
	gl := strings.Split(got, "\n")
	i := 0
	for i < len(wl) && i < len(gl) && wl[i] == gl[i] {
		i++
	}
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d (want %d lines, got %d):\n", i+1, len(wl), len(gl))
	from := max(0, i-3)
	for j := from; j < i; j++ {
		fmt.Fprintf(&b, "   %s\n", wl[j])
	}
	for j := i; j < min(len(wl), i+5); j++ {
		fmt.Fprintf(&b, "-  %s\n", wl[j])
	}
	for j := i; j < min(len(gl), i+5); j++ {
		fmt.Fprintf(&b, "+  %s\n", gl[j])
	}
	return b.String()
}

// moduleRoot returns the root directory of the module (the directory of
// go.mod), from the package directory tests run in.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return dir
}
