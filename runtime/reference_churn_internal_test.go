package runtime

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/storks-rpc/storks/registry"
)

// churnList returns n instances sorted by ID, as registries list them,
// with the metadata a provider registers.
func churnList(n int) []registry.Instance {
	list := make([]registry.Instance, n)
	for i := range list {
		list[i] = registry.Instance{
			Key:  registry.ServiceKey{Service: "bench.Churn", Version: "1.0"},
			ID:   fmt.Sprintf("10.1.%d.%d:7000-%06d", i/250, i%250, i),
			Addr: fmt.Sprintf("10.1.%d.%d:7000", i/250, i%250),
			Metadata: map[string]string{
				"protocols": "storks,grpc", "registered": "2026-12-06T09:00:00Z", "hostname": fmt.Sprintf("host-%d", i), "zone": "z1",
			},
		}
	}
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// cloneInstances copies list as a registry watcher returns each list: new
// metadata maps.
func cloneInstances(list []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(list))
	for i, in := range list {
		out[i] = in.Clone()
	}
	return out
}

func churnRef(tb testing.TB, bal BalancerFactory) (*Client, *Reference) {
	c, err := NewClient()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reference{cl: c, balancer: bal(), cancel: cancel, watcher: registry.NewFeed(ctx)}
	c.mu.Lock()
	c.refs[r] = struct{}{}
	c.mu.Unlock()
	return c, r
}

// BenchmarkChurn measures Reference.update per list change with 1,000
// providers: one instance removed, then added back, each list a fresh copy
// as watchers return them.
func BenchmarkChurn(b *testing.B) {
	for _, bc := range []struct {
		name string
		f    BalancerFactory
	}{{"RoundRobin", RoundRobin()}, {"LeastLoaded", LeastLoaded()}, {"ConsistentHash", ConsistentHash()}} {
		b.Run(bc.name, func(b *testing.B) {
			full := churnList(1000)
			less := slices.Delete(slices.Clone(full), 500, 501)
			const copies = 8
			var lists [2 * copies][]registry.Instance
			for i := range copies {
				lists[2*i], lists[2*i+1] = cloneInstances(less), cloneInstances(full)
			}
			_, r := churnRef(b, bc.f)
			r.update(cloneInstances(full), 0)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r.update(lists[i%len(lists)], 0)
			}
		})
	}
}

// TestUpdateKeepsAcquisitions changes a reference's list at random and
// checks after each change that its endpoints are the list's, that each
// address is acquired once per listing, and that unchanged instances keep
// their Endpoint.
func TestUpdateKeepsAcquisitions(t *testing.T) {
	c, r := churnRef(t, RoundRobin())
	base := churnList(40)
	// Some instances share an address.
	for i := 30; i < 40; i++ {
		base[i].Addr = base[i-30].Addr
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var prev *refState
	for step := range 400 {
		var list []registry.Instance
		for _, in := range base {
			if rng.IntN(3) == 0 {
				continue
			}
			in = in.Clone()
			switch rng.IntN(8) {
			case 0:
				in.Metadata["load"] = fmt.Sprint(rng.IntN(3))
			case 1:
				in.Weight = rng.IntN(3)
			case 2:
				in.Addr = base[rng.IntN(len(base))].Addr
			}
			list = append(list, in)
		}
		if step%50 == 49 {
			rng.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		}
		if step%97 == 0 {
			list = nil
		}
		r.update(list, 0)
		st := r.state.Load()
		c.mu.Lock()
		err := checkUpdate(c, st, prev, list)
		c.mu.Unlock()
		if err != "" {
			t.Fatalf("step %d: %s", step, err)
		}
		prev = st
	}
}

// checkUpdate returns what is wrong with st, the state update installed
// for list after prev. c.mu must be held.
func checkUpdate(c *Client, st, prev *refState, list []registry.Instance) string {
	want := map[string]int{}
	for i, in := range list {
		want[in.Addr]++
		e := st.ends[i]
		if !sameInst(e.inst, in) || e.ep != st.eps[i] || e.ep.addr != in.Addr {
			return fmt.Sprintf("endpoint %d is %+v on %s, want %+v", i, e.inst, e.ep.addr, in)
		}
		if prev != nil && sorted(list) && sorted(prev.instances) {
			for _, pe := range prev.ends {
				if sameInst(pe.inst, in) && pe != e {
					return fmt.Sprintf("unchanged instance %s got a new Endpoint", in.ID)
				}
			}
		}
	}
	if len(c.pool) != len(want) {
		return fmt.Sprintf("the pool has %d addresses, the list %d", len(c.pool), len(want))
	}
	for addr, n := range want {
		if ep := c.pool[addr]; ep == nil || ep.refs != n {
			return fmt.Sprintf("%s is acquired %v times, listed %d", addr, ep, n)
		}
	}
	return ""
}

func sorted(list []registry.Instance) bool {
	return slices.IsSortedFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
}

func sameInst(a, b registry.Instance) bool {
	return a.Key == b.Key && a.ID == b.ID && a.Addr == b.Addr && a.Weight == b.Weight && maps.Equal(a.Metadata, b.Metadata)
}
