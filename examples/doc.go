// Package examples holds the example services of Storks and tests of the
// code generated for them.
//
// The .proto files are under examples/proto, and the Go code generated from
// them, by protoc with protoc-gen-go and protoc-gen-storks, under
// examples/gen. Regenerate it with scripts/gen.sh and check that it is up to
// date with scripts/check-gen.sh (go test ./cmd/protoc-gen-storks does too).
package examples
