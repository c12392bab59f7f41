package promstorks_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/observability/health"
	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/observability/otelstorks"
	"github.com/storks-rpc/storks/observability/promstorks"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/etcd"
	storks "github.com/storks-rpc/storks/runtime"
)

// scrape fetches url and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the scrape does not parse: %v", err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include want, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		labels := make(map[string]string)
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestScrapeOfARunningProviderAndARegistryOutage: a provider and a
// consumer on a real etcd, instrumented with otelstorks and exposed with
// promstorks and health. The scrape parses and has the RPC and the
// registration metrics; with etcd stopped the registry is unreachable and
// the export is registered but stale; with etcd back it recovers; the
// health handlers follow.
func TestScrapeOfARunningProviderAndARegistryOutage(t *testing.T) {
	etcd := testservers.StartEtcd(t)
	url := etcd.URL(fmt.Sprintf("/obs-%d?ttl=2s", time.Now().UnixNano()))
	open := func() registry.Registry {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := registry.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}

	m, err := promstorks.New()
	if err != nil {
		t.Fatal(err)
	}
	mp := otelstorks.WithMeterProvider(m.MeterProvider())
	srv := testsvc.Start(t, &testsvc.Echo{Name: "p"}, []storks.ServerOption{
		storks.WithRegistry(open()),
		storks.WithStatsHandler(otelstorks.NewServerHandler(mp)),
	}, storks.WithVersion("1.0"))
	cli, err := storks.NewClient(storks.WithRegistry(open()), storks.WithStatsHandler(otelstorks.NewClientHandler(mp)))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, testsvc.Service, storks.WithVersion("1.0"), storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, func() bool { return len(ref.Providers()) == 1 })
	for range 5 {
		if _, err := testsvc.Call(ctx, ref, "x"); err != nil {
			t.Fatal(err)
		}
	}

	src := health.New(health.WithServer(srv), health.WithClient(cli), health.WithRegistryCheck(500*time.Millisecond, 0))
	unregister, err := src.RegisterMetrics(m.MeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	defer unregister()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle("/healthz", src.Handler())
	mux.Handle("/readyz", src.Handler(health.RequireRegistry()))
	hs := httptest.NewServer(mux)
	defer hs.Close()

	key := map[string]string{"storks_service": testsvc.Service, "storks_service_version": "1.0"}
	server := map[string]string{"storks_side": "server"}
	fams := scrape(t, hs.URL+"/metrics")
	rpc := map[string]string{"rpc_method": "obs.test.Echo/Echo", "rpc_response_status_code": "OK", "rpc_system_name": "storks", "storks_service_version": "1.0"}
	if n, ok := value(fams, "rpc_server_call_duration_seconds", rpc); !ok || n != 5 {
		t.Fatalf("rpc_server_call_duration_seconds %v %v; families %v", n, ok, names(fams))
	}
	if n, ok := value(fams, "rpc_client_call_duration_seconds", rpc); !ok || n != 5 {
		t.Fatalf("rpc_client_call_duration_seconds %v %v", n, ok)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"storks_export_registered", key, 1},
		{"storks_export_registry_reachable", key, 1},
		{"storks_registry_reachable", server, 1},
		{"storks_registry_reachable", map[string]string{"storks_side": "client"}, 1},
		{"storks_reference_providers", with(key, "storks_provider_state", "live"), 1},
		{"storks_reference_providers", with(key, "storks_provider_state", "known"), 1},
		{"storks_reference_providers", with(key, "storks_provider_state", "ejected"), 0},
	} {
		if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
			t.Fatalf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := value(fams, "storks_export_last_write_age_seconds", key); !ok {
		t.Fatalf("no storks_export_last_write_age_seconds; families %v", names(fams))
	}
	logScrape(t, hs.URL+"/metrics")
	if code, body := get(t, hs.URL+"/readyz"); code != 200 {
		t.Fatalf("readyz before the outage: %d %s", code, body)
	}

	// The registry goes away.
	etcd.Stop()
	testsvc.WaitFor(t, func() bool {
		v, ok := value(scrape(t, hs.URL+"/metrics"), "storks_registry_reachable", server)
		return ok && v == 0
	})
	fams = scrape(t, hs.URL+"/metrics")
	if v, _ := value(fams, "storks_export_registered", key); v != 1 {
		t.Fatalf("during the outage storks_export_registered = %v, want 1 (registered, stale)", v)
	}
	if v, _ := value(fams, "storks_export_registry_reachable", key); v != 0 {
		t.Fatalf("during the outage storks_export_registry_reachable = %v, want 0", v)
	}
	age1, _ := value(fams, "storks_export_last_write_age_seconds", key)
	if code, body := get(t, hs.URL+"/healthz"); code != 200 || !strings.Contains(body, "stale") {
		t.Fatalf("healthz during the outage: %d %s", code, body)
	}
	code, body := get(t, hs.URL+"/readyz")
	if code != 503 || !strings.Contains(body, "unreachable") {
		t.Fatalf("readyz (RequireRegistry) during the outage: %d %s", code, body)
	}
	t.Logf("readyz during the outage:\n%s", body)
	// Calls keep working on the last known providers.
	if _, err := testsvc.Call(ctx, ref, "x"); err != nil {
		t.Fatalf("call during the outage: %v", err)
	}

	// The registry comes back.
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, func() bool {
		f := scrape(t, hs.URL+"/metrics")
		s, _ := value(f, "storks_registry_reachable", server)
		c, _ := value(f, "storks_registry_reachable", map[string]string{"storks_side": "client"})
		e, _ := value(f, "storks_export_registry_reachable", key)
		return s == 1 && c == 1 && e == 1
	})
	fams = scrape(t, hs.URL+"/metrics")
	if v, _ := value(fams, "storks_export_registered", key); v != 1 {
		t.Fatalf("after the outage storks_export_registered = %v", v)
	}
	if age2, _ := value(fams, "storks_export_last_write_age_seconds", key); age2 < age1 {
		t.Fatalf("last write age went from %v to %v with no write", age1, age2)
	}
	if code, body := get(t, hs.URL+"/readyz"); code != 200 || strings.Contains(body, "stale") {
		t.Fatalf("readyz after the outage: %d %s", code, body)
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for a, b := range m {
		out[a] = b
	}
	return out
}

func names(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	return out
}

// logScrape logs the Storks lines of a scrape, for the README.
func logScrape(t *testing.T, url string) {
	_, body := get(t, url)
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if (strings.Contains(l, "storks_") || strings.HasPrefix(l, "rpc_") || strings.HasPrefix(l, "# TYPE rpc_")) && !strings.Contains(l, "_bucket{") {
			lines = append(lines, l)
		}
	}
	t.Logf("scrape:\n%s", strings.Join(lines, "\n"))
}
