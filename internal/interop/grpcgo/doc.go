// Package grpcgo holds the gRPC interop tests of Storks: a Storks provider
// (the examples/provider program, a process of its own) called by a plain
// grpc-go client, the code that the real protoc-gen-go-grpc generates from
// examples/proto (package pb, see scripts/gen-interop.sh). They check the
// promise of the runtime's gRPC listener: the same port, the same handlers
// and the same errors (Storks codes are gRPC codes) for unary calls and for
// every kind of stream; deadlines, cancellation and metadata (storks-version
// and storks-group pick the export); grpc.health.v1 (Check, and Watch going
// NOT_SERVING when the provider shuts down gracefully); server reflection;
// and a graceful restart under a load of Storks and gRPC clients at once
// with no failed call on either side.
//
// The tests never link examples/gen: the provider runs as a separate
// process (built once per test binary), so only package pb registers the
// example proto files here. The package has no API; it exists for its
// tests.
//
//	go test -race ./internal/interop/grpcgo
package grpcgo
