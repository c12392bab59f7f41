package gen

import (
	"errors"
	"flag"

	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"

	"github.com/storks-rpc/storks/templates"
)

// NewRequest builds the CodeGeneratorRequest protoc sends a plugin to
// generate files (import-relative names), whose descriptors and
// dependencies are protos (in dependency order, see [DependencyOrder]),
// with parameter param ("" for none).
//
// compiler_version is left unset: nothing here is protoc, and
// protoc-gen-go then records "protoc (unknown)" in the header of .pb.go
// files, as it does for buf and other protoc-free compilers.
func NewRequest(files []string, param string, protos []*descriptorpb.FileDescriptorProto) *pluginpb.CodeGeneratorRequest {
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: files,
		ProtoFile:      protos,
	}
	if param != "" {
		req.Parameter = proto.String(param)
	}
	return req
}

// A Plugin is a code generator run in-process on a request, as protoc runs a
// plugin binary.
type Plugin struct {
	// Name is the plugin's name in protoc's flags: "go" for --go_out.
	Name string
	// Run generates the response for req. Failures, bad parameters
	// included, are reported in the response's Error, as a plugin binary
	// would. The warnings a plugin binary would write to stderr are
	// returned, for the caller to print.
	Run func(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic)
}

// Go is protoc-gen-go of the google.golang.org/protobuf version this module
// requires, run in-process.
var Go = Plugin{Name: "go", Run: RunGo}

// Storks is protoc-gen-storks, run in-process.
var Storks = Plugin{Name: "storks", Run: RunStorks}

// RunGo does what the protoc-gen-go binary does with req: the same
// parameters (paths=, module=, M..., annotate_code, and protoc-gen-go's own
// plugins= and experimental_strip_nonfunctional_codegen) and the same
// output.
func RunGo(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic) {
	// This mirrors the main function of
	// google.golang.org/protobuf/cmd/protoc-gen-go.
	var (
		flags                                 flag.FlagSet
		plugins                               = flags.String("plugins", "", "deprecated option")
		experimentalStripNonFunctionalCodegen = flags.Bool("experimental_strip_nonfunctional_codegen", false, "")
	)
	opts := protogen.Options{
		ParamFunc:                    flags.Set,
		InternalStripForEditionsDiff: experimentalStripNonFunctionalCodegen,
	}
	return run(opts, req, func(gen *protogen.Plugin) ([]templates.Diagnostic, error) {
		if *plugins != "" {
			return nil, errors.New("protoc-gen-go: plugins are not supported; use 'protoc --go-grpc_out=...' to generate gRPC")
		}
		for _, f := range gen.Files {
			if f.Generate {
				gengo.GenerateFile(gen, f)
			}
		}
		gen.SupportedFeatures = gengo.SupportedFeatures
		gen.SupportedEditionsMinimum = gengo.SupportedEditionsMinimum
		gen.SupportedEditionsMaximum = gengo.SupportedEditionsMaximum
		return nil, nil
	})
}

// RunStorks does what the protoc-gen-storks binary does with req, and
// returns the warnings it writes to stderr.
func RunStorks(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic) {
	return run(templates.PluginOptions(), req, templates.GeneratePlugin)
}

// run is protogen.Options.Run without the process: the request comes in as
// a value and the response and the warnings go out as values.
func run(opts protogen.Options, req *pluginpb.CodeGeneratorRequest, f func(*protogen.Plugin) ([]templates.Diagnostic, error)) (*pluginpb.CodeGeneratorResponse, []templates.Diagnostic) {
	gen, err := opts.New(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String(err.Error())}, nil
	}
	diags, err := f(gen)
	if err != nil {
		// protogen reports the error in the response, with the supported
		// features, as the binary does.
		gen.Error(err)
	}
	return gen.Response(), diags
}
