package etcd_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/etcd"
)

// A provider registers an instance; it stays registered, through server
// restarts and lost leases, until Deregister or Close.
func Example() {
	ctx := context.Background()
	r, err := registry.Open(ctx, "etcd://127.0.0.1:2379/storks?ttl=10s")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	in := registry.Instance{
		Key:  registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"},
		ID:   "node-1",
		Addr: "10.0.0.7:20880",
	}
	if err := r.Register(ctx, in); err != nil {
		log.Fatal(err)
	}
	defer r.Deregister(ctx, in)
}

// A consumer watches a service: every Next returns the whole current list.
func ExampleNew() {
	ctx := context.Background()
	r, err := etcd.New(ctx, etcd.Config{
		Endpoints: []string{"10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"},
		TTL:       15 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	w, err := r.Watch(ctx, registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	for {
		list, err := w.Next(ctx)
		if err != nil {
			return // the watch or ctx ended; backend failures never end it
		}
		fmt.Println(len(list), "instances")
	}
}
