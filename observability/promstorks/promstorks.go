package promstorks

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Metrics is an OpenTelemetry MeterProvider whose metrics a Prometheus
// registry exposes.
type Metrics struct {
	reg      *prometheus.Registry
	provider *sdkmetric.MeterProvider
}

type config struct {
	reg       *prometheus.Registry
	goMetrics bool
	views     []sdkmetric.View
}

// Option configures New.
type Option func(*config)

// WithRegistry exposes the metrics in reg instead of a new registry.
func WithRegistry(reg *prometheus.Registry) Option { return func(c *config) { c.reg = reg } }

// WithGoMetrics adds the Go runtime and process collectors of
// client_golang to the registry.
func WithGoMetrics() Option { return func(c *config) { c.goMetrics = true } }

// WithView adds an OpenTelemetry view, to rename a metric, drop an
// attribute or change histogram buckets.
func WithView(v sdkmetric.View) Option { return func(c *config) { c.views = append(c.views, v) } }

// New returns a MeterProvider exporting to a Prometheus registry: give
// MeterProvider to otelstorks.WithMeterProvider and to
// health.Source.RegisterMetrics, and serve Handler on /metrics.
func New(opts ...Option) (*Metrics, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.reg == nil {
		c.reg = prometheus.NewRegistry()
	}
	if c.goMetrics {
		c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(c.reg))
	if err != nil {
		return nil, err
	}
	popts := []sdkmetric.Option{sdkmetric.WithReader(exp)}
	for _, v := range c.views {
		popts = append(popts, sdkmetric.WithView(v))
	}
	return &Metrics{reg: c.reg, provider: sdkmetric.NewMeterProvider(popts...)}, nil
}

// MeterProvider returns the provider whose metrics the registry exposes.
func (m *Metrics) MeterProvider() metric.MeterProvider { return m.provider }

// Registry returns the Prometheus registry.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler returns the HTTP handler of the metrics, in the Prometheus text
// format (or OpenMetrics, if the scraper asks for it).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Shutdown stops the provider: collections return nothing afterwards.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.provider.Shutdown(ctx) }
