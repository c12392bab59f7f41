// Package examples holds the example services of Storks and tests of the
// code generated for them.
//
// The .proto files are under examples/proto, and the Go code generated from
// them, by storks generate with protoc-gen-go and protoc-gen-storks
// in-process, under examples/gen. Regenerate it with scripts/gen.sh (make
// gen) and check that it is up to date with scripts/check-gen.sh (make
// check-gen); go test ./cmd/protoc-gen-storks also checks that protoc
// generates the same code.
package examples
