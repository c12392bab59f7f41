package consul_test

import (
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/loadreporttest"
	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry/consul"
)

// A provider's published load (runtime.WithLoadReport) reaches consumers
// of a real Consul within two intervals, is written at most once an
// interval, and republishing keeps the registration alive past its TTL.
func TestPublishedLoad(t *testing.T) {
	url := testservers.ConsulRegistryURL(t, 2*time.Second)
	if url == "" {
		return // skipped: no server
	}
	// An interval of the watch's query interval (DefaultQueryInterval):
	// a watch delivers at most one change a second once its burst is
	// spent, so a faster load report could not be seen sooner.
	loadreporttest.Check(t, url, 2*time.Second, consul.DefaultQueryInterval)
}
