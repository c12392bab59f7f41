package main

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

var palette = map[string]string{
	"storks":           "#d62728",
	"grpc-go":          "#1f77b4",
	peers.GRPCToStorks: "#17becf",
	peers.StorksOTel:   "#ff9896",
	peers.GRPCOTel:     "#aec7e8",
	"rpcx":             "#2ca02c",
	"kitex":            "#9467bd",
	"kitex-mux":        "#8c564b",
	"kitex-grpc":       "#e377c2",
	"tcp-pingpong":     "#7f7f7f",
	"tcp-mux":          "#111111",
	"tcp-pipelined":    "#bcbd22",
}

// chart draws calls/s against callers (log scale) at 581 B, one line per
// row; reference rows dashed.
func (rep *report) chart() string {
	var scens []*scenario
	for _, s := range rep.scenarios {
		if s.Size == payload.Rpcx && !s.Smoke && s.Stream == 0 {
			scens = append(scens, s)
		}
	}
	slices.SortFunc(scens, func(a, b *scenario) int { return a.Callers - b.Callers })
	const (
		W, H                   = 820, 460
		left, right, top, bott = 80, 190, 50, 60
	)
	pw, ph := float64(W-left-right), float64(H-top-bott)
	// Log scale on both axes: the references are an order of magnitude
	// above the frameworks.
	minThr, maxThr := math.Inf(1), 0.0
	for _, s := range scens {
		for _, r := range s.rows {
			if r.failed == "" && r.thr > 0 {
				minThr = math.Min(minThr, r.thr)
				maxThr = math.Max(maxThr, r.thr)
			}
		}
	}
	if maxThr == 0 {
		minThr, maxThr = 1, 10
	}
	yLo, yHi := niceBelow(minThr), niceAbove(maxThr)
	if yHi <= yLo {
		yHi = yLo * 10
	}
	minC, maxC := 1.0, 1000.0
	if len(scens) > 0 {
		minC, maxC = float64(scens[0].Callers), float64(scens[len(scens)-1].Callers)
	}
	if maxC <= minC {
		maxC = minC * 10
	}
	x := func(c int) float64 {
		return float64(left) + pw*(math.Log10(float64(c))-math.Log10(minC))/(math.Log10(maxC)-math.Log10(minC))
	}
	y := func(v float64) float64 {
		return float64(top) + ph*(1-(math.Log10(v)-math.Log10(yLo))/(math.Log10(yHi)-math.Log10(yLo)))
	}

	var b strings.Builder
	f := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	f(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	f(`<text x="%d" y="22" font-size="15" font-weight="bold">Throughput against concurrency, 581 B message, GOMAXPROCS=%d</text>`+"\n", left, rep.cfg.procs)
	f(`<text x="%d" y="38" fill="#555">median calls/s over %d rounds (%s mode, %s); dashed: plain-TCP references</text>`+"\n", left, rep.cfg.repeats, rep.cfg.mode, rep.began.UTC().Format("2006-01-02"))
	for dec := math.Pow(10, math.Floor(math.Log10(yLo))); dec < yHi*1.01; dec *= 10 {
		for _, m := range []float64{1, 2, 5} {
			v := dec * m
			if v < yLo*0.99 {
				continue
			}
			if v > yHi*1.01 {
				break
			}
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			f(`<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", left, y(v), float64(left)+pw, y(v), stroke)
			f(`<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", left-6, y(v), shortNum(v))
		}
	}
	for _, s := range scens {
		f(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(s.Callers), top, x(s.Callers), float64(top)+ph)
		f(`<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x(s.Callers), float64(top)+ph+18, s.Callers)
	}
	f(`<text x="%.1f" y="%d" text-anchor="middle">concurrent callers (log scale)</text>`+"\n", float64(left)+pw/2, H-14)
	f(`<text x="18" y="%.1f" text-anchor="middle" transform="rotate(-90 18 %.1f)">calls/s (log scale)</text>`+"\n", float64(top)+ph/2, float64(top)+ph/2)
	f(`<rect x="%d" y="%d" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", left, top, pw, ph)

	ly := top + 10
	for _, sp := range rep.specs {
		if sp.StreamOnly {
			continue // not in the unary scenarios drawn
		}
		color := palette[sp.Name]
		if color == "" {
			color = "#000"
		}
		dash := ""
		if sp.Kind == peers.Reference {
			dash = ` stroke-dasharray="6 4"`
		}
		width := 2.0
		if sp.Kind == peers.Subject {
			width = 3.5
		}
		var pts []string
		for _, s := range scens {
			r := s.row(sp.Name)
			if r == nil || r.failed != "" {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.Callers), y(r.thr)))
		}
		if len(pts) > 1 {
			f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>`+"\n", strings.Join(pts, " "), color, width, dash)
		}
		for _, p := range pts {
			xy := strings.Split(p, ",")
			f(`<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`+"\n", xy[0], xy[1], color)
		}
		lx := W - right + 16
		f(`<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%.1f"%s/>`+"\n", lx, ly, lx+26, ly, color, width, dash)
		f(`<text x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", lx+32, ly, sp.Name)
		ly += 20
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceBelow returns the largest 1, 2 or 5 times a power of ten <= v.
func niceBelow(v float64) float64 {
	dec := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if dec*m <= v {
			return dec * m
		}
	}
	return dec
}

// niceAbove returns the smallest 1, 2 or 5 times a power of ten >= v.
func niceAbove(v float64) float64 {
	dec := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if dec*m >= v {
			return dec * m
		}
	}
	return dec * 10
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", v/1e6), "0"), ".0") + "M"
	case v >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	}
	return fmt.Sprintf("%.0f", v)
}
