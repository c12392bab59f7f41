package consul_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/consul"
)

// A provider registers its instance with the local Consul agent and a
// consumer watches the service. (The example needs an agent on
// 127.0.0.1:8500, so it is compiled but not run by go test.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, "consul://127.0.0.1:8500?ttl=10s")
	if err != nil {
		log.Fatal(err) // names the agent's address, never the token
	}
	defer r.Close()

	key := registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"}
	in := registry.Instance{Key: key, ID: "greeter-1", Addr: "10.0.0.7:20880", Metadata: map[string]string{"zone": "eu-west-1a"}}
	if err := r.Register(ctx, in); err != nil {
		log.Fatal(err)
	}
	defer r.Deregister(context.Background(), in)

	w, err := r.Watch(context.Background(), key)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	list, err := w.Next(ctx) // the current list; later calls block until it changes
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range list {
		fmt.Println(in.ID, in.Addr)
	}
}
