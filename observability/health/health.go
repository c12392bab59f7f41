package health

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	storks "github.com/storks-rpc/storks/runtime"
)

// Defaults of the registry checks.
const (
	// DefaultCheckTimeout bounds one check of a registry.
	DefaultCheckTimeout = time.Second
	// DefaultCheckInterval is how long a registry check's result is
	// reused: scrapes and probes more frequent than this do not load the
	// registry.
	DefaultCheckInterval = 2 * time.Second
)

// Source is what a Handler or the metrics look at: servers (their exports)
// and clients (their references).
type Source struct {
	servers []*storks.Server
	clients []*storks.Client

	timeout, interval time.Duration
}

// Option configures New.
type Option func(*Source)

// WithServer watches the exports of srv and its registry.
func WithServer(srv *storks.Server) Option {
	return func(s *Source) { s.servers = append(s.servers, srv) }
}

// WithClient watches the references of cli and their registries.
func WithClient(cli *storks.Client) Option {
	return func(s *Source) { s.clients = append(s.clients, cli) }
}

// WithRegistryCheck sets how long one registry check may take (default
// DefaultCheckTimeout) and how long its result is reused (default
// DefaultCheckInterval).
func WithRegistryCheck(timeout, interval time.Duration) Option {
	return func(s *Source) { s.timeout, s.interval = timeout, interval }
}

// New returns a Source of the servers and clients given.
func New(opts ...Option) *Source {
	s := &Source{timeout: DefaultCheckTimeout, interval: DefaultCheckInterval}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Report is a snapshot of the state a Source watches.
type Report struct {
	Exports    []ExportReport
	References []storks.ProviderStatus
	Registries []RegistryReport
}

// ExportReport is one export with the state of its server's registry.
type ExportReport struct {
	storks.ExportStatus
	// RegistryReachable is whether the server's registry answered its
	// last check; true when the server has none.
	RegistryReachable bool
	// Stale: registered, but the registry cannot be reached, so whether
	// it still lists the export is unknown (a lease may expire).
	Stale bool
}

// RegistryReport is one registry, checked from the server's or the
// client's side.
type RegistryReport struct {
	Side string // "server" or "client"
	storks.RegistryState
}

// Check takes a snapshot, checking the registries (at most once per
// interval each).
func (s *Source) Check(ctx context.Context) Report {
	var r Report
	for _, srv := range s.servers {
		reachable := true
		if st, ok := srv.CheckRegistry(ctx, s.timeout, s.interval); ok {
			reachable = st.Reachable
			r.Registries = append(r.Registries, RegistryReport{Side: "server", RegistryState: st})
		}
		for _, ex := range srv.Registrations() {
			r.Exports = append(r.Exports, ExportReport{ExportStatus: ex, RegistryReachable: reachable, Stale: ex.Registered && !reachable})
		}
	}
	for _, cli := range s.clients {
		r.References = append(r.References, cli.ProviderState()...)
		for _, st := range cli.CheckRegistries(ctx, s.timeout, s.interval) {
			r.Registries = append(r.Registries, RegistryReport{Side: "client", RegistryState: st})
		}
	}
	return r
}

// ReadyOption configures Handler.
type ReadyOption func(*readiness)

type readiness struct {
	allowUnregistered bool
	allowNoProvider   bool
	requireRegistry   bool
}

// AllowUnregistered keeps the handler ready while an export is not
// registered (by default it is not ready).
func AllowUnregistered() ReadyOption { return func(r *readiness) { r.allowUnregistered = true } }

// AllowNoProvider keeps the handler ready while a reference has no live
// provider (by default it is not ready).
func AllowNoProvider() ReadyOption { return func(r *readiness) { r.allowNoProvider = true } }

// RequireRegistry makes the handler not ready while a registry cannot be
// reached. By default an unreachable registry is reported but does not
// make the process not ready: the exports stay registered (stale) and the
// references keep their providers, and an orchestrator that restarted
// every process whose registry is down would turn a registry outage into
// an outage of the service.
func RequireRegistry() ReadyOption { return func(r *readiness) { r.requireRegistry = true } }

// Problems returns what makes the report not ready under opts, one
// sentence each; none means ready.
func (r Report) Problems(opts ...ReadyOption) []string {
	var rd readiness
	for _, o := range opts {
		o(&rd)
	}
	var out []string
	for _, ex := range r.Exports {
		switch ex.State {
		case storks.ExportRegistered, storks.ExportNoRegistry, storks.ExportRemoved:
		default:
			if !rd.allowUnregistered {
				msg := fmt.Sprintf("export %s is %s", ex.Key, ex.State)
				if ex.Err != nil {
					msg += ": " + ex.Err.Error()
				}
				out = append(out, msg)
			}
		}
	}
	for _, ref := range r.References {
		if ref.Live == 0 && !rd.allowNoProvider {
			out = append(out, fmt.Sprintf("reference %s has no live provider (%d known, %d ejected)", ref.Key, ref.Known, ref.Ejected))
		}
	}
	if rd.requireRegistry {
		for _, reg := range r.Registries {
			if !reg.Reachable {
				out = append(out, fmt.Sprintf("%s registry %s is unreachable: %v", reg.Side, reg.Registry, reg.Err))
			}
		}
	}
	return out
}

// Handler returns an HTTP handler for readiness probes ("/healthz"): 200
// and "ok" while the source is ready under opts, 503 and one line per
// problem otherwise. Either way the body then lists every export,
// reference and registry with its state, for people.
func (s *Source) Handler(opts ...ReadyOption) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r := s.Check(req.Context())
		problems := r.Problems(opts...)
		var b strings.Builder
		if len(problems) == 0 {
			b.WriteString("ok\n")
		} else {
			b.WriteString("not ready\n")
			for _, p := range problems {
				b.WriteString("problem: " + p + "\n")
			}
		}
		for _, ex := range r.Exports {
			fmt.Fprintf(&b, "export %s: %s", ex.Key, ex.State)
			if ex.Stale {
				b.WriteString(" (stale: registry unreachable)")
			}
			if !ex.LastWrite.IsZero() {
				fmt.Fprintf(&b, ", last registry write %s ago", time.Since(ex.LastWrite).Round(time.Millisecond))
			}
			b.WriteString("\n")
		}
		for _, ref := range r.References {
			fmt.Fprintf(&b, "reference %s: %d known, %d live, %d ejected\n", ref.Key, ref.Known, ref.Live, ref.Ejected)
		}
		for _, reg := range r.Registries {
			state := "reachable"
			if !reg.Reachable {
				state = fmt.Sprintf("unreachable (%v)", reg.Err)
			}
			fmt.Fprintf(&b, "%s registry %s: %s\n", reg.Side, reg.Registry, state)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte(b.String()))
	})
}

