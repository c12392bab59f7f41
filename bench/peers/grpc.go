package peers

import (
	"context"
	"io"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"github.com/storks-rpc/storks/bench/gen/grpcpb"
	"github.com/storks-rpc/storks/bench/payload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpc-go with its defaults: one grpc.NewServer, one ClientConn shared by
// every caller (grpc-go multiplexes calls as HTTP/2 streams on it), insecure
// transport credentials, no other option.
func grpcSpec() Spec {
	return Spec{
		Name:   "grpc-go",
		Kind:   Peer,
		Config: "grpc v1.85.0 defaults; one ClientConn shared by all callers; insecure credentials",
		Start:  startGRPC,
	}
}

type grpcHello struct {
	grpcpb.UnimplementedHelloServer
}

func (grpcHello) Say(_ context.Context, in *benchpb.BenchmarkMessage) (*benchpb.BenchmarkMessage, error) {
	payload.Handle(in)
	return in, nil
}

// Repeat handles the request once and sends the reply until the client
// ends the stream.
func (grpcHello) Repeat(in *benchpb.BenchmarkMessage, s grpcpb.Hello_RepeatServer) error {
	payload.Handle(in)
	for {
		if err := s.Send(in); err != nil {
			return err
		}
	}
}

// Chat sends back every message it receives, handled.
func (grpcHello) Chat(s grpcpb.Hello_ChatServer) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		payload.Handle(in)
		if err := s.Send(in); err != nil {
			return err
		}
	}
}

type grpcInstance struct {
	closers
	client grpcpb.HelloClient
}

func startGRPC() (Instance, error) { return startGRPCWith(nil, nil) }

// startGRPCWith starts the grpc-go row with more server and dial options.
func startGRPCWith(sopts []grpc.ServerOption, dopts []grpc.DialOption) (*grpcInstance, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer(sopts...)
	grpcpb.RegisterHelloServer(srv, grpcHello{})
	go srv.Serve(ln)
	return dialGRPC(ln.Addr().String(), func() error { srv.Stop(); return nil }, grpcpb.NewHelloClient, dopts...)
}

// dialGRPC makes the grpc-go client of a row: one ClientConn to addr,
// insecure credentials, no other option (but dopts), and the stubs
// newClient makes on it. stop stops the row's server.
func dialGRPC(addr string, stop func() error, newClient func(grpc.ClientConnInterface) grpcpb.HelloClient, dopts ...grpc.DialOption) (*grpcInstance, error) {
	inst := &grpcInstance{closers: closers{stop}}
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dopts...)...)
	if err != nil {
		inst.Close()
		return nil, err
	}
	inst.closers = append(inst.closers, conn.Close)
	inst.client = newClient(conn)
	return inst, nil
}

type grpcCaller struct {
	noClose
	c   grpcpb.HelloClient
	p   *payload.Payload
	req *benchpb.BenchmarkMessage
}

func (in *grpcInstance) NewCaller(p *payload.Payload) (Caller, error) {
	return &grpcCaller{c: in.client, p: p, req: p.Request()}, nil
}

func (c *grpcCaller) Call(ctx context.Context) error {
	out, err := c.c.Say(ctx, c.req)
	if err != nil {
		return err
	}
	return c.p.Check(out)
}

func (in *grpcInstance) NewStream(ctx context.Context, kind StreamKind, p *payload.Payload) (Caller, error) {
	return openStream(ctx, kind, p.Check, p.Request(),
		func(ctx context.Context, req *benchpb.BenchmarkMessage) (func() (*benchpb.BenchmarkMessage, error), error) {
			s, err := in.client.Repeat(ctx, req)
			if err != nil {
				return nil, err
			}
			return s.Recv, nil
		},
		func(ctx context.Context) (func(*benchpb.BenchmarkMessage) error, func() (*benchpb.BenchmarkMessage, error), error) {
			s, err := in.client.Chat(ctx)
			if err != nil {
				return nil, nil, err
			}
			return s.Send, s.Recv, nil
		})
}
