package runtime

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Balancing. A reference has one Balancer, made by the factory given to
// WithBalancer. Each time the reference's live endpoints change (a new
// provider list from the registry, an ejection or a readmission), the
// runtime calls Build with them, under the client's lock, and installs the
// Picker it returns; every call then asks that picker for its endpoint. The
// runtime keeps each endpoint's live counters (in-flight attempts, EWMA
// latency and error rate) with atomics, and updates them when an attempt
// ends, before it calls the picker's Done.

// Balancer chooses the endpoints of one reference's calls.
//
// Build returns the picker for endpoints, the reference's live endpoints
// (never empty), in the registry's order. It is called once per change of
// that list, never concurrently with itself, and must not keep endpoints
// beyond the picker it returns. Calls in flight may still use the previous
// picker for a while.
type Balancer interface {
	Build(endpoints []*Endpoint) Picker
}

// Picker picks the endpoint of one attempt of a call.
//
// Pick is called concurrently from every goroutine that calls through the
// reference; it must be fast and should not allocate. It returns one of the
// endpoints its Balancer built it with, and optionally a Done function the
// runtime calls once when the attempt ends. An error fails the call with
// it (an *Error keeps its code).
type Picker interface {
	Pick(ctx context.Context, info PickInfo) (PickResult, error)
}

// PickInfo describes the attempt a Picker chooses for.
type PickInfo struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// HashKey is the call's hash key (WithHashKey), or "".
	HashKey string
	// Attempt is 1 for a call's first attempt, 2 and more for retries and
	// a hedged second request. For those the runtime prefers an endpoint
	// the call has not tried: a picker may return the same one, and the
	// runtime then takes another.
	Attempt int
}

// PickResult is a Picker's choice.
type PickResult struct {
	Endpoint *Endpoint
	// Done, if not nil, is called once when the attempt ends.
	Done func(DoneInfo)
}

// DoneInfo is how an attempt ended.
type DoneInfo struct {
	// Err is the attempt's error, nil if it succeeded.
	Err error
	// Latency is the attempt's duration: from the pick to the reply (or
	// the failure), or to the stream's opening.
	Latency time.Duration
}

// BalancerFactory makes a Balancer for one reference, so that no balancer
// is shared by two references.
type BalancerFactory func() Balancer

// WithBalancer sets how a reference picks an endpoint per call (default
// RoundRobin). A nil factory, or one that returns nil, is an error.
func WithBalancer(f BalancerFactory) ReferOption {
	if f == nil {
		return reject("WithBalancer", "balancer factory is nil")
	}
	return referFunc(func(c *referConfig) { c.balancer = f })
}

// WithHashKey sets the call's hash key, which hashing balancers
// (ConsistentHash) map to an endpoint: calls with the same key go to the
// same provider while the provider list stays the same.
func WithHashKey(key string) CallOption {
	return callFunc(func(c *callConfig) { c.hashKey = key })
}

// hashKeyKey carries a stream's hash key from NewStream, through the
// stream interceptors, to the pick.
type hashKeyKey struct{}

// Endpoint is one provider instance of a reference, as a balancer sees it:
// the registry entry, and live counters the runtime keeps for the address
// (shared by every reference of the Client that calls it).
type Endpoint struct {
	inst registry.Instance
	ep   *endpoint
}

// Instance returns the endpoint's registry entry. Its Metadata map is
// shared: do not modify it.
func (e *Endpoint) Instance() registry.Instance { return e.inst }

// Addr returns the address calls go to.
func (e *Endpoint) Addr() string { return e.inst.Addr }

// Weight returns the registered weight: 0 for a provider exported
// WithWeight(0), which weighted balancers send nothing unless every weight
// is 0, and registry.DefaultWeight for one that set no weight.
func (e *Endpoint) Weight() int { return e.inst.EffectiveWeight() }

// InFlight returns the number of attempts under way to the endpoint's
// address from this client.
func (e *Endpoint) InFlight() int64 { return e.ep.load.inflight.Load() }

// Latency returns the exponentially weighted moving average of the recent
// attempts' latency (each new attempt weighs 1/8), or 0 before the first
// attempt ended.
func (e *Endpoint) Latency() time.Duration { return time.Duration(e.ep.load.latency.Load()) }

// ErrorRate returns the exponentially weighted moving average (each new
// attempt weighs 1/8) of the share of recent attempts that failed by a
// fault of the provider or its address: no connection, a broken one, a
// timeout, or a reply with CodeUnavailable or CodeResourceExhausted.
func (e *Endpoint) ErrorRate() float64 {
	return float64(e.ep.load.errRate.Load()) / errRateOne
}

// epLoad is the live load of an address, kept without locks.
type epLoad struct {
	inflight atomic.Int64
	latency  atomic.Int64  // EWMA, ns
	errRate  atomic.Uint32 // EWMA, in 1/errRateOne
}

const errRateOne = 1 << 20

// ewmaShift makes each new sample weigh 1/8.
const ewmaShift = 3

// begin counts an attempt's start; end is called with its result.
func (l *epLoad) begin() time.Time {
	l.inflight.Add(1)
	return time.Now()
}

func (l *epLoad) end(start time.Time, failed bool) time.Duration {
	lat := time.Since(start)
	l.inflight.Add(-1)
	for {
		old := l.latency.Load()
		next := int64(lat)
		if old != 0 {
			next = old + (int64(lat)-old)>>ewmaShift
		}
		if l.latency.CompareAndSwap(old, next) {
			break
		}
	}
	var sample int64
	if failed {
		sample = errRateOne
	}
	for {
		old := l.errRate.Load()
		next := uint32(int64(old) + (sample-int64(old))>>ewmaShift)
		if l.errRate.CompareAndSwap(old, next) {
			break
		}
	}
	return lat
}

// faulty reports whether an attempt's result counts as a fault of the
// provider for ErrorRate.
func faulty(o outcome, err error) bool {
	switch o {
	case outNoConn, outBroken, outTimeout:
		return true
	}
	if err == nil {
		return false
	}
	c := CodeOf(err)
	return c == CodeUnavailable || c == CodeResourceExhausted
}

// RoundRobin returns a factory of balancers that cycle through the
// endpoints in order, so that n calls over n endpoints reach each exactly
// once. It ignores weights.
func RoundRobin() BalancerFactory {
	return func() Balancer { return &roundRobin{} }
}

// roundRobin keeps its counter across builds, so that a list change does
// not send the next calls to the first endpoints again.
type roundRobin struct{ next atomic.Uint64 }

func (b *roundRobin) Build(eps []*Endpoint) Picker { return &rrPicker{b: b, eps: eps} }

type rrPicker struct {
	b   *roundRobin
	eps []*Endpoint
}

func (p *rrPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	i := (p.b.next.Add(1) - 1) % uint64(len(p.eps))
	return PickResult{Endpoint: p.eps[i]}, nil
}

// Random returns a factory of balancers that pick uniformly at random,
// ignoring weights.
func Random() BalancerFactory {
	return func() Balancer { return randomBalancer{} }
}

type randomBalancer struct{}

func (randomBalancer) Build(eps []*Endpoint) Picker { return randomPicker(eps) }

type randomPicker []*Endpoint

func (p randomPicker) Pick(context.Context, PickInfo) (PickResult, error) {
	return PickResult{Endpoint: p[rand.IntN(len(p))]}, nil
}
