// Package cli holds interop tests that drive the example provider
// (examples/provider) with gRPC clients that are not part of Storks: the
// grpcurl program (built from tools/interop/go.mod) and a Python client on
// Debian's grpcio, with stubs that Debian's protoc generates at test time.
// They check what issue 16 promises a gRPC client of a Storks provider:
// server reflection (list, describe), unary and server-streaming calls with
// JSON, error codes and messages, grpc.health.v1, TLS with a CA file, and
// version selection through the storks-version metadata.
//
// The tools are found as `make deps-grpcurl deps-python` leave them: grpcurl
// at $GRPCURL or through `go tool -n grpcurl` in tools/interop, Python as
// Debian's /usr/bin/python3 with grpc_python_plugin and protoc. A missing
// tool fails the tests that need it when CI is set, naming the make target
// that installs it; elsewhere those tests skip with that message.
// `make test-interop` runs them.
package cli
