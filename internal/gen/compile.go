package gen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Config says where to find .proto files.
type Config struct {
	// ImportPaths are the directories imports are resolved against, in
	// order, as protoc's -I. Empty means the current directory, as for
	// protoc. Every one must exist.
	ImportPaths []string
	// Warn, if set, receives the compiler's warnings (unused imports and
	// the like), formatted as "file:line:col: message".
	Warn func(msg string)
}

// Result is the outcome of a successful Compile.
type Result struct {
	// Files are the named files as paths relative to their import
	// directory ("greeter/v1/greeter.proto"): the names the compiler, the
	// descriptors and a CodeGeneratorRequest's FileToGenerate use. They are
	// in the order given, without duplicates.
	Files []string
	// Linked are the descriptors of Files, in the same order.
	Linked linker.Files
	// Protos are Files and everything they import, transitively, well-known
	// types included, as FileDescriptorProtos in dependency order (every
	// file after its imports), with source code info: what protoc puts in
	// CodeGeneratorRequest.proto_file.
	Protos []*descriptorpb.FileDescriptorProto
}

// CompileError lists every error the compiler reported, each as
// "file:line:col: message", where file is the path of the file on disk.
type CompileError struct {
	Errs []string
}

func (e *CompileError) Error() string { return strings.Join(e.Errs, "\n") }

// Compile compiles files with protocompile, as protoc would. Each file is
// either a path on disk inside one of the import directories
// ("examples/proto/greeter/v1/greeter.proto" with -I examples/proto) or a
// path relative to one of them ("greeter/v1/greeter.proto"), as protoc
// accepts. Imports of the well-known types (google/protobuf/*.proto) resolve
// to the descriptors built into the protobuf module unless an import
// directory holds them. Comments are kept (protocompile.SourceInfoStandard),
// so generated code carries them.
//
// Problems with the arguments (a missing file or import directory, a file
// outside every import directory) are one-line errors naming the argument;
// problems in the sources are a *CompileError.
func Compile(ctx context.Context, cfg Config, files []string) (*Result, error) {
	if len(files) == 0 {
		return nil, errors.New("no .proto files given")
	}
	dirs := cfg.ImportPaths
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	for _, d := range dirs {
		fi, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("import directory %s does not exist", d)
		case err != nil:
			return nil, fmt.Errorf("import directory %s: %w", d, unwrapPath(err))
		case !fi.IsDir():
			return nil, fmt.Errorf("import directory %s is not a directory", d)
		}
	}
	var names []string
	for _, f := range files {
		name, err := inputName(dirs, f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}

	res := &diskResolver{dirs: dirs, found: make(map[string]string)}
	var (
		mu   sync.Mutex
		errs []string
	)
	rep := reporter.NewReporter(
		func(err reporter.ErrorWithPos) error {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, res.format(err))
			return nil // keep going: report every error, as protoc does
		},
		func(err reporter.ErrorWithPos) {
			if cfg.Warn != nil {
				cfg.Warn(res.format(err))
			}
		},
	)
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(res),
		Reporter:       rep,
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	linked, err := c.Compile(ctx, names...)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		return nil, &CompileError{Errs: errs}
	}
	if err != nil {
		var ewp reporter.ErrorWithPos
		if errors.As(err, &ewp) {
			return nil, &CompileError{Errs: []string{res.format(ewp)}}
		}
		return nil, err
	}
	return &Result{Files: names, Linked: linked, Protos: DependencyOrder(linked)}, nil
}

// DependencyOrder returns files and everything they import as
// FileDescriptorProtos, every file after its imports, in the order protoc
// lists them in a CodeGeneratorRequest: depth first, imports in declaration
// order. Files compiled from source keep their source code info.
func DependencyOrder(files linker.Files) []*descriptorpb.FileDescriptorProto {
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
			// Standard imports are descriptors generated into Go packages.
			out = append(out, protodesc.ToFileDescriptorProto(fd))
		}
	}
	for _, f := range files {
		visit(f)
	}
	return out
}

