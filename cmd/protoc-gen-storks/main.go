package main

import (
	"fmt"
	"io"
	"os"

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
	// os.Stdout, and exits with status 1 if it cannot. Warnings go to
	// stderr, which protoc passes through; stdout carries only the
	// response.
	templates.PluginOptions().Run(func(gen *protogen.Plugin) error {
		diags, err := templates.GeneratePlugin(gen)
		for _, d := range diags {
			fmt.Fprintln(stderr, d.Warning())
		}
		return err
	})
	return 0
}

// isTerminal reports whether f is a character device, as a terminal (or
// /dev/null) is: someone ran the plugin by hand without feeding it a
// request. protoc always writes the request to a pipe.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
