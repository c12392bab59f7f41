package runtime

import (
	"context"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Registration and discovery state, as snapshots for metrics and health
// checks (observability/health): where each export of a Server stands in
// its registry, what each reference of a Client knows of its providers,
// and whether the registries answer.

// ExportStatus is a snapshot of one export of a Server.
type ExportStatus struct {
	Key   ServiceKey
	State ExportState
	// Registered is State == ExportRegistered: the last write to the
	// registry succeeded and the export was not withdrawn since. It says
	// nothing of whether the registry still holds the entry: see
	// RegistryState.Reachable and LastWrite.
	Registered bool
	// LastWrite is when the export was last written to the registry
	// successfully; zero if never.
	LastWrite time.Time
	// Err is the last failed registration attempt, while not registered.
	Err error
}

// Registrations returns a snapshot of every export of the server, sorted
// by service key.
func (s *Server) Registrations() []ExportStatus {
	s.mu.RLock()
	exs := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exs = append(exs, ex)
	}
	s.mu.RUnlock()
	out := make([]ExportStatus, 0, len(exs))
	for _, ex := range exs {
		st := ExportStatus{Key: ex.exp.key, State: ex.State(), Err: ex.Err()}
		st.Registered = st.State == ExportRegistered
		if ns := ex.lastWrite.Load(); ns != 0 {
			st.LastWrite = time.Unix(0, ns)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// ProviderStatus is a snapshot of what one reference of a Client knows of
// its providers.
type ProviderStatus struct {
	Key ServiceKey
	// Known is the number of providers the registry lists; Live those
	// taking calls; Ejected those taken out of rotation after failures
	// (WithEjection), Known - Live.
	Known, Live, Ejected int
}

// ProviderState returns a snapshot of every open reference of the client,
// sorted by service key. Two references of the same key are listed
// twice.
func (c *Client) ProviderState() []ProviderStatus {
	c.mu.Lock()
	refs := make([]*Reference, 0, len(c.refs))
	for r := range c.refs {
		refs = append(refs, r)
	}
	c.mu.Unlock()
	out := make([]ProviderStatus, 0, len(refs))
	for _, r := range refs {
		ps := ProviderStatus{Key: r.key}
		if st := r.state.Load(); st != nil {
			ps.Known, ps.Live = len(st.instances), len(st.live)
			if ps.Live > ps.Known {
				ps.Live = ps.Known
			}
			ps.Ejected = len(st.ends) - len(st.live)
		}
		out = append(out, ps)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// RegistryState says whether a registry answers.
type RegistryState struct {
	// Registry names the registry (its String, if it has one), without
	// credentials.
	Registry string
	// Reachable is whether the last check got an answer.
	Reachable bool
	// Checked is when the last check was made; Err its error.
	Checked time.Time
	Err     error
	// LastReachable is when a check last got an answer; zero if never.
	LastReachable time.Time
}

// Pinger is an optional interface of a registry: Ping checks that it can
// be reached. A registry without it is checked with a Discover of a key
// no one registers, which every adapter answers quickly (an empty list) or
// fails fast when its server is down (registry/registrytest).
type Pinger interface {
	Ping(ctx context.Context) error
}

// probeKey is the key a registry without Ping is checked with.
var probeKey = registry.ServiceKey{Service: "storks.health.Probe"}

// registryProbe checks one registry and remembers the result.
type registryProbe struct {
	mu    sync.Mutex
	state RegistryState
}

// checkRegistry checks reg with timeout and returns its state. Checks of
// one registry made within minAge of the last reuse its result, kept in
// probes (the Server's or Client's).
func checkRegistry(ctx context.Context, probes *sync.Map, reg registry.Registry, timeout, minAge time.Duration) RegistryState {
	p := &registryProbe{}
	if reflect.TypeOf(reg).Comparable() {
		v, _ := probes.LoadOrStore(reg, p)
		p = v.(*registryProbe)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.state.Checked.IsZero() && time.Since(p.state.Checked) < minAge {
		return p.state
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if pg, ok := reg.(Pinger); ok {
		err = pg.Ping(cctx)
	} else {
		_, err = reg.Discover(cctx, probeKey)
	}
	now := time.Now()
	p.state.Registry = registryName(reg)
	p.state.Checked, p.state.Err, p.state.Reachable = now, err, err == nil
	if err == nil {
		p.state.LastReachable = now
	}
	return p.state
}

func registryName(reg registry.Registry) string {
	if s, ok := reg.(interface{ String() string }); ok {
		return registry.RedactURL(s.String())
	}
	return "registry"
}

// CheckRegistry checks whether the server's registry answers, waiting at
// most timeout; a check made less than minAge ago is not repeated. ok is
// false if the server has no registry.
func (s *Server) CheckRegistry(ctx context.Context, timeout, minAge time.Duration) (st RegistryState, ok bool) {
	if s.cfg.registry == nil {
		return RegistryState{}, false
	}
	return checkRegistry(ctx, &s.probes, s.cfg.registry, timeout, minAge), true
}

// CheckRegistries checks every registry the client's references discover
// providers from, as Server.CheckRegistry does, in no particular order.
func (c *Client) CheckRegistries(ctx context.Context, timeout, minAge time.Duration) []RegistryState {
	seen := make(map[registry.Registry]bool)
	var regs []registry.Registry
	if c.cfg.registry != nil {
		seen[c.cfg.registry] = true
		regs = append(regs, c.cfg.registry)
	}
	c.mu.Lock()
	for r := range c.refs {
		if reg := r.disc.reg; reg != nil && !seen[reg] {
			seen[reg] = true
			regs = append(regs, reg)
		}
	}
	c.mu.Unlock()
	out := make([]RegistryState, 0, len(regs))
	for _, reg := range regs {
		out = append(out, checkRegistry(ctx, &c.probes, reg, timeout, minAge))
	}
	return out
}