// inputName maps a file named on the command line to its path relative to
// an import directory, the way protoc does: a file that exists on disk must
// lie inside one of the directories (the first that contains it wins, and
// an earlier directory holding another file of the same relative name
// shadows it); anything else is taken as a path relative to them. Unlike
// protoc, it compares absolute paths, so "-I ./proto proto/a.proto" works.
func inputName(dirs []string, file string) (string, error) {
	fi, statErr := os.Stat(file)
	switch {
	case statErr == nil && fi.IsDir():
		return "", fmt.Errorf("%s is a directory, not a .proto file", file)
	case statErr == nil:
		if name, ok, err := diskName(dirs, file, fi); ok || err != nil {
			return name, err
		}
	case !errors.Is(statErr, fs.ErrNotExist):
		return "", unwrapPath(statErr)
	}
	// Not a file on disk, or one outside every import directory: a name
	// relative to the import directories.
	name := filepath.ToSlash(file)
	if name == path.Clean(name) && !path.IsAbs(name) && !strings.HasPrefix(name, "../") {
		for _, d := range dirs {
			if fi, err := os.Stat(filepath.Join(d, filepath.FromSlash(name))); err == nil && !fi.IsDir() {
				return name, nil
			}
		}
	}
	if statErr == nil {
		return "", fmt.Errorf("%s is not inside any import directory (-I %s); add -I for the directory its imports are relative to",
			file, strings.Join(dirs, " -I "))
	}
	return "", fmt.Errorf("%s: no such file (looked for it as given and in the import directories %s)", file, strings.Join(dirs, ", "))
}

// diskName returns the import-relative name of file, which exists on disk,
// and ok, if file lies inside one of dirs.
func diskName(dirs []string, file string, fi os.FileInfo) (name string, ok bool, err error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", false, err
	}
	for i, d := range dirs {
		absDir, err := filepath.Abs(d)
		if err != nil {
			return "", false, err
		}
		rel, err := filepath.Rel(absDir, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue
		}
		name := filepath.ToSlash(rel)
		for _, earlier := range dirs[:i] {
			other := filepath.Join(earlier, rel)
			if ofi, err := os.Stat(other); err == nil && !ofi.IsDir() && !os.SameFile(fi, ofi) {
				return "", false, fmt.Errorf("%s is shadowed by %s, which has the same import path %q in an earlier import directory; reorder the -I flags or name that file",
					file, other, name)
			}
		}
		return name, true, nil
	}
	return "", false, nil
}

// unwrapPath drops the operation from an *fs.PathError, which repeats the
// path: "open x: permission denied" becomes "x: permission denied".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// diskResolver finds files in import directories, first match wins, and
// remembers where it found each, to name files on disk in errors.
type diskResolver struct {
	dirs  []string
	mu    sync.Mutex
	found map[string]string // import-relative name → path on disk
}

func (r *diskResolver) FindFileByPath(name string) (protocompile.SearchResult, error) {
	for _, d := range r.dirs {
		p := filepath.Join(d, filepath.FromSlash(name))
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return protocompile.SearchResult{}, unwrapPath(err)
			}
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return protocompile.SearchResult{}, unwrapPath(err)
		}
		r.mu.Lock()
		r.found[name] = p
		r.mu.Unlock()
		return protocompile.SearchResult{Source: readCloser{f}}, nil
	}
	return protocompile.SearchResult{}, notFoundError{name: name, dirs: r.dirs}
}

// notFoundError says that a file is in no import directory. It is an
// fs.ErrNotExist, which tells protocompile to try its standard imports.
type notFoundError struct {
	name string
	dirs []string
}

func (e notFoundError) Error() string {
	return fmt.Sprintf("file %q not found in the import directories (%s)", e.name, strings.Join(e.dirs, ", "))
}

func (e notFoundError) Is(target error) bool { return target == fs.ErrNotExist }

// readCloser hides *os.File's other methods from protocompile.
type readCloser struct{ io.ReadCloser }

// format renders a positioned compiler error or warning with the file's
// path on disk, when known.
func (r *diskResolver) format(err reporter.ErrorWithPos) string {
	pos := err.GetPosition()
	r.mu.Lock()
	if p, ok := r.found[pos.Filename]; ok {
		pos.Filename = p
	}
	r.mu.Unlock()
	msg := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		msg = inner.Error()
	}
	return pos.String() + ": " + msg
}
