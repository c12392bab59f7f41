package runtime_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// sameZone is a custom balancer: round-robin over the providers registered
// with the metadata zone=<zone>, or over all of them if none is.
type sameZone struct {
	zone string
	next atomic.Uint64 // kept across builds
}

// Build runs once per change of the provider list, never per call: the
// filtering happens here, and Pick only indexes.
func (b *sameZone) Build(eps []*storks.Endpoint) storks.Picker {
	var local []*storks.Endpoint
	for _, e := range eps {
		if e.Instance().Metadata["zone"] == b.zone {
			local = append(local, e)
		}
	}
	if len(local) == 0 {
		local = eps
	}
	return &zonePicker{b: b, eps: local}
}

type zonePicker struct {
	b   *sameZone
	eps []*storks.Endpoint
}

// Pick is called concurrently by every call: no locks, no allocation.
func (p *zonePicker) Pick(context.Context, storks.PickInfo) (storks.PickResult, error) {
	i := (p.b.next.Add(1) - 1) % uint64(len(p.eps))
	return storks.PickResult{Endpoint: p.eps[i]}, nil
}

// A balancer of one's own: calls stay in the consumer's zone while a
// provider there is registered. WithBalancer takes a factory, so every
// reference gets a balancer of its own.
func ExampleWithBalancer() {
	ctx := context.Background()
	reg := registry.NewInproc()
	defer reg.Close()
	for _, zone := range []string{"east", "west"} {
		defer serveGreeter(reg, &impl.Greeter{Name: "provider-" + zone}, storks.WithMetadata(map[string]string{"zone": zone}))()
	}

	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName, storks.WithRemote(),
		storks.WithBalancer(func() storks.Balancer { return &sameZone{zone: "west"} }))
	if err != nil {
		panic(err)
	}
	waitProviders(ref, 2)
	greeter := greeterv1.NewGreeterClient(ref)
	for range 3 {
		reply, err := greeter.SayHello(ctx, &greeterv1.HelloRequest{Name: "storks"})
		if err != nil {
			panic(err)
		}
		fmt.Println(reply.GetProvider())
	}
	// Output:
	// provider-west
	// provider-west
	// provider-west
}

// serveGreeter exports g on a new server on loopback, registered in reg,
// and returns a function that closes the server.
func serveGreeter(reg registry.Registry, g *impl.Greeter, opts ...storks.ExportOption) (closeServer func()) {
	srv := storks.NewServer(storks.WithRegistry(reg))
	if _, err := greeterv1.RegisterGreeterServer(srv, g, opts...); err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(lis)
	return func() { srv.Close() }
}
