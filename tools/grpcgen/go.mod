// protoc-gen-go and protoc-gen-go-grpc, the plugins that
// scripts/gen-interop.sh runs protoc with to generate the grpc-go client of
// the example services in internal/interop/grpcgo/pb. A module of its own:
// protoc-gen-go-grpc v1.6.2 needs go 1.25 and would otherwise move the main
// module's go line; protoc-gen-go is the protobuf version of ../../go.mod,
// so that the generated messages match examples/gen byte for byte.
module github.com/storks-rpc/storks/tools/grpcgen

go 1.25.0

tool (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
