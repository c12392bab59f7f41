package console

import (
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/internal/display"
	"github.com/storks-rpc/storks/registry"
)

// banner says that the registry is unreachable.
type banner struct {
	Err    string
	Since  string
	LastOK string
}

// live is the part of a page that /events re-renders.
type live struct {
	View     string // "services" or "service"
	Banner   *banner
	Loading  bool
	NoRules  string // why this registry cannot keep rules, if it cannot
	Services []serviceRow
	Service  *serviceView
	CanWrite bool
	CSRF     string
	Back     string
	Now      string
}

type serviceRow struct {
	Key         registry.ServiceKey
	Query       string
	Providers   int
	Disabled    int
	Consumers   int
	Health      string
	HealthClass string
	Rules       string
}

type serviceView struct {
	serviceRow
	ProviderRows []providerRow
	ConsumerRows []consumerRow
	RuleErr      string
}

type providerRow struct {
	ID         string
	Addr       string
	Registered int
	Weight     int
	Age        string
	Load       string
	Chart      template.HTML
	Disabled   bool
	Tag        string
	Changed    bool
	Metadata   string
	RuleWeight bool // the weight comes from a rule
	RuleTag    bool // the tag comes from a rule
}

type consumerRow struct {
	Application string
	Addr        string
	Host        string
	PID         string
	Age         string
	Version     string
}

// keyQuery is the query string naming k.
func keyQuery(k registry.ServiceKey) string {
	v := url.Values{"service": {k.Service}}
	if k.Version != "" {
		v.Set("version", k.Version)
	}
	if k.Group != "" {
		v.Set("group", k.Group)
	}
	return v.Encode()
}

var funcs = template.FuncMap{
	"dash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"keyQuery": keyQuery,
	"plural":   plural,
	"args":     func(l live, k registry.ServiceKey, addr string) hiddenArgs { return hiddenArgs{l, k, addr} },
}

// snapshot builds the live part of a page from the state; key is the
// service of a service page (nil for the services page).
func (c *Console) snapshot(key *registry.ServiceKey) (live, bool) {
	now := c.opts.Now()
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	l := live{View: "services", Now: now.Format("15:04:05")}
	if c.rules == nil {
		l.NoRules = fmt.Sprintf("This registry (%T) cannot store rules: the console can show it, not change it.", c.reg)
	}
	if c.st.err != nil {
		b := &banner{Err: redactErr(c.st.err), Since: c.st.errSince.Format("15:04:05")}
		if !c.st.lastOK.IsZero() {
			b.LastOK = c.st.lastOK.Format("15:04:05")
		}
		l.Banner = b
	} else if !c.st.listed {
		l.Loading = true
	}
	if key != nil {
		l.View = "service"
		s, ok := c.st.services[*key]
		if !ok {
			return l, false
		}
		v := c.serviceViewLocked(s, now)
		l.Service = &v
		return l, true
	}
	keys := make([]registry.ServiceKey, 0, len(c.st.services))
	for k := range c.st.services {
		keys = append(keys, k)
	}
	registry.SortKeys(keys)
	for _, k := range keys {
		l.Services = append(l.Services, c.serviceViewLocked(c.st.services[k], now).serviceRow)
	}
	return l, true
}

