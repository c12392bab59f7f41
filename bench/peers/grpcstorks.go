package peers

import (
	"io"
	"log/slog"

	"github.com/storks-rpc/storks/bench/gen/grpcpb"
	"github.com/storks-rpc/storks/bench/gen/storksgrpcpb"
	"github.com/storks-rpc/storks/bench/gen/storkspb"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/grpc"
)

// GRPCToStorks is the row of grpc-go's client calling a Storks server,
// which the results compare with the grpc-go row (the same client calling
// a grpc-go server).
const GRPCToStorks = "grpc-go→storks"

// grpc-go's client against a Storks server. The client is the grpc-go
// row's (dialGRPC: one ClientConn, insecure credentials, stubs of
// protoc-gen-go-grpc v1.6.2, here generated from the Storks service's
// proto so that they call its wire name, bench.storkssvc.v1.Hello); the
// server is the storks row's (storks.NewServer with its defaults, the
// service exported with the Storks-generated code before Serve), which
// answers gRPC clients on its port. So this row and the grpc-go row
// differ only in the server. Unary only: it takes no part in the
// streaming scenarios.
func grpcStorksSpec() Spec {
	return Spec{
		Name:   GRPCToStorks,
		Kind:   Interop,
		Config: "the grpc-go row's client (one ClientConn, insecure credentials; protoc-gen-go-grpc stubs of the Storks service's proto) calling a Storks server with its defaults (storks.NewServer, exported with the Storks-generated code), which serves gRPC on its port; unary only",
		Start:  startGRPCStorks,
	}
}

// unaryOnly hides the streaming methods of an instance.
type unaryOnly struct{ Instance }

func startGRPCStorks() (Instance, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := storks.NewServer(storks.WithLogger(quiet))
	if _, err := storkspb.RegisterHelloServer(srv, storksHello{}); err != nil {
		return nil, err
	}
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	inst, err := dialGRPC(ln.Addr().String(), srv.Close, func(cc grpc.ClientConnInterface) grpcpb.HelloClient {
		return storksgrpcpb.NewHelloClient(cc)
	})
	if err != nil {
		return nil, err
	}
	return unaryOnly{inst}, nil
}
