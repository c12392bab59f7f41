package consul

import (
	"context"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// TestConformance runs the shared registry suite against a real Consul
// agent, through registry.Open and consul:// URLs.
func TestConformance(t *testing.T) {
	agent := testservers.StartConsul(t)
	url := agent.URL("?ttl=" + testTTL.String())
	registrytest.Run(t, registrytest.Harness{
		Open: func(t *testing.T) registry.Registry {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := registry.Open(ctx, url)
			if err != nil {
				t.Fatalf("Open(%s): %v", url, err)
			}
			return r
		},
		Settle:   10 * time.Second,
		Parallel: true,
	})
}
