package mdns

import (
	"context"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// The shared conformance suite, with real multicast on the loopback
// interface: every client has its own socket on port 5353 and sees the
// others only through the network.
func TestConformance(t *testing.T) {
	url := loURL(t, "")
	registrytest.Run(t, registrytest.Harness{
		Open: func(t *testing.T) registry.Registry {
			r, err := registry.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			return r
		},
		Settle:   10 * time.Second,
		Parallel: true,
	})
}
