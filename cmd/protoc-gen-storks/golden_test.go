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
		"streamcollide/v1/streamcollide.storks.go",
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

// goldenWarnings are the warnings for testdata/proto, in the order of the
// files in the request (sorted here), each service's in declaration order.
var goldenWarnings = []string{
	// Foo's identifiers taken by protoc-gen-go's declarations of
	// collide_types.proto, a file of the same Go package.
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: Foo_ServiceName collides with value ServiceName of enum Foo.Kind (collide/v1/collide_types.proto) in package collidev1; generated as Foo_ServiceName_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: FooClient collides with message FooClient (collide/v1/collide_types.proto) in package collidev1; generated as FooClient_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: UnimplementedFooServer collides with message UnimplementedFooServer (collide/v1/collide_types.proto) in package collidev1; generated as UnimplementedFooServer_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: RegisterFooServer collides with enum RegisterFooServer (collide/v1/collide_types.proto) in package collidev1; generated as RegisterFooServer_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: Foo_ServiceDesc collides with value ServiceDesc of enum Foo.Kind (collide/v1/collide_types.proto) in package collidev1; generated as Foo_ServiceDesc_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: method Bar: Foo_Bar_FullMethodName collides with the wrapper of field Foo.Bar_FullMethodName of oneof Foo.choice (collide/v1/collide_types.proto) in package collidev1; generated as Foo_Bar_FullMethodName_",
	// get and Get are both Get in Go.
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo: method Get: Get collides with the Go name of method get; generated as Get_",
	// foo is Foo in Go: every identifier is Foo's, some of them renamed
	// already.
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: Foo_ServiceName collides with value ServiceName of enum Foo.Kind (collide/v1/collide_types.proto), and Foo_ServiceName_ with the name constant of service Foo, in package collidev1; generated as Foo_ServiceName__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: FooClient collides with message FooClient (collide/v1/collide_types.proto), and FooClient_ with the client interface of service Foo, in package collidev1; generated as FooClient__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: fooClient collides with the client type of service Foo in package collidev1; generated as fooClient_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: NewFooClient collides with the client constructor of service Foo in package collidev1; generated as NewFooClient_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: FooServer collides with the server interface of service Foo in package collidev1; generated as FooServer_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: UnimplementedFooServer collides with message UnimplementedFooServer (collide/v1/collide_types.proto), and UnimplementedFooServer_ with the unimplemented server of service Foo, in package collidev1; generated as UnimplementedFooServer__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: UnsafeFooServer collides with the unsafe server interface of service Foo in package collidev1; generated as UnsafeFooServer_",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: RegisterFooServer collides with enum RegisterFooServer (collide/v1/collide_types.proto), and RegisterFooServer_ with the registration function of service Foo, in package collidev1; generated as RegisterFooServer__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: Foo_ServiceDesc collides with value ServiceDesc of enum Foo.Kind (collide/v1/collide_types.proto), and Foo_ServiceDesc_ with the service descriptor of service Foo, in package collidev1; generated as Foo_ServiceDesc__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service foo: method Bar: Foo_Bar_FullMethodName collides with the wrapper of field Foo.Bar_FullMethodName of oneof Foo.choice (collide/v1/collide_types.proto), and Foo_Bar_FullMethodName_ with the full method name constant of method Bar of service Foo, in package collidev1; generated as Foo_Bar_FullMethodName__",
	"protoc-gen-storks: warning: collide/v1/collide.proto: service Foo_Bar: method Baz: Foo_Bar_Baz_FullMethodName collides with the full method name constant of method Bar_Baz of service Foo in package collidev1; generated as Foo_Bar_Baz_FullMethodName_",
	// Stream type aliases whose names are taken: by a message, by the
	// interfaces of another service (which keeps them), by an enum value of
	// streamcollide_types.proto, by the aliases of an earlier service.
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method Recv: Pipe_RecvClient collides with message Pipe_RecvClient in package streamcollidev1; the grpc-go-style alias of its client stream type is omitted",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method Send: Pipe_SendClient collides with the client interface of service Pipe_Send in package streamcollidev1; the grpc-go-style alias of its client stream type is omitted",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method Send: Pipe_SendServer collides with the server interface of service Pipe_Send in package streamcollidev1; the grpc-go-style alias of its server stream type is omitted",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method get: Pipe_GetServer collides with value GetServer of enum Pipe (streamcollide/v1/streamcollide_types.proto) in package streamcollidev1; the grpc-go-style alias of its server stream type is omitted",
	// Streaming methods are renamed as unary ones are.
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe: method Get: Get collides with the Go name of method get; generated as Get_",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe_A: method B: Pipe_A_B_FullMethodName collides with the full method name constant of method A_B of service Pipe in package streamcollidev1; generated as Pipe_A_B_FullMethodName_",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe_A: method B: Pipe_A_BClient collides with the client stream alias of method A_B of service Pipe in package streamcollidev1; the grpc-go-style alias of its client stream type is omitted",
	"protoc-gen-storks: warning: streamcollide/v1/streamcollide.proto: service Pipe_A: method B: Pipe_A_BServer collides with the server stream alias of method A_B of service Pipe in package streamcollidev1; the grpc-go-style alias of its server stream type is omitted",
}

// TestGoldenWarnings checks the exact warnings for the golden protos: one
// per renamed identifier or omitted stream type alias, saying what took the
// name; none for the protos whose identifiers are all free (keywords,
// shadow, multi, stream, ...).
func TestGoldenWarnings(t *testing.T) {
	files := protoFiles(t, protoDir)
	_, got := runGoAndStorksWarnings(t, compile(t, protoDir, files), "module="+goldenModule)
	if !slices.Equal(got, goldenWarnings) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(goldenWarnings, "\n"))
	}
}