// The metrics of RegisterMetrics.
const (
	MetricExportRegistered        = "storks.export.registered"
	MetricExportLastWriteAge      = "storks.export.last_write.age"
	MetricExportRegistryReachable = "storks.export.registry.reachable"
	MetricReferenceProviders      = "storks.reference.providers"
	MetricRegistryReachable       = "storks.registry.reachable"
)

// RegisterMetrics registers the source's state as observable gauges of
// mp, read at each collection (a Prometheus scrape, a periodic export):
//
//   - storks.export.registered (1 or 0), storks.export.last_write.age (s,
//     since the last successful registry write; absent if none) and
//     storks.export.registry.reachable (1 or 0) per export, with
//     storks.service, storks.service.version, storks.service.group and
//     storks.export.state;
//   - storks.reference.providers per reference and
//     storks.provider.state (known, live, ejected);
//   - storks.registry.reachable (1 or 0) per registry and storks.side
//     (server, client), with storks.registry naming it.
//
// Every label is bounded by the exports, references and registries of the
// process. The returned function unregisters them.
func (s *Source) RegisterMetrics(mp metric.MeterProvider) (unregister func() error, err error) {
	m := mp.Meter(ScopeName)
	registered, err := m.Int64ObservableGauge(MetricExportRegistered, metric.WithDescription("Whether the export's last registry write succeeded and it was not withdrawn since (1) or not (0)."))
	if err != nil {
		return nil, err
	}
	age, err := m.Float64ObservableGauge(MetricExportLastWriteAge, metric.WithUnit("s"), metric.WithDescription("Time since the export was last written to the registry successfully."))
	if err != nil {
		return nil, err
	}
	expReach, err := m.Int64ObservableGauge(MetricExportRegistryReachable, metric.WithDescription("Whether the registry of the export's server answered its last check (1) or not (0)."))
	if err != nil {
		return nil, err
	}
	providers, err := m.Int64ObservableGauge(MetricReferenceProviders, metric.WithDescription("Providers of a reference: known (listed by the registry), live (taking calls) and ejected."))
	if err != nil {
		return nil, err
	}
	regReach, err := m.Int64ObservableGauge(MetricRegistryReachable, metric.WithDescription("Whether the registry answered its last check (1) or not (0)."))
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex // one collection at a time checks the registries
	reg, err := m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		mu.Lock()
		defer mu.Unlock()
		r := s.Check(ctx)
		now := time.Now()
		for _, ex := range r.Exports {
			attrs := metric.WithAttributes(keyAttrs(ex.Key, attribute.String("storks.export.state", ex.State.String()))...)
			o.ObserveInt64(registered, b2i(ex.Registered), attrs)
			o.ObserveInt64(expReach, b2i(ex.RegistryReachable), attrs)
			if !ex.LastWrite.IsZero() {
				o.ObserveFloat64(age, now.Sub(ex.LastWrite).Seconds(), attrs)
			}
		}
		for _, ref := range r.References {
			for _, p := range [...]struct {
				state string
				n     int
			}{{"known", ref.Known}, {"live", ref.Live}, {"ejected", ref.Ejected}} {
				o.ObserveInt64(providers, int64(p.n), metric.WithAttributes(keyAttrs(ref.Key, attribute.String("storks.provider.state", p.state))...))
			}
		}
		for _, rr := range r.Registries {
			o.ObserveInt64(regReach, b2i(rr.Reachable), metric.WithAttributes(attribute.String("storks.side", rr.Side), attribute.String("storks.registry", rr.Registry)))
		}
		return nil
	}, registered, age, expReach, providers, regReach)
	if err != nil {
		return nil, err
	}
	return reg.Unregister, nil
}

// ScopeName is the instrumentation scope of the state metrics.
const ScopeName = "github.com/storks-rpc/storks/observability/health"

func keyAttrs(k storks.ServiceKey, more ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{
		attribute.String("storks.service", k.Service),
		attribute.String("storks.service.version", k.Version),
		attribute.String("storks.service.group", k.Group),
	}, more...)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
