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
// It writes a warning to stderr, which protoc passes through, for every
// generated identifier it renames because the name is taken in the Go
// package, and for every stream type alias under protoc-gen-go-grpc's name
// (for code written for grpc-go) that it omits because the name is taken:
//
//	protoc-gen-storks: warning: greeter/v1/greeter.proto: service Greeter: GreeterClient collides with message GreeterClient in package greeterv1; generated as GreeterClient_
//	protoc-gen-storks: warning: chat/v1/chat.proto: service Chat: method Talk: Chat_TalkClient collides with message Chat_TalkClient in package chatv1; the grpc-go-style alias of its client stream type is omitted
//
// Warnings do not fail the run; stdout carries only the
// CodeGeneratorResponse. storks generate prints the same warnings.
//
// Run directly, it only answers --version; anything else is an error,
// because its input is a CodeGeneratorRequest that protoc writes to stdin.
package main
