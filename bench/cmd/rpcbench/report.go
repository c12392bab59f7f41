package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

type scenario struct {
	Callers int // callers, or streams in a streaming scenario
	Size    int
	Smoke   bool
	Large   bool // a large unary scenario: Storks and grpc-go only
	Rounds  int
	Stream  peers.StreamKind // 0: unary calls
	Reply   int              // encoded size of the reply
	Cells   []cell

	specs []peers.Spec // the rows that ran it; nil: every row of the report
	rows  []*rowStat
}

// rowStat is one row of a scenario: medians over the rounds.
type rowStat struct {
	spec   peers.Spec
	failed string
	notRun bool // the row takes no part in this scenario

	thr, p50, p99, p999, allocs, bytes, cpu, sys, rw float64
	vsBest, vsMux, vsGRPC                            float64 // medians of per-round throughput ratios; NaN if none
}

type report struct {
	cfg        config
	specs      []peers.Spec
	scenarios  []*scenario
	began      time.Time
	elapsed    time.Duration
	perfNote   string
	loadBefore string
	loadAfter  string
	profileErr string

	targets []target
}

type target struct {
	what, where, measured, need, result string
}

func (s *scenario) name() string {
	if s.Stream != 0 {
		n := fmt.Sprintf("%s, %s, %d stream", payload.Name(s.Size), s.Stream, s.Callers)
		if s.Callers != 1 {
			n += "s"
		}
		return n
	}
	n := fmt.Sprintf("%s, %d caller", payload.Name(s.Size), s.Callers)
	if s.Callers != 1 {
		n += "s"
	}
	if s.Smoke {
		n += " (smoke test)"
	}
	if s.Large {
		n += " (large unary)"
	}
	return n
}

func (s *scenario) cells(peer string) []cell {
	var out []cell
	for _, c := range s.Cells {
		if c.Peer == peer {
			out = append(out, c)
		}
	}
	return out
}

func (s *scenario) cell(peer string, round int) *cell {
	for i := range s.Cells {
		if c := &s.Cells[i]; c.Peer == peer && c.Round == round {
			return c
		}
	}
	return nil
}

func (s *scenario) row(name string) *rowStat {
	for _, r := range s.rows {
		if r.spec.Name == name {
			return r
		}
	}
	return nil
}

// usable reports whether the row ran without a failed call in every round.
func (s *scenario) usable(name string) bool {
	r := s.row(name)
	return r != nil && r.failed == "" && !r.notRun
}

// bestPeer returns the peer (kind Peer, no failure) with the highest
// throughput in round, or "".
func (s *scenario) bestPeer(round int) string {
	best, bestThr := "", 0.0
	for _, r := range s.rows {
		if r.spec.Kind != peers.Peer || r.failed != "" || r.notRun {
			continue
		}
		if c := s.cell(r.spec.Name, round); c != nil && c.Throughput > bestThr {
			best, bestThr = r.spec.Name, c.Throughput
		}
	}
	return best
}

// roundRatio returns the median over rounds of f(round), skipping rounds
// where f reports !ok.
func (s *scenario) roundRatio(f func(round int) (float64, bool)) float64 {
	var v []float64
	for r := 1; r <= s.Rounds; r++ {
		if x, ok := f(r); ok {
			v = append(v, x)
		}
	}
	return median(v)
}

