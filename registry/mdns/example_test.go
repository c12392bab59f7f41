package mdns_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/mdns"
)

// The DNS-SD service type of a key, for announcing or browsing Storks
// providers with other mDNS software (avahi-browse, dns-sd,
// python-zeroconf).
func ExampleServiceType() {
	fmt.Println(mdns.ServiceType(registry.ServiceKey{Service: "helloworld.Greeter"}))
	fmt.Println(mdns.ServiceType(registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"}))
	fmt.Println(mdns.ServiceType(registry.ServiceKey{Service: "helloworld.Greeter@consumers"}))
	// Output:
	// _storks-cwec2wwh._tcp
	// _storks-56ya67ue._tcp
	// _storks-d4gbebjs._tcp
}

// A provider and a consumer on the local network, each with its own
// registry (normally in two processes, or on two hosts).
func Example() {
	ctx := context.Background()
	prov, err := registry.Open(ctx, "mdns://?iface=lo")
	if err != nil {
		log.Fatal(err)
	}
	defer prov.Close() // goodbye packets for what is still registered
	cons, err := registry.Open(ctx, "mdns://?iface=lo")
	if err != nil {
		log.Fatal(err)
	}
	defer cons.Close()

	key := registry.ServiceKey{Service: "helloworld.Greeter", Version: "1.0.0"}
	w, err := cons.Watch(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	in := registry.Instance{Key: key, ID: "provider-1", Addr: "127.0.0.1:20880", Weight: 100,
		Metadata: map[string]string{"zone": "lab"}}
	if err := prov.Register(ctx, in); err != nil { // probes, then announces: about a second
		log.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		list, err := w.Next(wctx)
		if err != nil {
			log.Fatal(err)
		}
		if len(list) == 1 {
			fmt.Println(list[0].ID, list[0].Addr, list[0].Metadata["zone"])
			break
		}
	}
	_ = prov.Deregister(ctx, in) // goodbye: consumers drop it at once
}
