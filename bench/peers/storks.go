package peers

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"github.com/storks-rpc/storks/bench/gen/storkspb"
	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// Storks with its defaults: storks.NewServer and storks.NewClient with no
// options but the registry, a static registry holding the server's address,
// and WithRemote on the reference, because client and server share this
// process and without it calls would take the in-process shortcut instead
// of the network.
func storksSpec() Spec {
	return Spec{
		Name:   "storks",
		Kind:   Subject,
		Config: "defaults; registry.NewStatic(addr); Refer(..., WithRemote()) so calls use TCP despite the in-process server",
		Start:  startStorks,
	}
}

type storksHello struct {
	storkspb.UnimplementedHelloServer
}

func (storksHello) Say(_ context.Context, in *benchpb.BenchmarkMessage) (*benchpb.BenchmarkMessage, error) {
	payload.Handle(in)
	return in, nil
}

// Repeat handles the request once and sends the reply until the client
// ends the stream.
func (storksHello) Repeat(in *benchpb.BenchmarkMessage, s storkspb.Hello_RepeatServer) error {
	payload.Handle(in)
	for {
		if err := s.Send(in); err != nil {
			return err
		}
	}
}

// Chat sends back every message it receives, handled.
func (storksHello) Chat(s storkspb.Hello_ChatServer) error {
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

type storksInstance struct {
	closers
	client storkspb.HelloClient
	ref    *storks.Reference
}

func startStorks() (Instance, error) { return startStorksWith(nil, nil) }

// startStorksWith starts the storks row with more server and client
// options.
func startStorksWith(sopts []storks.ServerOption, copts []storks.ClientOption) (*storksInstance, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := storks.NewServer(append([]storks.ServerOption{storks.WithLogger(quiet)}, sopts...)...)
	if _, err := storkspb.RegisterHelloServer(srv, storksHello{}); err != nil {
		return nil, err
	}
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	inst := &storksInstance{closers: closers{srv.Close}}
	reg, err := registry.NewStatic(ln.Addr().String())
	if err != nil {
		inst.Close()
		return nil, err
	}
	cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(reg), storks.WithLogger(quiet)}, copts...)...)
	if err != nil {
		inst.Close()
		return nil, err
	}
	inst.closers = append(inst.closers, reg.Close, cli.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, storkspb.Hello_ServiceName, storks.WithRemote())
	if err != nil {
		inst.Close()
		return nil, err
	}
	inst.ref = ref
	inst.client = storkspb.NewHelloClient(ref)
	return inst, nil
}

type storksCaller struct {
	noClose
	c   storkspb.HelloClient
	p   *payload.Payload
	req *benchpb.BenchmarkMessage
}

func (in *storksInstance) NewCaller(p *payload.Payload) (Caller, error) {
	return &storksCaller{c: in.client, p: p, req: p.Request()}, nil
}

func (c *storksCaller) Call(ctx context.Context) error {
	out, err := c.c.Say(ctx, c.req)
	if err != nil {
		return err
	}
	return c.p.Check(out)
}

func (in *storksInstance) NewStream(ctx context.Context, kind StreamKind, p *payload.Payload) (Caller, error) {
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