func (c *Console) serviceViewLocked(s *svcState, now time.Time) serviceView {
	v := serviceView{serviceRow: serviceRow{Key: s.key, Query: keyQuery(s.key), Providers: len(s.providers), Consumers: len(s.consumers)}}
	for _, in := range s.providers {
		e := s.rules.EffectOn(in)
		if e.Disabled {
			v.Disabled++
		}
		p := providerRow{
			ID: in.ID, Addr: in.Addr, Registered: in.EffectiveWeight(), Weight: e.Weight,
			Age: display.Age(in.Metadata, registry.MetadataRegisteredAt, now), Load: display.Load(in.Metadata),
			Disabled: e.Disabled, Tag: e.Tag, Changed: e.Changed,
			Metadata:   formatMetadata(in.Metadata, registry.MetadataRegisteredAt, registry.MetadataLoad, registry.MetadataTag),
			RuleWeight: e.Weight != in.EffectiveWeight(), RuleTag: e.Tag != in.Metadata[registry.MetadataTag],
		}
		p.Chart = chart(s.loads[in.ID], now, c.opts.History)
		v.ProviderRows = append(v.ProviderRows, p)
	}
	slices.SortFunc(v.ProviderRows, func(a, b providerRow) int { return strings.Compare(a.Addr, b.Addr) })
	for _, in := range s.consumers {
		v.ConsumerRows = append(v.ConsumerRows, consumerRow{
			Application: in.Metadata[registry.MetadataApplication], Addr: in.Addr,
			Host: in.Metadata[registry.MetadataHostname], PID: in.Metadata[registry.MetadataPID],
			Age:     display.Age(in.Metadata, registry.MetadataStartedAt, now),
			Version: in.Metadata[registry.MetadataStorks],
		})
	}
	enabled := v.Providers - v.Disabled
	switch {
	case v.Providers == 0:
		v.Health, v.HealthClass = "no providers", "bad"
	case enabled == 0:
		v.Health, v.HealthClass = "all disabled", "bad"
	case v.Disabled > 0:
		v.Health, v.HealthClass = fmt.Sprintf("%d of %d enabled", enabled, v.Providers), "warn"
	default:
		v.Health, v.HealthClass = "ok", "ok"
	}
	switch {
	case s.ruleErr != nil:
		v.Rules = "invalid"
		v.RuleErr = s.ruleErr.Error()
	case s.rules != nil:
		v.Rules = s.rules.Summary()
	default:
		v.Rules = "none"
	}
	return v
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// formatMetadata renders the metadata left, as k=v pairs sorted by key.
func formatMetadata(md map[string]string, leaveOut ...string) string {
	var parts []string
	for k, v := range md {
		if !slices.Contains(leaveOut, k) {
			parts = append(parts, k+"="+v)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// chart draws the calls per second of samples over the window ending at
// now as a small SVG line chart. It holds only numbers that it formats
// itself, so it is safe HTML.
func chart(samples []sample, now time.Time, window time.Duration) template.HTML {
	const w, h = 180.0, 36.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" width="%g" height="%g" role="img">`, w, h, w, h)
	if len(samples) == 0 {
		b.WriteString(`<title>no load published</title><line x1="0" y1="35.5" x2="180" y2="35.5" class="axis"/></svg>`)
		return template.HTML(b.String())
	}
	peak := 1.0
	for _, s := range samples {
		peak = max(peak, s.cps)
	}
	// The x axis spans the samples (at least a minute), up to the window.
	window = min(max(now.Sub(samples[0].at), time.Minute), window)
	start := now.Add(-window)
	x := func(t time.Time) float64 {
		return min(max(float64(t.Sub(start))/float64(window)*w, 0), w)
	}
	y := func(v float64) float64 { return h - 2 - v/peak*(h-6) }
	last := samples[len(samples)-1]
	fmt.Fprintf(&b, `<title>%s cps now, peak %s cps over the last %v</title>`, display.Rate(last.cps), display.Rate(peak), window.Round(time.Second))
	b.WriteString(`<line x1="0" y1="35.5" x2="180" y2="35.5" class="axis"/><polyline class="load" points="`)
	for i, s := range samples {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x(s.at), y(s.cps))
	}
	// The last value holds until now.
	fmt.Fprintf(&b, ` %.1f,%.1f"/>`, w, y(last.cps))
	fmt.Fprintf(&b, `<text x="2" y="9" class="peak">%s</text></svg>`, display.Rate(peak))
	return template.HTML(b.String())
}

// hiddenArgs are the arguments of the provider-hidden template.
type hiddenArgs struct {
	L    live
	Key  registry.ServiceKey
	Addr string
}
