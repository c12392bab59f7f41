package peers

import (
	"context"
	"fmt"
	"time"

	"github.com/smallnest/rpcx/client"
	rlog "github.com/smallnest/rpcx/log"
	"github.com/smallnest/rpcx/protocol"
	"github.com/smallnest/rpcx/server"
	"github.com/storks-rpc/storks/bench/gen/benchpb"
	"github.com/storks-rpc/storks/bench/payload"
)

// rpcx as its own benchmark (rpcx-benchmark) configures it, with one
// client: server.NewServer() with the service registered by name, one
// XClient (Failtry, RoundRobin) over a discovery of the one server, the
// protobuf serialize type (protocol.ProtoBuffer) with the protoc-gen-go
// message, its logger silenced.
func rpcxSpec() Spec {
	return Spec{
		Name:   "rpcx",
		Kind:   Peer,
		Config: "rpcx v1.9.4; one XClient (Failtry, RoundRobin, Peer2PeerDiscovery); SerializeType ProtoBuffer; dummy logger",
		Start:  startRpcx,
	}
}

type RpcxHello struct{}

// Say is the rpcx handler. rpcx hands it a reply to fill: the handled
// request is copied into it (rpcx's benchmark does *reply = *args).
func (*RpcxHello) Say(_ context.Context, args, reply *benchpb.BenchmarkMessage) error {
	payload.Handle(args)
	payload.CopyMessage(reply, args)
	return nil
}

type rpcxInstance struct {
	closers
	client client.XClient
}

func startRpcx() (Instance, error) {
	rlog.SetDummyLogger()
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	srv := server.NewServer()
	if err := srv.RegisterName("Hello", new(RpcxHello), ""); err != nil {
		ln.Close()
		return nil, err
	}
	go srv.ServeListener("tcp", ln)
	inst := &rpcxInstance{closers: closers{srv.Close}}
	select {
	case <-srv.Started:
	case <-time.After(10 * time.Second):
		inst.Close()
		return nil, fmt.Errorf("rpcx server did not start")
	}
	d, err := client.NewPeer2PeerDiscovery("tcp@"+ln.Addr().String(), "")
	if err != nil {
		inst.Close()
		return nil, err
	}
	opt := client.DefaultOption
	opt.SerializeType = protocol.ProtoBuffer
	xc := client.NewXClient("Hello", client.Failtry, client.RoundRobin, d, opt)
	inst.client = xc
	inst.closers = append(inst.closers, xc.Close)
	return inst, nil
}

type rpcxCaller struct {
	noClose
	c   client.XClient
	p   *payload.Payload
	req *benchpb.BenchmarkMessage
}

func (in *rpcxInstance) NewCaller(p *payload.Payload) (Caller, error) {
	return &rpcxCaller{c: in.client, p: p, req: p.Request()}, nil
}

func (c *rpcxCaller) Call(ctx context.Context) error {
	reply := new(benchpb.BenchmarkMessage)
	if err := c.c.Call(ctx, "Say", c.req, reply); err != nil {
		return err
	}
	return c.p.Check(reply)
}
