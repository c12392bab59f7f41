package runtime

import (
	"context"
	"math/rand/v2"
	"sync/atomic"

	"github.com/storks-rpc/storks/registry"
)

// ServiceKey is registry.ServiceKey, repeated here for convenience.
type ServiceKey = registry.ServiceKey

// Selector picks the instance for one call.
//
// Select is called concurrently from every goroutine that calls through a
// reference, with a non-empty list it must not modify, and returns an index
// into it. A selector value belongs to one reference.
type Selector interface {
	Select(ctx context.Context, method string, instances []registry.Instance) int
}

// Random returns a selector that picks uniformly at random.
func Random() Selector { return randomSelector{} }

type randomSelector struct{}

func (randomSelector) Select(_ context.Context, _ string, in []registry.Instance) int {
	return rand.IntN(len(in))
}

// RoundRobin returns a selector that cycles through the instances in order,
// so that n calls over n instances reach each exactly once.
func RoundRobin() Selector { return &roundRobin{} }

type roundRobin struct{ next atomic.Uint64 }

func (r *roundRobin) Select(_ context.Context, _ string, in []registry.Instance) int {
	return int((r.next.Add(1) - 1) % uint64(len(in)))
}
