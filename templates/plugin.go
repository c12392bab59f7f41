package templates

import (
	"flag"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
)

// PluginOptions returns the protogen options of protoc-gen-storks, for
// protogen.Options.Run (the plugin binary) or protogen.Options.New (an
// in-process run). Parameters that protogen does not handle itself (paths,
// module, M..., annotate_code) are rejected: Storks has none yet.
func PluginOptions() protogen.Options {
	var flags flag.FlagSet
	return protogen.Options{ParamFunc: flags.Set}
}

// GeneratePlugin is what protoc-gen-storks does with a request: it declares
// exactly protoc-gen-go's SupportedFeatures and its range of editions
// (SupportedEditionsMinimum to SupportedEditionsMaximum), so that protoc
// never refuses a file because of Storks that protoc-gen-go accepts, and
// writes the .storks.go files of gen with [Generate], whose diagnostics it
// returns for the caller to print.
func GeneratePlugin(gen *protogen.Plugin) ([]Diagnostic, error) {
	gen.SupportedFeatures = gengo.SupportedFeatures
	gen.SupportedEditionsMinimum = gengo.SupportedEditionsMinimum
	gen.SupportedEditionsMaximum = gengo.SupportedEditionsMaximum
	return Generate(gen)
}