func (s *scenario) thrRatio(name string, other func(round int) string) float64 {
	if !s.usable(name) {
		return math.NaN()
	}
	return s.roundRatio(func(r int) (float64, bool) {
		o := other(r)
		if o == "" || !s.usable(o) {
			return 0, false
		}
		a, b := s.cell(name, r), s.cell(o, r)
		if a == nil || b == nil || b.Throughput == 0 {
			return 0, false
		}
		return a.Throughput / b.Throughput, true
	})
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func medianOf(cs []cell, f func(c cell) float64) float64 {
	v := make([]float64, 0, len(cs))
	for _, c := range cs {
		x := f(c)
		if x < 0 {
			return -1 // not measured in some round
		}
		v = append(v, x)
	}
	return median(v)
}

// compute fills the rows and the targets. It reports whether any row failed.
func (rep *report) compute() (failed bool) {
	for _, s := range rep.scenarios {
		specs := s.specs
		if specs == nil {
			specs = rep.specs
		}
		for _, spec := range specs {
			r := &rowStat{spec: spec}
			cs := s.cells(spec.Name)
			for _, c := range cs {
				if !c.ok() {
					r.failed = fmt.Sprintf("round %d: %s", c.Round, c.Err)
					failed = true
					break
				}
			}
			if r.failed == "" && len(cs) > 0 {
				r.thr = medianOf(cs, func(c cell) float64 { return c.Throughput })
				r.p50 = medianOf(cs, func(c cell) float64 { return float64(c.P50) })
				r.p99 = medianOf(cs, func(c cell) float64 { return float64(c.P99) })
				r.p999 = medianOf(cs, func(c cell) float64 { return float64(c.P999) })
				r.allocs = medianOf(cs, func(c cell) float64 { return c.Allocs })
				r.bytes = medianOf(cs, func(c cell) float64 { return c.Bytes })
				r.cpu = medianOf(cs, func(c cell) float64 { return c.CPU })
				r.sys = medianOf(cs, func(c cell) float64 { return c.Syscalls })
				r.rw = medianOf(cs, func(c cell) float64 { return c.RWSyscalls })
			} else if r.failed == "" {
				r.notRun = true
			}
			s.rows = append(s.rows, r)
		}
		for _, r := range s.rows {
			r.vsBest = s.thrRatio(r.spec.Name, s.bestPeer)
			r.vsMux = s.thrRatio(r.spec.Name, func(int) string { return peers.MuxReference })
			r.vsGRPC = s.thrRatio(r.spec.Name, func(int) string { return "grpc-go" })
		}
	}
	rep.computeTargets()
	return failed
}

func (rep *report) find(callers, size int) *scenario {
	return rep.findStream(0, callers, size)
}

// findStream finds the streaming scenario of kind with streams streams of
// size bytes (kind 0: the unary scenario of callers).
func (rep *report) findStream(kind peers.StreamKind, streams, size int) *scenario {
	for _, s := range rep.scenarios {
		if s.Stream == kind && s.Callers == streams && s.Size == size && !s.Smoke && !s.Large {
			return s
		}
	}
	return nil
}

func passMiss(ok bool) string {
	if ok {
		return "**PASS**"
	}
	return "**MISS**"
}

const notMeasured = "not measured"

func (rep *report) computeTargets() {
	add := func(what, where, measured, need string, ok bool, valid bool) {
		res := passMiss(ok)
		if !valid {
			res = "—"
			if measured == "" {
				measured = notMeasured
			}
		}
		rep.targets = append(rep.targets, target{what, where, measured, need, res})
	}
	thrTarget := func(callers int, need float64, what string) {
		s := rep.find(callers, payload.Rpcx)
		where := fmt.Sprintf("%d callers, 581 B", callers)
		if callers == 1 {
			where = "1 caller, 581 B"
		}
		if s == nil || !s.usable("storks") {
			add(what, where, failedOr(s), fmt.Sprintf("≥ %.1f×", need), false, false)
			return
		}
		r := s.row("storks").vsBest
		add(what, where, fmtRatio(r)+" best peer"+bestPeersNote(s), fmt.Sprintf("≥ %.1f×", need), r >= need, !math.IsNaN(r))
	}
	if !slices.ContainsFunc(rep.scenarios, func(s *scenario) bool { return !s.Large && !s.Smoke && s.Stream == 0 }) {
		// -mode large, or -sizes none: no unary target was measured.
		rep.largeTargets(add)
		if slices.ContainsFunc(rep.scenarios, func(s *scenario) bool { return s.Stream != 0 }) {
			rep.streamTargets(add)
		}
		return
	}
	thrTarget(64, 1.3, "Throughput vs the best peer")
	if s := rep.find(64, payload.Rpcx); s != nil && s.usable("storks") && s.usable("grpc-go") {
		r := s.thrRatio("storks", func(int) string { return "grpc-go" })
		add("Throughput vs grpc-go", "64 callers, 581 B", fmtRatio(r)+" grpc-go", "≥ 2.0×", r >= 2, !math.IsNaN(r))
	} else {
		add("Throughput vs grpc-go", "64 callers, 581 B", failedOr(rep.find(64, payload.Rpcx)), "≥ 2.0×", false, false)
	}
	thrTarget(1, 1.2, "Throughput vs the best peer")
	thrTarget(1000, 1.3, "Throughput vs the best peer")
	if s := rep.find(1000, payload.Rpcx); s != nil && s.usable("storks") {
		r := s.roundRatio(func(round int) (float64, bool) {
			b := s.bestPeer(round)
			if b == "" {
				return 0, false
			}
			a, o := s.cell("storks", round), s.cell(b, round)
			if a == nil || o == nil || o.P99 == 0 {
				return 0, false
			}
			return float64(a.P99) / float64(o.P99), true
		})
		st := s.row("storks")
		add("p99 latency vs the best peer's", "1000 callers, 581 B",
			fmt.Sprintf("%s of the best peer's p99 (Storks %s)", fmtRatio(r), fmtDur(st.p99)), "≤ 1.0×", r <= 1, !math.IsNaN(r))
	} else {
		add("p99 latency vs the best peer's", "1000 callers, 581 B", failedOr(rep.find(1000, payload.Rpcx)), "≤ 1.0×", false, false)
	}
	// Allocations and bytes: the worst 581 B scenario.
	var worstA, worstB float64 = -1, -1
	var whereA, whereB []string
	for _, s := range rep.scenarios {
		if s.Size != payload.Rpcx || s.Smoke || s.Large || s.Stream != 0 || !s.usable("storks") {
			continue
		}
		st := s.row("storks")
		worstA = math.Max(worstA, st.allocs)
		worstB = math.Max(worstB, st.bytes)
		whereA = append(whereA, fmt.Sprintf("%.1f at %d", st.allocs, s.Callers))
		whereB = append(whereB, fmt.Sprintf("%.0f at %d", st.bytes, s.Callers))
	}
	add("Allocations per call (client + server)", "581 B, every caller count", "worst "+fmt.Sprintf("%.1f", worstA)+" ("+strings.Join(whereA, ", ")+")", "≤ 20", worstA <= 20, worstA >= 0)
	add("Bytes allocated per call (client + server)", "581 B, every caller count", "worst "+fmt.Sprintf("%.0f B", worstB)+" ("+strings.Join(whereB, ", ")+")", "≤ 2048 B", worstB <= 2048, worstB >= 0)
	if s := rep.find(64, payload.Rpcx); s != nil && s.usable("storks") && s.usable(peers.MuxReference) {
		r := s.row("storks").vsMux
		add("Share of the plain multiplexed TCP reference", "64 callers, 581 B", fmtRatio(r)+" tcp-mux", "≥ 0.5×", r >= 0.5, !math.IsNaN(r))
	} else {
		add("Share of the plain multiplexed TCP reference", "64 callers, 581 B", failedOr(rep.find(64, payload.Rpcx)), "≥ 0.5×", false, false)
	}
	rep.largeTargets(add)
	if s := rep.find(64, payload.Rpcx); s != nil && s.usable("storks") {
		st := s.row("storks")
		switch {
		case st.sys >= 0:
			add("System calls per call (every syscall, perf)", "64 callers, 581 B", fmt.Sprintf("%.2f (%.2f of them read/write)", st.sys, st.rw), "≤ 1", st.sys <= 1, true)
		case st.rw >= 0:
			add("System calls per call (read+write only: perf unavailable, a lower bound)", "64 callers, 581 B", fmt.Sprintf("%.2f", st.rw), "≤ 1", st.rw <= 1, true)
		default:
			add("System calls per call", "64 callers, 581 B", "", "≤ 1", false, false)
		}
	} else {
		add("System calls per call", "64 callers, 581 B", failedOr(rep.find(64, payload.Rpcx)), "≤ 1", false, false)
	}
	rep.grpcClientTargets(add)
	rep.otelTargets(add)
	rep.streamTargets(add)
}

// The targets of the instrumented rows (issue 14), at 64 callers of 581 B:
// instrumented Storks against instrumented grpc-go, and instrumented Storks
// against plain Storks (what the instrumentation costs).
const (
	otelVsGRPCNeed = 1.5
	otelCostNeed   = 0.75
)

func (rep *report) otelTargets(add func(what, where, measured, need string, ok, valid bool)) {
	s := rep.find(64, payload.Rpcx)
	if s == nil {
		return
	}
	const where = "64 callers, 581 B"
	ratio := func(what, a, b string, need float64) {
		n := fmt.Sprintf("≥ %.2f×", need)
		if !s.usable(a) || !s.usable(b) {
			add(what, where, failedRows(s, a, b), n, false, false)
			return
		}
		r := s.thrRatio(a, func(int) string { return b })
		m := fmt.Sprintf("%s (%s / %s; %s vs %s calls/s)", fmtRatio(r), a, b, fmtInt(s.row(a).thr), fmtInt(s.row(b).thr))
		add(what, where, m, n, r >= need, !math.IsNaN(r))
	}
	ratio("Instrumented throughput: Storks + OpenTelemetry vs grpc-go + otelgrpc", peers.StorksOTel, peers.GRPCOTel, otelVsGRPCNeed)
	ratio("Cost of OpenTelemetry: Storks + OpenTelemetry vs plain Storks", peers.StorksOTel, "storks", otelCostNeed)
}

// grpcClientNeed is the target of the grpc-go→storks row: a Storks server
// serves grpc-go's client at least this share of the calls/s a grpc-go
// server does (issue 16).
const grpcClientNeed = 0.95

// grpcClientRatio is the grpc-go→storks row's calls/s over the grpc-go
// row's, per round, median: the same client, a Storks server against a
// grpc-go one.
func (s *scenario) grpcClientRatio() float64 {
	return s.thrRatio(peers.GRPCToStorks, func(int) string { return "grpc-go" })
}

// grpcClientTargets adds, for every 581 B unary scenario, the target of
// the grpc-go→storks row against the grpc-go row.
func (rep *report) grpcClientTargets(add func(what, where, measured, need string, ok, valid bool)) {
	var scens []*scenario
	for _, s := range rep.scenarios {
		if s.Size == payload.Rpcx && !s.Smoke && !s.Large && s.Stream == 0 {
			scens = append(scens, s)
		}
	}
	slices.SortFunc(scens, func(a, b *scenario) int { return a.Callers - b.Callers })
	const what = "gRPC clients: Storks server vs grpc-go server (grpc-go client)"
	need := fmt.Sprintf("≥ %.2f×", grpcClientNeed)
	for _, s := range scens {
		where := fmt.Sprintf("%d callers, 581 B", s.Callers)
		if s.Callers == 1 {
			where = "1 caller, 581 B"
		}
		if !s.usable(peers.GRPCToStorks) || !s.usable("grpc-go") {
			add(what, where, failedRows(s, peers.GRPCToStorks, "grpc-go"), need, false, false)
			continue
		}
		r := s.grpcClientRatio()
		m := fmt.Sprintf("%s (grpc-go client: storks server / grpc-go server; %s vs %s calls/s)",
			fmtRatio(r), fmtInt(s.row(peers.GRPCToStorks).thr), fmtInt(s.row("grpc-go").thr))
		add(what, where, m, need, r >= grpcClientNeed, !math.IsNaN(r))
	}
}

// The targets of the large unary scenarios, per size: throughput at least
// grpc-go's, and at most twice the payload allocated per call.
const (
	largeThrNeed   = 1.0
	largeAllocNeed = 2.0
)

// allocRatio is the bytes a row allocated per call (client and server
// together) over the payload bytes a call moves (request and reply): how
// many times each side allocates what it sends or receives.
func (s *scenario) allocRatio(name string) float64 {
	r := s.row(name)
	if r == nil || !s.usable(name) {
		return math.NaN()
	}
	p, err := payload.New(s.Size)
	if err != nil {
		return math.NaN()
	}
	return r.bytes / float64(p.Size+p.Reply)
}

func (rep *report) largeTargets(add func(what, where, measured, need string, ok, valid bool)) {
	for _, s := range rep.scenarios {
		if !s.Large {
			continue
		}
		where := fmt.Sprintf("%d callers, %s", s.Callers, payload.Name(s.Size))
		need := fmt.Sprintf("≥ %.1f×", largeThrNeed)
		if s.usable("storks") && s.usable("grpc-go") {
			r := s.thrRatio("storks", func(int) string { return "grpc-go" })
			add("Large unary throughput vs grpc-go", where, fmtRatio(r)+" grpc-go", need, r >= largeThrNeed, !math.IsNaN(r))
		} else {
			add("Large unary throughput vs grpc-go", where, failedOr(s), need, false, false)
		}
		need = fmt.Sprintf("≤ %.1f×", largeAllocNeed)
		if a := s.allocRatio("storks"); !math.IsNaN(a) {
			add("Large unary bytes allocated per call ÷ payload (request + reply)", where,
				fmt.Sprintf("%s (grpc-go %s)", fmtRatio(a), fmtRatio(s.allocRatio("grpc-go"))), need, a <= largeAllocNeed, true)
		} else {
			add("Large unary bytes allocated per call ÷ payload (request + reply)", where, failedOr(s), need, false, false)
		}
	}
}

func failedOr(s *scenario) string {
	return failedRows(s, "storks")
}

// failedRows says why a target of scenario s over rows names has no
// figure.
func failedRows(s *scenario, names ...string) string {
	if s == nil {
		return notMeasured + " (scenario not in this run)"
	}
	for _, n := range names {
		r := s.row(n)
		if r == nil || r.notRun {
			return notMeasured + " (" + n + " not in this run)"
		}
		if r.failed != "" {
			return n + " FAILED: " + r.failed
		}
	}
	return notMeasured
}

// The message size of the large-message streaming target, and the bound on
// the bytes allocated per message there, in messages.
const (
	largeStreamSize     = payload.Large
	largeStreamMaxAlloc = 3
)

// streamTargets adds the streaming targets: Storks against grpc-go in the
// same rounds, messages/s (MB/s for 1 MiB), and the bytes allocated per
// 1 MiB message.
func (rep *report) streamTargets(add func(what, where, measured, need string, ok, valid bool)) {
	thr := func(what string, kind peers.StreamKind, streams, size int, need float64) {
		s := rep.findStream(kind, streams, size)
		where := streamWhere(kind, streams, size)
		needS := fmt.Sprintf("≥ %.1f×", need)
		if s == nil || !s.usable("storks") || !s.usable("grpc-go") {
			add(what, where, failedRows(s, "storks", "grpc-go"), needS, false, false)
			return
		}
		r := s.row("storks").vsGRPC
		m := fmt.Sprintf("%s grpc-go (Storks %s, grpc-go %s)", fmtRatio(r), fmtRate(s, s.row("storks")), fmtRate(s, s.row("grpc-go")))
		add(what, where, m, needS, r >= need, !math.IsNaN(r))
	}
	thr("Server-streaming messages/s vs grpc-go", peers.ServerStreaming, 1, payload.Rpcx, 1.5)
	thr("Server-streaming messages/s vs grpc-go", peers.ServerStreaming, 64, payload.Rpcx, 1.5)
	thr("Bidi echo messages/s vs grpc-go", peers.Bidi, 64, payload.Rpcx, 1.5)
	thr("Large-message streaming MB/s vs grpc-go", peers.ServerStreaming, 1, largeStreamSize, 1.0)

	what := "Bytes allocated per 1 MiB message (client + server)"
	where := streamWhere(peers.ServerStreaming, 1, largeStreamSize)
	need := fmt.Sprintf("≤ %d× the message (%s B)", largeStreamMaxAlloc, fmtInt(largeStreamMaxAlloc*largeStreamSize))
	s := rep.findStream(peers.ServerStreaming, 1, largeStreamSize)
	if s == nil || !s.usable("storks") {
		add(what, where, failedRows(s, "storks"), need, false, false)
		return
	}
	st := s.row("storks")
	m := fmt.Sprintf("%s B = %.2f× the message", fmtInt(st.bytes), st.bytes/largeStreamSize)
	if g := s.row("grpc-go"); g != nil && g.failed == "" {
		m += fmt.Sprintf(" (grpc-go %.2f×)", g.bytes/largeStreamSize)
	}
	add(what, where, m, need, st.bytes <= largeStreamMaxAlloc*largeStreamSize, true)
}

func streamWhere(kind peers.StreamKind, streams, size int) string {
	n := fmt.Sprintf("%s, %d stream", payload.Name(size), streams)
	if streams != 1 {
		n += "s"
	}
	if kind == peers.Bidi {
		return n + ", bidi lockstep"
	}
	return n + ", " + kind.String()
}

// fmtRate is a streaming row's rate: messages/s, or MB/s (10^6 bytes of
// message) from 16 KiB up.
func fmtRate(s *scenario, r *rowStat) string {
	if s.Size >= payload.Medium {
		return fmt.Sprintf("%s MB/s", fmtInt(r.thr*float64(s.Reply)/1e6))
	}
	return fmtInt(r.thr) + " msgs/s"
}

// bestPeersNote names which peers were the best in the rounds.
func bestPeersNote(s *scenario) string {
	count := map[string]int{}
	for r := 1; r <= s.Rounds; r++ {
		if b := s.bestPeer(r); b != "" {
			count[b]++
		}
	}
	var names []string
	for n := range count {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d/%d", n, count[n], s.Rounds))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (best peer per round: " + strings.Join(parts, ", ") + ")"
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

func fmtDur(ns float64) string {
	if math.IsNaN(ns) || ns < 0 {
		return "—"
	}
	d := time.Duration(ns)
	switch {
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", ns/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", ns/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case d >= 100*time.Microsecond:
		return fmt.Sprintf("%.0f µs", ns/1e3)
	}
	return fmt.Sprintf("%.1f µs", ns/1e3)
}

func fmtInt(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func fmtOpt(x float64, format string) string {
	if x < 0 || math.IsNaN(x) {
		return "—"
	}
	return fmt.Sprintf(format, x)
}

// cpuModel returns the model name from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// storksRevision reads the commit of the working tree (read-only git).
func storksRevision() string {
	out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no", "--", "runtime", "registry", "go.mod").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += " + uncommitted changes in runtime/registry"
	}
	return rev
}

func (rep *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	cfg := rep.cfg
	w("# Storks benchmark results\n\n")
	w("Written by `make bench` (`bench/cmd/rpcbench`); do not edit, rerun. Chart: [throughput.svg](throughput.svg). ")
	w("How the harness works and how to read this: [README.md](README.md).\n\n")
	w("## Run\n\n")
	w("| | |\n|---|---|\n")
	w("| date | %s |\n", rep.began.UTC().Format("2006-01-02 15:04 MST"))
	w("| mode | %s: %d rounds per scenario, %v measured per cell, %v warm-up per row and scenario; rows interleaved, order rotated every round; figures are medians over the rounds |\n", cfg.mode, cfg.repeats, cfg.dur, cfg.warmup)
	w("| machine | %s, %d logical CPUs, GOMAXPROCS=%d, Linux %s |\n", cpuModel(), runtime.NumCPU(), cfg.procs, kernel())
	w("| load average | %s before, %s after (the machine is shared: expect noise) |\n", rep.loadBefore, rep.loadAfter)
	w("| Go | %s |\n", runtime.Version())
	w("| Storks | %s |\n", storksRevision())
	w("| peers | %s |\n", strings.Join(moduleVersions(), ", "))
	w("| syscalls/op | %s |\n", rep.perfNote)
	w("| total time | %v |\n\n", rep.elapsed.Round(time.Second))

	w("## Targets\n\n")
	w("Storks against the issue's targets. Throughput ratios are the median over the rounds of the per-round ratio (both rows measured in the same round); the best peer is the fastest of grpc-go, rpcx, kitex and kitex-mux in that round; the streaming targets compare with grpc-go; the gRPC-client targets compare the %s row (grpc-go's client, a Storks server) with the grpc-go row (the same client, a grpc-go server).\n\n", peers.GRPCToStorks)
	w("| target | scenario | measured | need | result |\n|---|---|---|---|---|\n")
	for _, t := range rep.targets {
		w("| %s | %s | %s | %s | %s |\n", t.what, t.where, t.measured, t.need, t.result)
	}
	w("\n")
	// The profile-backed reading of the targets is kept by hand in
	// ANALYSIS.md, next to the numbers it explains.
	if notes, err := os.ReadFile("ANALYSIS.md"); err == nil {
		w("%s\n", notes)
	}

	w("## Results\n\n")
	w("Per row: calls/s = completed calls / measured window; `× best peer` and `× tcp-mux` = this row's calls/s over the best peer's and over the plain multiplexed reference's, per round, median; ")
	w("p50/p99/p99.9 from per-call timings; allocs/op and B/op = heap allocations (runtime.MemStats) of the whole process during the window / calls, so client and server together; ")
	w("CPU µs/op = process user+system CPU (getrusage) / calls, both sides and the GC; syscalls/op = every system call of the process (perf); r+w/op = read and write system calls only (/proc/self/io). ")
	w("The tcp-* rows are plain Go over the same loopback with the same bytes and no marshalling: physical limits, not frameworks. FAILED rows had a failed or wrong call and are not reported.\n\n")
	var order, streams []*scenario
	for _, s := range rep.scenarios {
		if s.Stream != 0 {
			streams = append(streams, s)
		} else {
			order = append(order, s)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		ki, kj := sizeOrder(order[i]), sizeOrder(order[j])
		if ki != kj {
			return ki < kj
		}
		return order[i].Callers < order[j].Callers
	})
	for _, s := range order {
		w("### %s\n\n", s.name())
		w("| row | calls/s | × best peer | × tcp-mux | p50 | p99 | p99.9 | allocs/op | B/op | CPU µs/op | syscalls/op | r+w/op |\n")
		w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range s.rows {
			if r.notRun {
				continue
			}
			name := r.spec.Name
			if r.spec.Kind == peers.Subject {
				name = "**" + name + "**"
			}
			if r.failed != "" {
				w("| %s | FAILED: %s | | | | | | | | | | |\n", name, mdEscape(r.failed))
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %.1f | %s | %.2f | %s | %s |\n",
				name, fmtInt(r.thr), fmtRatio(r.vsBest), fmtRatio(r.vsMux),
				fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.p999), r.allocs, fmtInt(r.bytes), r.cpu,
				fmtOpt(r.sys, "%.2f"), fmtOpt(r.rw, "%.2f"))
		}
		w("\n")
		if s.usable(peers.GRPCToStorks) && s.usable("grpc-go") {
			w("grpc-go client: storks server / grpc-go server = %s (per-round ratio, median).\n\n", fmtRatio(s.grpcClientRatio()))
		}
		if s.Large {
			w("Bytes allocated per call (client and server together) ÷ the payload bytes of a call (request + reply, %s each): ", payload.Name(s.Size))
			var parts []string
			for _, r := range s.rows {
				if a := s.allocRatio(r.spec.Name); !math.IsNaN(a) {
					parts = append(parts, r.spec.Name+" "+fmtRatio(a))
				}
			}
			w("%s.\n\n", strings.Join(parts, ", "))
		}
		rep.ratioTable(&b, s)
	}

	if len(streams) > 0 {
		rep.streamResults(&b, streams)
	}

	w("## Rows\n\n| row | kind | configuration |\n|---|---|---|\n")
	for _, sp := range rep.specs {
		w("| %s | %s | %s |\n", sp.Name, sp.Kind, mdEscape(sp.Config))
	}
	w("\n## Profiles\n\n")
	if rep.profileErr != "" {
		w("Profiling failed: %s\n", mdEscape(rep.profileErr))
	} else if cfg.profiles != "" {
		dir := cfg.profiles
		if !filepath.IsAbs(dir) {
			dir = "bench/" + dir
		}
		w("CPU and allocation profiles of Storks alone at 64 callers, 581 B (%v, in a fresh process) are in `%s/` (not committed): ", cfg.profDur, dir)
		w("`go tool pprof -top %s/storks-c64-581B-cpu.pprof`, `go tool pprof -sample_index=alloc_objects -top %s/storks-c64-581B-allocs.pprof`.\n", dir, dir)
	} else {
		w("Not taken in this run (-profiles=\"\").\n")
	}
	return b.String()
}

// streamResults writes the tables of the streaming scenarios.
func (rep *report) streamResults(b *strings.Builder, streams []*scenario) {
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## Streaming results\n\n")
	w("The rows that have the benchmark service's streaming methods, each stream opened (and its first message received) before the window and cancelled after it. ")
	w("**Server-streaming** (`Repeat`): the client sends the request once; the server handles it once and sends the reply (527 B for the 581 B message; 1 MiB for 1 MiB) again and again; a message is one reply received and checked. ")
	w("**Bidi echo** (`Chat`), in lockstep: each stream sends one message and receives the handled message back before sending the next; a message is one round trip. ")
	w("msgs/s = messages / window, summed over the streams; MB/s = msgs/s × reply size / 10^6; `× grpc-go` and `× best peer` = per-round ratios, median (the best peer is the fastest of grpc-go and kitex-grpc); ")
	w("p50/p99/p99.9 = time per message in one stream (server streaming: from one Recv returning to the next; bidi: the round trip); ")
	w("allocs/msg, B/msg, CPU µs/msg, syscalls/msg, r+w/msg as in the unary tables (runtime.MemStats, getrusage, perf, /proc/self/io over the window, client and server in this process together) / messages.\n\n")
	sort.SliceStable(streams, func(i, j int) bool {
		a, c := streams[i], streams[j]
		if a.Size != c.Size {
			return a.Size < c.Size
		}
		if a.Stream != c.Stream {
			return a.Stream < c.Stream
		}
		return a.Callers < c.Callers
	})
	for _, s := range streams {
		w("### %s\n\n", s.name())
		w("| row | msgs/s | MB/s | × grpc-go | × best peer | p50 | p99 | p99.9 | allocs/msg | B/msg | CPU µs/msg | syscalls/msg | r+w/msg |\n")
		w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range s.rows {
			if r.notRun {
				continue
			}
			name := r.spec.Name
			if r.spec.Kind == peers.Subject {
				name = "**" + name + "**"
			}
			if r.failed != "" {
				w("| %s | FAILED: %s | | | | | | | | | | | |\n", name, mdEscape(r.failed))
				continue
			}
			w("| %s | %s | %.1f | %s | %s | %s | %s | %s | %.1f | %s | %.2f | %s | %s |\n",
				name, fmtInt(r.thr), r.thr*float64(s.Reply)/1e6, fmtRatio(r.vsGRPC), fmtRatio(r.vsBest),
				fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.p999), r.allocs, fmtInt(r.bytes), r.cpu,
				fmtOpt(r.sys, "%.2f"), fmtOpt(r.rw, "%.2f"))
		}
		w("\n")
	}
}

func sizeOrder(s *scenario) int {
	switch {
	case s.Large:
		return 4
	case s.Smoke:
		return 3
	case s.Size == payload.Rpcx:
		return 0
	case s.Size < payload.Rpcx:
		return 1
	}
	return 2
}

// ratioTable writes every figure of the scenario as a ratio to the best
// peer's figure (the best value among the peers for that metric) and to
// tcp-mux's.
func (rep *report) ratioTable(b *strings.Builder, s *scenario) {
	type metric struct {
		name   string
		get    func(r *rowStat) float64
		higher bool // higher is better
		noMux  bool // tcp-mux allocates nothing by construction: no ratio
	}
	ms := []metric{
		{"calls/s", func(r *rowStat) float64 { return r.thr }, true, false},
		{"p50", func(r *rowStat) float64 { return r.p50 }, false, false},
		{"p99", func(r *rowStat) float64 { return r.p99 }, false, false},
		{"p99.9", func(r *rowStat) float64 { return r.p999 }, false, false},
		{"allocs/op", func(r *rowStat) float64 { return r.allocs }, false, true},
		{"B/op", func(r *rowStat) float64 { return r.bytes }, false, true},
		{"CPU/op", func(r *rowStat) float64 { return r.cpu }, false, false},
		{"syscalls/op", func(r *rowStat) float64 { return r.sys }, false, false},
	}
	best := make([]float64, len(ms))
	for i, m := range ms {
		best[i] = math.NaN()
		for _, r := range s.rows {
			if r.spec.Kind != peers.Peer || r.failed != "" || r.notRun {
				continue
			}
			v := m.get(r)
			if v < 0 {
				continue
			}
			if math.IsNaN(best[i]) || (m.higher && v > best[i]) || (!m.higher && v < best[i]) {
				best[i] = v
			}
		}
	}
	mux := s.row(peers.MuxReference)
	fmt.Fprintf(b, "<details><summary>Every figure as a ratio: to the best peer's value of that figure / to tcp-mux's (— for allocations: tcp-mux allocates nothing)</summary>\n\n| row |")
	for _, m := range ms {
		fmt.Fprintf(b, " %s |", m.name)
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", len(ms)) + "\n")
	ratio := func(a, d float64) string {
		if a < 0 || d <= 0 || math.IsNaN(a) || math.IsNaN(d) {
			return "—"
		}
		return fmt.Sprintf("%.2f", a/d)
	}
	for _, r := range s.rows {
		if r.failed != "" || r.notRun {
			continue
		}
		fmt.Fprintf(b, "| %s |", r.spec.Name)
		for i, m := range ms {
			muxV := math.NaN()
			if mux != nil && mux.failed == "" && !m.noMux {
				muxV = m.get(mux)
			}
			fmt.Fprintf(b, " %s / %s |", ratio(m.get(r), best[i]), ratio(m.get(r), muxV))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n</details>\n\n")
}

func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

// summary is the short version for the terminal.
func (rep *report) summary() string {
	var b strings.Builder
	for _, s := range rep.scenarios {
		if !s.Large && s.Stream == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s:", s.name())
		for _, r := range s.rows {
			switch {
			case r.failed != "" || r.notRun:
			case s.Large:
				fmt.Fprintf(&b, "  %s %s calls/s, %s B/op (%s payload)", r.spec.Name, fmtInt(r.thr), fmtInt(r.bytes), fmtRatio(s.allocRatio(r.spec.Name)))
			default:
				fmt.Fprintf(&b, "  %s %s (%s grpc-go), %s B/msg", r.spec.Name, fmtRate(s, r), fmtRatio(r.vsGRPC), fmtInt(r.bytes))
			}
		}
	}
	b.WriteString("\nTargets:\n")
	for _, t := range rep.targets {
		fmt.Fprintf(&b, "  %-8s %s, %s: %s (need %s)\n", strings.Trim(t.result, "*"), t.what, t.where, t.measured, t.need)
	}
	return b.String()
}
