package gen

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/storks-rpc/storks/templates"
)

const examplesProto = "../../examples/proto"

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestInputName(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	write(t, filepath.Join(a, "x/one.proto"), "")
	write(t, filepath.Join(b, "x/one.proto"), "")
	write(t, filepath.Join(b, "x/two.proto"), "")
	write(t, filepath.Join(root, "outside.proto"), "")
	dirs := []string{a, b}

	for _, tc := range []struct {
		file, want, err string
	}{
		{file: filepath.Join(a, "x/one.proto"), want: "x/one.proto"},
		{file: "x/one.proto", want: "x/one.proto"},
		{file: "x/two.proto", want: "x/two.proto"},
		{file: filepath.Join(b, "x/two.proto"), want: "x/two.proto"},
		{file: filepath.Join(a, "x/../x/one.proto"), want: "x/one.proto"},
		{file: filepath.Join(b, "x/one.proto"), err: "is shadowed by " + filepath.Join(a, "x/one.proto")},
		{file: filepath.Join(root, "outside.proto"), err: "is not inside any import directory"},
		{file: filepath.Join(a, "x"), err: "is a directory"},
		{file: "x/three.proto", err: "x/three.proto: no such file"},
		{file: "../x/one.proto", err: "no such file"},
	} {
		got, err := inputName(dirs, tc.file)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("inputName(%s) = %q, %v; want error %q", tc.file, got, err, tc.err)
			}
		case err != nil || got != tc.want:
			t.Errorf("inputName(%s) = %q, %v; want %q", tc.file, got, err, tc.want)
		}
	}
}

func TestCompile(t *testing.T) {
	res, err := Compile(context.Background(), Config{ImportPaths: []string{examplesProto}},
		[]string{"echo/v1/echo.proto", examplesProto + "/greeter/v1/greeter.proto", "echo/v1/echo.proto"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"echo/v1/echo.proto", "greeter/v1/greeter.proto"}; !slices.Equal(res.Files, want) {
		t.Errorf("Files = %q, want %q", res.Files, want)
	}
	if len(res.Linked) != 2 || res.Linked[0].Path() != "echo/v1/echo.proto" {
		t.Errorf("Linked = %v", res.Linked)
	}
	var names []string
	for _, p := range res.Protos {
		names = append(names, p.GetName())
	}
	// Depth first, imports in declaration order, every file once.
	want := []string{
		"google/protobuf/timestamp.proto", "common/v1/common.proto", "google/protobuf/empty.proto",
		"echo/v1/echo.proto", "greeter/v1/greeter.proto",
	}
	if !slices.Equal(names, want) {
		t.Errorf("Protos in order %q, want %q", names, want)
	}
	// Comments are kept for generated code.
	if res.Protos[4].GetSourceCodeInfo() == nil {
		t.Error("no source code info")
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.proto"), "syntax = \"proto3\";\nimport \"b.proto\";\nmessage A { B b = 1; C c = 2; }\n")
	write(t, filepath.Join(dir, "b.proto"), "syntax = \"proto3\";\nmessage B { int32 x = 1; int32 y = 1; }\n")
	_, err := Compile(context.Background(), Config{ImportPaths: []string{dir}}, []string{"a.proto"})
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *CompileError", err)
	}
	// Errors name the file on disk, also in imported files.
	if len(ce.Errs) == 0 || !strings.HasPrefix(ce.Errs[0], filepath.Join(dir, "b.proto")+":2:") {
		t.Errorf("errors %q, want the first in %s:2", ce.Errs, filepath.Join(dir, "b.proto"))
	}

	_, err = Compile(context.Background(), Config{ImportPaths: []string{filepath.Join(dir, "nope")}}, []string{"a.proto"})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing import dir: %v", err)
	}
	_, err = Compile(context.Background(), Config{ImportPaths: []string{filepath.Join(dir, "a.proto")}}, []string{"a.proto"})
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("import dir that is a file: %v", err)
	}
	_, err = Compile(context.Background(), Config{}, nil)
	if err == nil {
		t.Error("no files: no error")
	}
}

