package zookeeper_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/zookeeper"
)

// A provider registers an instance and a consumer watches its key. (Not run:
// it needs a ZooKeeper server on 127.0.0.1:2181.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// registry.Open works once this package is imported...
	prov, err := registry.Open(ctx, "zookeeper://127.0.0.1:2181/storks?session-timeout=10s")
	if err != nil {
		log.Fatal(err)
	}
	defer prov.Close()
	// ...and New takes a Config.
	cons, err := zookeeper.New(ctx, zookeeper.Config{Servers: []string{"127.0.0.1:2181"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cons.Close()

	key := registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0"}
	err = prov.Register(ctx, registry.Instance{Key: key, ID: "host-1:8080", Addr: "10.0.0.5:8080"})
	if err != nil {
		log.Fatal(err)
	}
	w, err := cons.Watch(context.Background(), key)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	for {
		list, err := w.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(len(list), "instances")
		if len(list) > 0 {
			return
		}
	}
}
