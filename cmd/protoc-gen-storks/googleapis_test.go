package main

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// googleapisDir holds real-world protos with streaming methods; see its
// README.md.
const googleapisDir = "testdata/googleapis"

// googleapisModule is the module the generated code is built in: every Go
// package of testdata/googleapis is remapped (M options) under it.
const googleapisModule = "example.com/googleapis"

// TestGoogleAPIs generates every file of testdata/googleapis (Google APIs
// with server-, client- and bidi-streaming methods, and the files they
// import), checks the shapes of a few streaming methods, and builds and
// vets the generated packages in a temporary module that requires this
// tree's runtime (a replace directive to the module root).
func TestGoogleAPIs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds generated code with go vet; skipped in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	res := compile(t, googleapisDir, protoFiles(t, googleapisDir))

	// Each file's Go package, as its go_package gives it, moves under
	// googleapisModule, and module= strips that again: the output is laid
	// out by the original import paths.
	params := []string{"module=" + googleapisModule}
	for _, fd := range res.Protos {
		if strings.HasPrefix(fd.GetName(), "google/protobuf/") {
			continue
		}
		importPath, name, ok := strings.Cut(fd.GetOptions().GetGoPackage(), ";")
		if !ok {
			name = path.Base(importPath)
		}
		params = append(params, "M"+fd.GetName()+"="+googleapisModule+"/"+importPath+";"+name)
	}
	files, warnings := runGoAndStorksWarnings(t, res, strings.Join(params, ","))
	if len(warnings) != 0 {
		t.Errorf("warnings:\n%s", strings.Join(warnings, "\n"))
	}

	for name, want := range map[string][]string{
		"google.golang.org/genproto/googleapis/bytestream/bytestream.storks.go": {
			"Read(ctx context.Context, in *ReadRequest, opts ...storks.CallOption) (storks.ServerStreamingClient[ReadResponse], error)",
			"Write(ctx context.Context, opts ...storks.CallOption) (storks.ClientStreamingClient[WriteRequest, WriteResponse], error)",
			"QueryWriteStatus(ctx context.Context, in *QueryWriteStatusRequest, opts ...storks.CallOption) (*QueryWriteStatusResponse, error)",
			"Read(*ReadRequest, storks.ServerStreamingServer[ReadResponse]) error",
			"Write(storks.ClientStreamingServer[WriteRequest, WriteResponse]) error",
			"type ByteStream_ReadClient = storks.ServerStreamingClient[ReadResponse]",
			"type ByteStream_WriteServer = storks.ClientStreamingServer[WriteRequest, WriteResponse]",
		},
		"google.golang.org/genproto/googleapis/watcher/v1/watch.storks.go": {
			"Watch(ctx context.Context, in *Request, opts ...storks.CallOption) (storks.ServerStreamingClient[ChangeBatch], error)",
		},
		"cloud.google.com/go/speech/apiv1/speechpb/cloud_speech.storks.go": {
			"StreamingRecognize(ctx context.Context, opts ...storks.CallOption) (storks.BidiStreamingClient[StreamingRecognizeRequest, StreamingRecognizeResponse], error)",
			"StreamingRecognize(storks.BidiStreamingServer[StreamingRecognizeRequest, StreamingRecognizeResponse]) error",
			"LongRunningRecognize(ctx context.Context, in *LongRunningRecognizeRequest, opts ...storks.CallOption) (*longrunningpb.Operation, error)",
		},
		"cloud.google.com/go/firestore/apiv1/firestorepb/firestore.storks.go": {
			"Listen(ctx context.Context, opts ...storks.CallOption) (storks.BidiStreamingClient[ListenRequest, ListenResponse], error)",
			"Write(ctx context.Context, opts ...storks.CallOption) (storks.BidiStreamingClient[WriteRequest, WriteResponse], error)",
			"RunQuery(ctx context.Context, in *RunQueryRequest, opts ...storks.CallOption) (storks.ServerStreamingClient[RunQueryResponse], error)",
			"BatchGetDocuments(*BatchGetDocumentsRequest, storks.ServerStreamingServer[BatchGetDocumentsResponse]) error",
			"type Firestore_ListenServer = storks.BidiStreamingServer[ListenRequest, ListenResponse]",
		},
	} {
		src, ok := files[name]
		if !ok {
			t.Errorf("%s not generated", name)
			continue
		}
		for _, w := range want {
			if !strings.Contains(src, w) {
				t.Errorf("%s does not contain %q", name, w)
			}
		}
	}

	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeReplacingModule(t, dir, googleapisModule)
	vet := exec.Command(goTool, "vet", "./...")
	vet.Dir = dir
	vet.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := vet.CombinedOutput(); err != nil {
		t.Fatalf("go vet of the generated code: %v\n%s", err, out)
	}
}

// moduleLine matches the module directive of a go.mod file.
var moduleLine = regexp.MustCompile(`(?m)^module .*$`)

// writeReplacingModule writes go.mod and go.sum for a module named module
// in dir, which requires this module, replaced by the module root, with the
// root's own requirements and checksums: the generated code then builds
// with the root's dependency versions, all in the module cache already.
func writeReplacingModule(t *testing.T, dir, module string) {
	t.Helper()
	root := moduleRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	const self = "github.com/storks-rpc/storks"
	mod := moduleLine.ReplaceAllString(string(gomod), "module "+module) +
		"\nrequire " + self + " v0.0.0-00010101000000-000000000000\n" +
		"\nreplace " + self + " => " + filepath.ToSlash(root) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
}
