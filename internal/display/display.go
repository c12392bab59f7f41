package display

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// Age renders how long ago the time in md[key] (Unix milliseconds, as
// registry.MetadataRegisteredAt and registry.MetadataStartedAt hold it)
// was: see Duration. It is "-" if md does not say, or says something else
// than a time.
func Age(md map[string]string, key string, now time.Time) string {
	ms, err := strconv.ParseInt(md[key], 10, 64)
	if err != nil || ms <= 0 {
		return "-"
	}
	return Duration(now.Sub(time.UnixMilli(ms)))
}

// Duration renders d in whole seconds with its two largest units: "45s",
// "3m12s", "5h7m", "3d4h"; "0s" for a negative d (a time ahead of this
// clock).
func Duration(d time.Duration) string {
	d = max(d, 0).Truncate(time.Second)
	switch {
	case d < time.Hour:
		return d.String()
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

// Load renders the load a provider published (registry.MetadataLoad, see
// runtime.WithLoadReport): "1.2k cps, 3 in flight", with ", cpu 42%" if
// it measures CPU; "-" if it publishes none, and the raw value quoted if
// it is not a load.
func Load(md map[string]string) string {
	v, ok := md[registry.MetadataLoad]
	if !ok {
		return "-"
	}
	l, ok := storks.ParseLoad(v)
	if !ok {
		return strconv.Quote(v)
	}
	s := Rate(l.CallsPerSecond) + " cps, " + strconv.Itoa(l.InFlight) + " in flight"
	if l.CPU >= 0 {
		s += fmt.Sprintf(", cpu %.0f%%", 100*l.CPU)
	}
	return s
}

// Rate renders a rate with at most one decimal and a k or M suffix: "0",
// "12.5", "1.2k", "3.4M".
func Rate(f float64) string {
	unit := ""
	switch {
	case f >= 999_950:
		f, unit = f/1e6, "M"
	case f >= 999.95:
		f, unit = f/1e3, "k"
	}
	return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + unit
}
