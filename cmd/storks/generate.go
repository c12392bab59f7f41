package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/internal/gen"
)

type generateFlags struct {
	importPaths []string
	goOut       string
	storksOut   string
	goOpts      []string
	storksOpts  []string
}

func newGenerateCmd() *cobra.Command {
	var f generateFlags
	cmd := &cobra.Command{
		Use:   "generate -I DIR [--go_out=DIR] [--storks_out=DIR] [flags] FILE.proto...",
		Short: "Generate Go code from .proto files, without protoc",
		Long: `generate compiles .proto files in-process and runs protoc-gen-go and
protoc-gen-storks on them, in-process too: no protoc and no plugin binaries are
needed. The flags are protoc's, and the generated files are byte for byte those of

  protoc -I DIR --go_out=OUT --storks_out=OUT FILE.proto...

with one exception: the header of each .pb.go file records the compiler as
"protoc (unknown)" instead of protoc's version, because no protoc ran.

FILE.proto is a path inside one of the import directories (-I), either on disk
("proto/hello/v1/hello.proto" with -I proto) or relative to the import directory
("hello/v1/hello.proto"). Imports are resolved against the import directories, in
order; the well-known types (google/protobuf/*.proto) are built in. Without -I
the current directory is the import directory, as for protoc.

--go_opt and --storks_opt take the options of protoc-gen-go and protoc-gen-storks
(paths=source_relative, module=PREFIX, Mfile.proto=import/path); they may be
repeated, or given protoc-style as --go_out=OPTIONS:DIR. Output directories are
created if needed. Nothing is written unless every file compiles and both
generators succeed. The warnings of protoc-gen-storks (an identifier renamed
because its name is taken in the Go package, a stream type alias omitted for
the same reason) are printed on stderr as protoc prints them, and do not fail
the command.`,
		Example: `  # What protoc --go_out=gen --storks_out=gen would do:
  storks generate -I proto --go_out=gen --storks_out=gen proto/hello/v1/hello.proto

  # Files next to their .proto files' import paths, several files, two import dirs:
  storks generate -I proto -I third_party \
      --go_out=. --go_opt=paths=source_relative \
      --storks_out=. --storks_opt=paths=source_relative \
      hello/v1/hello.proto hello/v1/admin.proto

  # Strip the module prefix from the output paths (as examples/gen is made):
  storks generate -I examples/proto \
      --go_out=examples/gen --go_opt=module=github.com/storks-rpc/storks/examples/gen \
      --storks_out=examples/gen --storks_opt=module=github.com/storks-rpc/storks/examples/gen \
      greeter/v1/greeter.proto echo/v1/echo.proto common/v1/common.proto`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("no .proto files given%s", helpHint(cmd))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGenerate(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.importPaths, "proto_path", "I", nil,
		"directory to resolve imports in (repeatable; searched in order; default: the current directory)")
	fl.StringVar(&f.goOut, "go_out", "", "generate .pb.go files (protoc-gen-go) into `DIR`; OPTIONS:DIR also sets options")
	fl.StringVar(&f.storksOut, "storks_out", "", "generate .storks.go files (protoc-gen-storks) into `DIR`; OPTIONS:DIR also sets options")
	fl.StringArrayVar(&f.goOpts, "go_opt", nil, "`option` for protoc-gen-go, e.g. paths=source_relative (repeatable)")
	fl.StringArrayVar(&f.storksOpts, "storks_opt", nil, "`option` for protoc-gen-storks, e.g. paths=source_relative (repeatable)")
	return cmd
}

func runGenerate(cmd *cobra.Command, f generateFlags, files []string) error {
	var outputs []gen.Output
	for _, o := range []struct {
		plugin gen.Plugin
		out    string
		opts   []string
	}{
		{gen.Go, f.goOut, f.goOpts},
		{gen.Storks, f.storksOut, f.storksOpts},
	} {
		if o.out == "" {
			if len(o.opts) > 0 {
				return usagef("--%s_opt given without --%s_out%s", o.plugin.Name, o.plugin.Name, helpHint(cmd))
			}
			continue
		}
		param, dir := splitOut(o.out)
		if dir == "" {
			return usagef("--%s_out=%s names no output directory%s", o.plugin.Name, o.out, helpHint(cmd))
		}
		if param != "" {
			o.opts = append([]string{param}, o.opts...)
		}
		outputs = append(outputs, gen.Output{Plugin: o.plugin, Dir: dir, Param: strings.Join(o.opts, ",")})
	}
	if len(outputs) == 0 {
		return usagef("nothing to generate: give --go_out=DIR, --storks_out=DIR or both%s", helpHint(cmd))
	}
	for _, o := range outputs {
		if fi, err := os.Stat(o.Dir); err == nil && !fi.IsDir() {
			return fmt.Errorf("--%s_out: %s is not a directory", o.Plugin.Name, o.Dir)
		}
	}

	stderr := cmd.ErrOrStderr()
	res, err := gen.Compile(cmd.Context(), gen.Config{
		ImportPaths: splitImportPaths(f.importPaths),
		Warn:        func(msg string) { fmt.Fprintf(stderr, "storks: warning: %s\n", msg) },
	}, files)
	if err != nil {
		return err
	}
	generated, warnings, err := gen.Generate(res, outputs)
	// The generators' warnings, as protoc would pass them through from
	// the plugins' stderr.
	for _, w := range warnings {
		fmt.Fprintln(stderr, w.Warning())
	}
	if err != nil {
		return err
	}
	return gen.WriteFiles(generated)
}

// splitImportPaths splits the values of -I flags that are lists of
// directories ("-I a:b", as protoc accepts).
func splitImportPaths(flags []string) []string {
	var dirs []string
	for _, p := range flags {
		for _, d := range filepath.SplitList(p) {
			if d != "" {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// splitOut splits the value of a --NAME_out flag into its options and its
// directory, as protoc does: "OPTIONS:DIR" or "DIR". A Windows drive letter
// ("C:\out") is not taken for options.
func splitOut(v string) (param, dir string) {
	i := strings.IndexByte(v, ':')
	if i < 0 || runtime.GOOS == "windows" && i == 1 && len(v) > 2 && (v[2] == '\\' || v[2] == '/') {
		return "", v
	}
	return v[:i], v[i+1:]
}
