package runtime_test

import (
	"context"
	"fmt"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// Providers registered with weights 300 and 100 share a consumer's calls
// 3:1, and one registered WithWeight(0) (being drained, or a standby)
// takes none. WeightedRoundRobin(storks.WithWarmUp(30*time.Second)) would
// also ramp up providers that registered less than 30 s ago.
func ExampleWeightedRoundRobin() {
	ctx := context.Background()
	reg := registry.NewInproc()
	defer reg.Close()
	var greeters []*impl.Greeter
	for _, p := range []struct {
		name   string
		weight int
	}{{"big", 300}, {"small", 100}, {"drained", 0}} {
		g := &impl.Greeter{Name: p.name}
		greeters = append(greeters, g)
		defer serveGreeter(reg, g, storks.WithWeight(p.weight))()
	}

	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	// WithRemote: the providers run in this process, and calls to an
	// export in the process would not go through the balancer.
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName,
		storks.WithBalancer(storks.WeightedRoundRobin()), storks.WithRemote())
	if err != nil {
		panic(err)
	}
	waitProviders(ref, 3)
	greeter := greeterv1.NewGreeterClient(ref)
	for range 400 {
		if _, err := greeter.SayHello(ctx, &greeterv1.HelloRequest{Name: "storks"}); err != nil {
			panic(err)
		}
	}
	for _, g := range greeters {
		fmt.Println(g.Name, g.Calls.Load())
	}
	// Output:
	// big 300
	// small 100
	// drained 0
}
