package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
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

// compile compiles files (relative to importDir) with protocompile, keeping
// comments, and returns them with all their dependencies (well-known types
// included) in dependency order, as protoc puts them in a
// CodeGeneratorRequest.
func compile(t *testing.T, importDir string, files []string) []*descriptorpb.FileDescriptorProto {
	t.Helper()
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{importDir}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	compiled, err := c.Compile(context.Background(), files...)
	if err != nil {
		t.Fatalf("compiling %v: %v", files, err)
	}

	var out []*descriptorpb.FileDescriptorProto
	seen := make(map[string]bool)
	var visit func(fd protoreflect.FileDescriptor)
	visit = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			visit(imports.Get(i).FileDescriptor)
		}
		if r, ok := fd.(linker.Result); ok {
			out = append(out, proto.Clone(r.FileDescriptorProto()).(*descriptorpb.FileDescriptorProto))
		} else {
			// Standard imports are Go-generated descriptors.
			out = append(out, protodesc.ToFileDescriptorProto(fd))
		}
	}
	for _, f := range compiled {
		visit(f)
	}
	return out
}

// newRequest builds the request protoc would send for generating files,
// whose descriptors and dependencies are protos, with parameter param.
func newRequest(files []string, param string, protos []*descriptorpb.FileDescriptorProto) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		ProtoFile:      protos,
	}
	if param != "" {
		req.Parameter = proto.String(param)
	}
	return req
}

// runStorks runs the plugin's generator in-process, as protoc would run the
// binary.
func runStorks(t *testing.T, req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	t.Helper()
	gen, err := newOptions().New(req)
	if err != nil {
		// protogen fails here on bad parameters; report it as the plugin
		// would.
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}
	}
	if err := generate(gen); err != nil {
		gen.Error(err)
	}
	return gen.Response()
}

// runGoAndStorks runs protoc-gen-go's generator and then Storks' on req,
// in-process, and returns the generated files by name.
func runGoAndStorks(t *testing.T, req *pluginpb.CodeGeneratorRequest) map[string]string {
	t.Helper()
	gen, err := newOptions().New(req)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range gen.Files {
		if f.Generate {
			gengo.GenerateFile(gen, f)
		}
	}
	if err := generate(gen); err != nil {
		t.Fatal(err)
	}
	return responseFiles(t, gen.Response())
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
