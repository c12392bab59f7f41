package consul

import (
	"context"
	"log/slog"
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
		Rules:    true,
	})
}

// TestRuleOutage: a rule watch keeps its document while the agent is down
// and delivers a change made once it is back (see
// registrytest.RunRuleOutage).
func TestRuleOutage(t *testing.T) {
	agent := testservers.StartConsul(t)
	registrytest.RunRuleOutage(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			return New(ctx, Config{Address: agent.Addr(), TTL: testTTL, Logger: log})
		},
		Addr: agent.Addr(),
		Stop: func(*testing.T) { agent.Stop() },
		Start: func(t *testing.T) {
			if err := agent.Start(); err != nil {
				t.Fatalf("starting the agent again: %v", err)
			}
		},
		Settle: 20 * time.Second,
	})
}

// TestStartWhileDown: a provider and a consumer start while the agent is
// down and work once it is up (see registrytest.RunStartWhileDown).
func TestStartWhileDown(t *testing.T) {
	agent := testservers.StartConsul(t)
	registrytest.RunStartWhileDown(t, registrytest.Outage{
		Open: func(ctx context.Context, log *slog.Logger) (registry.Registry, error) {
			return New(ctx, Config{Address: agent.Addr(), TTL: testTTL, Logger: log})
		},
		Addr: agent.Addr(),
		Stop: func(*testing.T) { agent.Stop() },
		Start: func(t *testing.T) {
			if err := agent.Start(); err != nil {
				t.Fatalf("starting the agent again: %v", err)
			}
		},
		Settle: 20 * time.Second,
	})
}
