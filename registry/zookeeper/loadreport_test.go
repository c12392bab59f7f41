package zookeeper_test

import (
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/loadreporttest"
	"github.com/storks-rpc/storks/internal/testservers"
	_ "github.com/storks-rpc/storks/registry/zookeeper"
)

// A provider's published load (runtime.WithLoadReport) reaches consumers
// of a real ZooKeeper within two intervals, is written at most once an
// interval, and republishing keeps the registration alive past its TTL.
func TestPublishedLoad(t *testing.T) {
	url := testservers.ZooKeeperRegistryURL(t, 4*time.Second)
	if url == "" {
		return // skipped: no server
	}
	loadreporttest.Check(t, url, 4*time.Second, 300*time.Millisecond)
}
