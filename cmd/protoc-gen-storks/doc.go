// Command protoc-gen-storks is the protoc plugin that generates Storks client
// proxies and server skeletons for the services of .proto files. protoc runs
// it next to protoc-gen-go:
//
//	protoc --go_out=. --storks_out=. x.proto
//
// For every .proto file with services it writes <name>.storks.go next to
// protoc-gen-go's <name>.pb.go, in the same Go package; see package
// github.com/storks-rpc/storks/templates for what the file contains. The
// standard protogen options apply, as to protoc-gen-go: paths=import (the
// default) or paths=source_relative, module=<prefix>, and
// M<file.proto>=<import path> mappings, passed as --storks_opt=... .
//
// Run directly, it only answers --version; anything else is an error,
// because its input is a CodeGeneratorRequest that protoc writes to stdin.
package main
