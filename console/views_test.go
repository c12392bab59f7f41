package console

import (
	"strings"
	"testing"
	"time"
)

func TestChart(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	if got := string(chart(nil, now, 5*time.Minute)); !strings.Contains(got, "no load published") || strings.Contains(got, "polyline") {
		t.Errorf("empty chart: %s", got)
	}
	samples := []sample{
		{at: now.Add(-30 * time.Second), cps: 0},
		{at: now.Add(-20 * time.Second), cps: 1500},
		{at: now.Add(-10 * time.Second), cps: 750},
	}
	got := string(chart(samples, now, 5*time.Minute))
	for _, want := range []string{
		`<polyline class="load" points="`,
		// A minute wide: the first sample 30 s before now is half-way.
		`90.0,34.0 `,
		// The peak at the top, the last value held until now.
		`120.0,4.0 150.0,19.0 180.0,19.0"`,
		`750 cps now, peak 1.5k cps over the last 1m0s`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("chart lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "NaN") || strings.Contains(got, "Inf") {
		t.Errorf("chart has NaN or Inf:\n%s", got)
	}
	// Older samples than the window are drawn at its left edge.
	old := []sample{{at: now.Add(-time.Hour), cps: 5}, {at: now, cps: 5}}
	if got := string(chart(old, now, 5*time.Minute)); !strings.Contains(got, `points="0.0,`) {
		t.Errorf("chart of old samples:\n%s", got)
	}
}

func TestRedactErr(t *testing.T) {
	err := errorString(`dial etcd://root:hunter2@10.0.0.1:2379/x?token=abc: refused; consul://tok@h:8500`)
	got := redactErr(err)
	if strings.Contains(got, "hunter2") || strings.Contains(got, "abc") || strings.Contains(got, "tok@") {
		t.Errorf("redactErr left a secret: %s", got)
	}
	if !strings.Contains(got, "etcd://root:redacted@10.0.0.1:2379/x?token=redacted") {
		t.Errorf("redactErr: %s", got)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestSafeBack(t *testing.T) {
	for in, want := range map[string]string{
		"/service?service=a": "/service?service=a",
		"":                   "/",
		"//evil.example/":    "/",
		"https://evil/":      "/",
		"/\\evil":            "/",
	} {
		if got := safeBack(in); got != want {
			t.Errorf("safeBack(%q) = %q, want %q", in, got, want)
		}
	}
}
