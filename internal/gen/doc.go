// Package gen is the protoc-free code generation pipeline of Storks: it
// compiles .proto files in-process with github.com/bufbuild/protocompile,
// builds the CodeGeneratorRequest protoc would build, runs protoc-gen-go's
// generator and the Storks generator (package templates) on it in-process,
// and writes the files they generate.
//
// For the same inputs and parameters the generated files are byte for byte
// those of
//
//	protoc -I DIR --go_out=OUT --storks_out=OUT FILES...
//
// except for one header line of every .pb.go file: protoc-gen-go records the
// compiler's version from the request, "// \tprotoc        v3.21.12" under
// protoc, and this package, which is not protoc, leaves it unset, so the
// line reads "// \tprotoc        (unknown)" (as with buf).
//
// The same functions serve "storks generate", "storks call" (which only
// compiles) and the tests of protoc-gen-storks, which drive the generators
// in-process too.
package gen
