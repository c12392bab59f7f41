package registry_test

import (
	"context"
	"fmt"
	"net/url"

	"github.com/storks-rpc/storks/registry"
)

func ExampleOpen() {
	ctx := context.Background()
	// A provider and a consumer in one process share the in-process registry.
	provider, err := registry.Open(ctx, "inproc://example")
	if err != nil {
		panic(err)
	}
	defer provider.Close()
	consumer, err := registry.Open(ctx, "inproc://example")
	if err != nil {
		panic(err)
	}
	defer consumer.Close()

	key := registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"}
	in := registry.Instance{Key: key, ID: "greeter-1", Addr: "127.0.0.1:20880", Weight: registry.DefaultWeight, Metadata: map[string]string{"zone": "a"}}
	if err := provider.Register(ctx, in); err != nil {
		panic(err)
	}
	list, err := consumer.Discover(ctx, key)
	if err != nil {
		panic(err)
	}
	for _, in := range list {
		fmt.Println(in.Key, in.ID, in.Addr, in.Weight, in.Metadata)
	}
	// Output:
	// helloworld.Greeter:1.0.0 greeter-1 127.0.0.1:20880 100 map[zone:a]
}

func ExampleOpen_direct() {
	ctx := context.Background()
	r, err := registry.Open(ctx, "direct://localhost:20880?weight=10")
	if err != nil {
		panic(err)
	}
	defer r.Close()
	// Every service key resolves to the one address.
	list, _ := r.Discover(ctx, registry.ServiceKey{Service: "helloworld.Greeter"})
	fmt.Println(list[0].Addr, list[0].Weight)
	// Output:
	// localhost:20880 10
}

func ExampleOpen_static() {
	ctx := context.Background()
	r, err := registry.Open(ctx, "static://10.0.0.2:20880,10.0.0.1:20880,[::1]:20880")
	if err != nil {
		panic(err)
	}
	defer r.Close()
	list, _ := r.Discover(ctx, registry.ServiceKey{Service: "helloworld.Greeter"})
	for _, in := range list {
		fmt.Println(in.ID)
	}
	// Output:
	// 10.0.0.1:20880
	// 10.0.0.2:20880
	// [::1]:20880
}

func ExampleOpen_errors() {
	ctx := context.Background()
	for _, u := range []string{
		"direct://localhost",
		"static://a:1,,b:2",
		"static://host:99999",
		"inproc://x/y",
		"direct://h:1?wieght=3",
		"etcd://127.0.0.1:2379",
	} {
		_, err := registry.Open(ctx, u)
		fmt.Println(err)
	}
	// Output:
	// registry: URL port is missing in "localhost"; want host:port
	// registry: URL host list "a:1,,b:2" has an empty entry at position 2
	// registry: URL port "99999" in "host:99999" must be a number from 1 to 65535
	// registry: URL path "/y" is not supported by inproc:// URLs
	// registry: URL query parameter "wieght" is not supported by direct:// URLs (supported: weight)
	// registry: URL scheme "etcd" is not registered; add import _ "github.com/storks-rpc/storks/registry/etcd" to the program
}

func ExampleRegisterScheme() {
	// An adapter package registers its scheme from an init function (this
	// example has no output, so it is compiled but not run: registering a
	// scheme twice panics).
	registry.RegisterScheme("example", func(ctx context.Context, u *url.URL) (registry.Registry, error) {
		// Validate u.Host, u.Path and u.Query(), reporting problems as
		// *registry.InputError, then connect within ctx.
		return registry.NewInproc(), nil
	})

	// Programs import the adapter package and open a URL of its scheme.
	r, err := registry.Open(context.Background(), "example://10.0.0.1:2379?prefix=/storks")
	if err != nil {
		panic(err)
	}
	defer r.Close()
}

func ExampleInproc_Watch() {
	ctx := context.Background()
	r := registry.NewInproc()
	defer r.Close()
	key := registry.ServiceKey{Service: "helloworld.Greeter"}

	w, err := r.Watch(ctx, key)
	if err != nil {
		panic(err)
	}
	defer w.Stop()
	list, _ := w.Next(ctx) // the current list, at once
	fmt.Println(len(list), "instances")

	// Changes made before the watcher reads are coalesced into one list.
	_ = r.Register(ctx, registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"})
	_ = r.Register(ctx, registry.Instance{Key: key, ID: "b", Addr: "127.0.0.1:2"})
	list, _ = w.Next(ctx)
	for _, in := range list {
		fmt.Println(in.ID, in.Addr)
	}
	// Output:
	// 0 instances
	// a 127.0.0.1:1
	// b 127.0.0.1:2
}

func ExampleInproc_Handle() {
	ctx := context.Background()
	provider := registry.NewInproc()
	consumer := provider.Handle() // same registry, separate handle
	defer consumer.Close()

	key := registry.ServiceKey{Service: "helloworld.Greeter"}
	_ = provider.Register(ctx, registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"})
	// Closing a handle removes nothing and does not affect other handles.
	_ = provider.Close()
	list, err := consumer.Discover(ctx, key)
	fmt.Println(len(list), err)
	_, err = provider.Discover(ctx, key)
	fmt.Println(err)
	// Output:
	// 1 <nil>
	// registry: closed
}