func TestCompileWarnings(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "w.proto"), "syntax = \"proto3\";\nimport \"google/protobuf/empty.proto\";\nmessage W {}\n")
	var warnings []string
	_, err := Compile(context.Background(), Config{ImportPaths: []string{dir}, Warn: func(m string) { warnings = append(warnings, m) }},
		[]string{"w.proto"})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], filepath.Join(dir, "w.proto")+":2:1: ") {
		t.Errorf("warnings %q", warnings)
	}
}

func TestGenerate(t *testing.T) {
	res, err := Compile(context.Background(), Config{ImportPaths: []string{examplesProto}}, []string{"greeter/v1/greeter.proto"})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	files, warnings, err := Generate(res, []Output{
		{Plugin: Go, Dir: out, Param: "paths=source_relative"},
		{Plugin: Storks, Dir: out, Param: "paths=source_relative"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings for greeter.proto: %v", warnings)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if want := []string{"greeter/v1/greeter.pb.go", "greeter/v1/greeter.storks.go"}; !slices.Equal(names, want) {
		t.Errorf("generated %q, want %q", names, want)
	}
	if err := WriteFiles(files); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "greeter/v1/greeter.storks.go"))
	if err != nil || !strings.HasPrefix(string(b), "// Code generated by protoc-gen-storks. DO NOT EDIT.") {
		t.Errorf("greeter.storks.go: %v\n%.200s", err, b)
	}

	// The same file twice in one directory.
	_, _, err = Generate(res, []Output{{Plugin: Go, Dir: out}, {Plugin: Go, Dir: out + "/."}})
	if err == nil || !strings.Contains(err.Error(), "was already generated by --go_out") {
		t.Errorf("duplicate file: %v", err)
	}
	// A bad parameter is the plugin's error, as protoc reports it.
	_, _, err = Generate(res, []Output{{Plugin: Storks, Dir: out, Param: "bogus=1"}})
	if err == nil || !strings.HasPrefix(err.Error(), "--storks_out: ") {
		t.Errorf("bad parameter: %v", err)
	}
	_, _, err = Generate(res, []Output{{Plugin: Go, Dir: out, Param: "plugins=grpc"}})
	if err == nil || !strings.Contains(err.Error(), "plugins are not supported") {
		t.Errorf("plugins=grpc: %v", err)
	}
}

// TestGenerateChecksSupport checks that, as protoc, Generate refuses a
// file with features the plugin does not declare, and plugin output that
// would escape the output directory.
func TestGenerateChecksSupport(t *testing.T) {
	res, err := Compile(context.Background(), Config{ImportPaths: []string{"../../cmd/protoc-gen-storks/testdata/proto"}},
		[]string{"editions/v1/editions.proto"})
	if err != nil {
		t.Fatal(err)
	}
	old := Plugin{Name: "old", Run: func(*pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic) {
		return &pluginpb.CodeGeneratorResponse{}, nil
	}}
	if _, _, err := Generate(res, []Output{{Plugin: old, Dir: t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "does not support editions") {
		t.Errorf("editions file, plugin without editions: %v", err)
	}
	escape := Plugin{Name: "escape", Run: func(*pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic) {
		return &pluginpb.CodeGeneratorResponse{
			SupportedFeatures: proto.Uint64(uint64(pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)),
			MinimumEdition:    proto.Int32(0),
			MaximumEdition:    proto.Int32(1 << 30),
			File:              []*pluginpb.CodeGeneratorResponse_File{{Name: proto.String("../x.go")}},
		}, nil
	}}
	if _, _, err := Generate(res, []Output{{Plugin: escape, Dir: t.TempDir()}}); err == nil || !strings.Contains(err.Error(), `invalid name "../x.go"`) {
		t.Errorf("file outside the output directory: %v", err)
	}
}
