package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// A provider exports the generated Greeter service and serves it on
// loopback; a consumer refers it through the same registry and calls it.
func Example() {
	ctx := context.Background()
	reg := registry.NewInproc()
	defer reg.Close()

	// Provider: export, then serve (Serve registers the bound address).
	srv := storks.NewServer(storks.WithRegistry(reg))
	if _, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: "provider-1"}, storks.WithVersion("v1")); err != nil {
		panic(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go srv.Serve(lis)
	defer srv.Shutdown(ctx)

	// Consumer: refer the service key and call through the generated client.
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName, storks.WithVersion("v1"))
	if err != nil {
		panic(err)
	}
	waitProviders(ref, 1)
	greeter := greeterv1.NewGreeterClient(ref)
	reply, err := greeter.SayHello(ctx, &greeterv1.HelloRequest{Name: "storks"})
	if err != nil {
		panic(err)
	}
	fmt.Println(reply.GetMessage(), "from", reply.GetProvider())

	_, err = greeter.SayHello(ctx, &greeterv1.HelloRequest{})
	fmt.Println(storks.CodeOf(err), err)
	// Output:
	// Hello, storks from provider-1
	// InvalidArgument storks: InvalidArgument: name is required
}

// waitProviders waits until the reference knows n providers: Serve registers
// asynchronously.
func waitProviders(ref *storks.Reference, n int) {
	for len(ref.Providers()) < n {
		pause()
	}
}

// A consumer that starts before any provider: with WithWaitForProvider its
// call waits, within its deadline, for a provider to be registered, instead
// of failing at once with ErrNoProvider.
func ExampleWithWaitForProvider() {
	reg := registry.NewInproc()
	defer reg.Close()

	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	ref, err := cli.Refer(context.Background(), greeterv1.Greeter_ServiceName, storks.WithRemote())
	if err != nil {
		panic(err)
	}
	greeter := greeterv1.NewGreeterClient(ref)

	// No provider yet: without the option the call fails at once.
	_, err = greeter.SayHello(context.Background(), &greeterv1.HelloRequest{Name: "early"})
	fmt.Println(errors.Is(err, storks.ErrNoProvider))

	// A provider starts a little later.
	srv := storks.NewServer(storks.WithRegistry(reg))
	defer srv.Close()
	ex, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: "late"})
	if err != nil {
		panic(err)
	}
	fmt.Println(ex.State()) // exported; registered once it serves (Exporter.State)
	go func() {
		time.Sleep(100 * time.Millisecond)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		srv.Serve(lis)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := greeter.SayHello(ctx, &greeterv1.HelloRequest{Name: "storks"}, storks.WithWaitForProvider())
	if err != nil {
		panic(err)
	}
	fmt.Println(reply.GetMessage(), "from", reply.GetProvider())
	// Output:
	// true
	// pending
	// Hello, storks from late
}
