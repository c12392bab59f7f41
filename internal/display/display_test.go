package display_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/display"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Minute, "0s"},
		{0, "0s"},
		{45*time.Second + 900*time.Millisecond, "45s"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{5*time.Hour + 7*time.Minute + 59*time.Second, "5h7m"},
		{47*time.Hour + 59*time.Minute, "47h59m"},
		{76 * time.Hour, "3d4h"},
	} {
		if got := display.Duration(c.d); got != c.want {
			t.Errorf("Duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	at := func(d time.Duration) map[string]string {
		return map[string]string{registry.MetadataRegisteredAt: strconv.FormatInt(now.Add(-d).UnixMilli(), 10)}
	}
	for _, c := range []struct {
		md   map[string]string
		want string
	}{
		{at(90 * time.Second), "1m30s"},
		{at(-time.Hour), "0s"}, // ahead of this clock
		{nil, "-"},
		{map[string]string{registry.MetadataRegisteredAt: "yesterday"}, "-"},
		{map[string]string{registry.MetadataRegisteredAt: "-5"}, "-"},
	} {
		if got := display.Age(c.md, registry.MetadataRegisteredAt, now); got != c.want {
			t.Errorf("Age(%v) = %q, want %q", c.md, got, c.want)
		}
	}
}

func TestLoadAndRate(t *testing.T) {
	for _, c := range []struct {
		md   map[string]string
		want string
	}{
		{nil, "-"},
		{map[string]string{registry.MetadataLoad: storks.Load{CallsPerSecond: 1234, InFlight: 3, CPU: -1, At: time.UnixMilli(1_700_000_000_000)}.String()}, "1.2k cps, 3 in flight"},
		{map[string]string{registry.MetadataLoad: storks.Load{CallsPerSecond: 12.5, InFlight: 0, CPU: 0.42, At: time.UnixMilli(1_700_000_000_000)}.String()}, "12.5 cps, 0 in flight, cpu 42%"},
		{map[string]string{registry.MetadataLoad: "hot"}, `"hot"`},
	} {
		if got := display.Load(c.md); got != c.want {
			t.Errorf("Load(%v) = %q, want %q", c.md, got, c.want)
		}
	}
	for f, want := range map[float64]string{0: "0", 12.5: "12.5", 999.9: "999.9", 999.96: "1k", 3.4e6: "3.4M", 999_949: "999.9k"} {
		if got := display.Rate(f); got != want {
			t.Errorf("Rate(%v) = %q, want %q", f, got, want)
		}
	}
}

func ExampleLoad() {
	md := map[string]string{registry.MetadataLoad: storks.Load{CallsPerSecond: 2480, InFlight: 7, CPU: 0.31, At: time.Now()}.String()}
	fmt.Println(display.Load(md))
	// Output: 2.5k cps, 7 in flight, cpu 31%
}
