package etcd_test

import (
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/loadreporttest"
	"github.com/storks-rpc/storks/internal/testservers"
	_ "github.com/storks-rpc/storks/registry/etcd"
)

// A provider's published load (runtime.WithLoadReport) reaches consumers
// of a real etcd within two intervals, is written at most once an
// interval, and republishing keeps the registration alive past its TTL.
func TestPublishedLoad(t *testing.T) {
	url := testservers.EtcdRegistryURL(t, 2*time.Second)
	if url == "" {
		return // skipped: no server
	}
	loadreporttest.Check(t, url, 2*time.Second, 300*time.Millisecond)
}
