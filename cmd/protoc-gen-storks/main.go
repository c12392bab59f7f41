package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"

	"github.com/storks-rpc/storks/templates"
)

// usage is printed when the plugin is run by hand rather than by protoc.
const usage = templates.PluginName + ` is a protoc plugin: protoc runs it and writes a
CodeGeneratorRequest to its standard input. Use it through protoc, for example

	protoc --go_out=. --storks_out=. x.proto

(with ` + templates.PluginName + ` and protoc-gen-go on $PATH, or passed with --plugin=).
Run "` + templates.PluginName + ` --version" to print its version.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" {
		fmt.Fprintln(stdout, templates.PluginName, templates.Version)
		return 0
	}
	if len(args) > 0 || isTerminal(stdin) {
		fmt.Fprint(stderr, usage)
		return 1
	}

	// protogen reads the request from os.Stdin, writes the response to
	// os.Stdout, and exits with status 1 if it cannot.
	newOptions().Run(generate)
	return 0
}

// newOptions returns the protogen options of the plugin. Parameters that
// protogen does not handle itself (paths, module, M..., annotate_code) are
// rejected: Storks has none yet.
func newOptions() protogen.Options {
	var flags flag.FlagSet
	return protogen.Options{ParamFunc: flags.Set}
}

// generate generates the .storks.go files of gen.
func generate(gen *protogen.Plugin) error {
	// Declare exactly what protoc-gen-go declares, so that protoc never
	// refuses a file because of Storks that protoc-gen-go accepts.
	gen.SupportedFeatures = gengo.SupportedFeatures
	gen.SupportedEditionsMinimum = gengo.SupportedEditionsMinimum
	gen.SupportedEditionsMaximum = gengo.SupportedEditionsMaximum
	return templates.Generate(gen)
}

// isTerminal reports whether f is a character device, as a terminal (or
// /dev/null) is: someone ran the plugin by hand without feeding it a
// request. protoc always writes the request to a pipe.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
