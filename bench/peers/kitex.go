package peers

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/connpool"
	"github.com/cloudwego/kitex/pkg/klog"
	"github.com/cloudwego/kitex/server"
	"github.com/storks-rpc/storks/bench/gen/kitexpb"
	"github.com/storks-rpc/storks/bench/gen/kitexpb/hello"
	"github.com/storks-rpc/storks/bench/gen/kitexpb/hellostream"
	"github.com/storks-rpc/storks/bench/payload"
)

// Kitex long-connection row: Kitex's own protobuf code (prutal), netpoll
// transport (Kitex's default on Linux), the long-connection pool. Kitex's
// default pool keeps at most 10 idle connections per address, so at 64 or
// 1000 callers it would close and redial connections after nearly every
// call; the pool is sized for the largest caller count instead, as Kitex's
// documentation advises (MaxIdlePerAddress about the concurrency), so every
// caller keeps its connection.
func kitexSpec() Spec {
	return Spec{
		Name:   "kitex",
		Kind:   Peer,
		Config: "kitex v0.16.3, netpoll; WithLongConnection(MaxIdlePerAddress 1000, MaxIdleTimeout 1m): one pooled connection per concurrent call",
		Start:  func() (Instance, error) { return startKitex(false) },
	}
}

// Kitex mux row: one multiplexed connection (client WithMuxConnection(1),
// server WithMuxTransport, both TTHeader framed).
func kitexMuxSpec() Spec {
	return Spec{
		Name:   "kitex-mux",
		Kind:   Peer,
		Config: "kitex v0.16.3, netpoll; client WithMuxConnection(1) + server WithMuxTransport(): one multiplexed connection",
		Start:  func() (Instance, error) { return startKitex(true) },
	}
}

// KitexHello is the Kitex handler (Kitex wants a pointer).
type KitexHello struct{}

func (*KitexHello) Say(_ context.Context, req *kitexpb.BenchmarkMessage) (*kitexpb.BenchmarkMessage, error) {
	payload.HandleKitex(req)
	return req, nil
}

type kitexInstance struct {
	closers
	client hello.Client
}

func startKitex(mux bool) (Instance, error) {
	klog.SetLevel(klog.LevelError)
	klog.SetOutput(io.Discard)
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	sopts := []server.Option{
		server.WithListener(ln),
		server.WithExitWaitTime(100 * time.Millisecond),
		// Kitex's default exit signal handles SIGINT/SIGTERM itself;
		// leave them to the driver.
		server.WithExitSignal(func() <-chan error { return make(chan error) }),
	}
	if mux {
		sopts = append(sopts, server.WithMuxTransport())
	}
	srv := hello.NewServer(new(KitexHello), sopts...)
	go srv.Run()
	inst := &kitexInstance{closers: closers{srv.Stop}}
	copts := []client.Option{client.WithHostPorts(ln.Addr().String())}
	if mux {
		copts = append(copts, client.WithMuxConnection(1))
	} else {
		copts = append(copts, client.WithLongConnection(connpool.IdleConfig{
			MaxIdlePerAddress: 1000,
			MaxIdleGlobal:     1 << 20,
			MaxIdleTimeout:    time.Minute,
		}))
	}
	c, err := hello.NewClient("hello", copts...)
	if err != nil {
		inst.Close()
		return nil, err
	}
	inst.client = c
	return inst, nil
}

type kitexCaller struct {
	noClose
	c   hello.Client
	p   *payload.Payload
	req *kitexpb.BenchmarkMessage
}

func (in *kitexInstance) NewCaller(p *payload.Payload) (Caller, error) {
	return &kitexCaller{c: in.client, p: p, req: p.KitexRequest()}, nil
}

func (c *kitexCaller) Call(ctx context.Context) error {
	out, err := c.c.Say(ctx, c.req)
	if err != nil {
		return err
	}
	return c.p.CheckKitex(out)
}

// Kitex streaming row: the streaming methods in a service of their own
// (HelloStream), which Kitex's generated client runs over its gRPC
// transport (nphttp2: HTTP/2 frames on netpoll), one connection; the server
// detects the HTTP/2 preface by itself.
func kitexGRPCSpec() Spec {
	return Spec{
		Name:       "kitex-grpc",
		Kind:       Peer,
		StreamOnly: true,
		Config:     "kitex v0.16.3, streaming only: the HelloStream service over Kitex's gRPC transport (nphttp2 on netpoll), its generated client's defaults",
		Start:      startKitexGRPC,
	}
}

// KitexHelloStream is the Kitex streaming handler.
type KitexHelloStream struct{}

// Repeat handles the request once and sends the reply until the client
// ends the stream.
func (*KitexHelloStream) Repeat(req *kitexpb.BenchmarkMessage, s kitexpb.HelloStream_RepeatServer) error {
	payload.HandleKitex(req)
	for {
		if err := s.Send(req); err != nil {
			return err
		}
	}
}

// Chat sends back every message it receives, handled.
func (*KitexHelloStream) Chat(s kitexpb.HelloStream_ChatServer) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		payload.HandleKitex(in)
		if err := s.Send(in); err != nil {
			return err
		}
	}
}

type kitexGRPCInstance struct {
	closers
	client hellostream.Client
}

func startKitexGRPC() (Instance, error) {
	klog.SetLevel(klog.LevelError)
	klog.SetOutput(io.Discard)
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	srv := hellostream.NewServer(new(KitexHelloStream),
		server.WithListener(ln),
		server.WithExitWaitTime(100*time.Millisecond),
		server.WithExitSignal(func() <-chan error { return make(chan error) }),
	)
	go srv.Run()
	inst := &kitexGRPCInstance{closers: closers{srv.Stop}}
	c, err := hellostream.NewClient("hello", client.WithHostPorts(ln.Addr().String()))
	if err != nil {
		inst.Close()
		return nil, err
	}
	inst.client = c
	return inst, nil
}

func (in *kitexGRPCInstance) NewCaller(*payload.Payload) (Caller, error) {
	return nil, errors.New("kitex-grpc runs the streaming scenarios only")
}

func (in *kitexGRPCInstance) NewStream(ctx context.Context, kind StreamKind, p *payload.Payload) (Caller, error) {
	return openStream(ctx, kind, p.CheckKitex, p.KitexRequest(),
		func(ctx context.Context, req *kitexpb.BenchmarkMessage) (func() (*kitexpb.BenchmarkMessage, error), error) {
			s, err := in.client.Repeat(ctx, req)
			if err != nil {
				return nil, err
			}
			return s.Recv, nil
		},
		func(ctx context.Context) (func(*kitexpb.BenchmarkMessage) error, func() (*kitexpb.BenchmarkMessage, error), error) {
			s, err := in.client.Chat(ctx)
			if err != nil {
				return nil, nil, err
			}
			return s.Send, s.Recv, nil
		})
}
