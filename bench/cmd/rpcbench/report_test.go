package main

import (
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

func specsByName(names ...string) []peers.Spec {
	var out []peers.Spec
	for _, s := range peers.All() {
		for _, n := range names {
			if s.Name == n {
				out = append(out, s)
			}
		}
	}
	return out
}

func fakeCell(peer string, round int, thr float64) cell {
	return cell{Peer: peer, Callers: 64, Size: payload.Rpcx, Round: round, Calls: int64(thr), Throughput: thr,
		P50: time.Millisecond, P99: 2 * time.Millisecond, P999: 3 * time.Millisecond, Allocs: 10, Bytes: 1000, CPU: 5, Syscalls: 0.5, RWSyscalls: 0.4}
}

// A row with one failed call is reported as FAILED, without numbers, and
// is not the best peer even if it was the fastest.
func TestFailedRowIsNotReported(t *testing.T) {
	rep := &report{cfg: config{mode: "quick", repeats: 3, procs: 2}, specs: specsByName("storks", "grpc-go", "kitex", "tcp-mux")}
	s := &scenario{Callers: 64, Size: payload.Rpcx, Rounds: 3}
	for r := 1; r <= 3; r++ {
		s.Cells = append(s.Cells, fakeCell("storks", r, 300), fakeCell("grpc-go", r, 100), fakeCell("tcp-mux", r, 600))
		k := fakeCell("kitex", r, 1000)
		if r == 2 {
			k.Err = "bad reply: field1=\"NO\""
		}
		s.Cells = append(s.Cells, k)
	}
	rep.scenarios = []*scenario{s}
	if !rep.compute() {
		t.Fatal("compute did not report the failure")
	}
	if got := s.row("storks").vsBest; got != 3 {
		t.Errorf("storks vs best peer = %v, want 3 (grpc-go; kitex failed)", got)
	}
	if got := s.row("storks").vsMux; got != 0.5 {
		t.Errorf("storks vs tcp-mux = %v, want 0.5", got)
	}
	md := rep.markdown()
	if !strings.Contains(md, "| kitex | FAILED: round 2: bad reply") {
		t.Errorf("kitex row not reported as FAILED:\n%s", md)
	}
	if strings.Contains(md, "| kitex | 1,000") {
		t.Error("the failed row's numbers are reported")
	}
	if !strings.Contains(rep.chart(), "<svg") {
		t.Error("no chart")
	}
}

// Throughput ratios are medians of per-round ratios.
func TestRatioIsMedianOfRounds(t *testing.T) {
	rep := &report{cfg: config{repeats: 3}, specs: specsByName("storks", "rpcx")}
	s := &scenario{Callers: 64, Size: payload.Rpcx, Rounds: 3}
	// Per-round ratios 1, 1.5 and 8: median 1.5; the ratio of the
	// medians would be 300/100 = 3.
	s.Cells = []cell{
		fakeCell("storks", 1, 100), fakeCell("rpcx", 1, 100),
		fakeCell("storks", 2, 300), fakeCell("rpcx", 2, 200),
		fakeCell("storks", 3, 400), fakeCell("rpcx", 3, 50),
	}
	rep.scenarios = []*scenario{s}
	rep.compute()
	if got := s.row("storks").vsBest; got != 1.5 {
		t.Errorf("vsBest = %v, want 1.5", got)
	}
}

// runCell measures a real row and counts no allocation of its own.
func TestRunCell(t *testing.T) {
	spec := specsByName("tcp-mux")[0]
	inst, err := spec.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	p, _ := payload.New(payload.Rpcx)
	c := runCell(spec, inst, p, 8, cellOptions{dur: 100 * time.Millisecond, hangCap: 10 * time.Second})
	if !c.ok() || c.Calls < 100 {
		t.Fatalf("cell: %+v", c)
	}
	if c.Allocs > 0.05 {
		t.Errorf("the plain-TCP row allocates %.3f times per call: the harness allocates in the window", c.Allocs)
	}
	if c.P50 <= 0 || c.P99 < c.P50 || c.CPU <= 0 {
		t.Errorf("implausible cell: %+v", c)
	}
}

// A large unary scenario reports Storks against grpc-go only, with the
// bytes allocated per call over the payload, and its two targets.
func TestLargeScenario(t *testing.T) {
	rep := &report{cfg: config{repeats: 3}, specs: specsByName("storks", "grpc-go", "kitex", "tcp-mux")}
	s := &scenario{Callers: 8, Size: payload.Large, Large: true, Rounds: 3}
	p, err := payload.New(payload.Large)
	if err != nil {
		t.Fatal(err)
	}
	moved := float64(p.Size + p.Reply)
	for r := 1; r <= 3; r++ {
		st, g := fakeCell("storks", r, 1200), fakeCell("grpc-go", r, 1000)
		st.Size, g.Size, st.Callers, g.Callers = payload.Large, payload.Large, 8, 8
		st.Bytes, g.Bytes = 1.5*moved, 1.1*moved
		s.Cells = append(s.Cells, st, g)
	}
	rep.scenarios = []*scenario{s}
	if rep.compute() {
		t.Fatal("compute reported a failure: the rows not run in the scenario count as failed")
	}
	var got []string
	for _, tg := range rep.targets {
		if strings.HasPrefix(tg.what, "Large unary") {
			got = append(got, tg.what+": "+tg.measured+" "+tg.result)
		}
	}
	want := []string{
		"Large unary throughput vs grpc-go: 1.20× grpc-go **PASS**",
		"Large unary bytes allocated per call ÷ payload (request + reply): 1.50× (grpc-go 1.10×) **PASS**",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("large targets:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	md := rep.markdown()
	if !strings.Contains(md, "### 1 MiB, 8 callers (large unary)") || !strings.Contains(md, "storks 1.50×, grpc-go 1.10×") {
		t.Errorf("large scenario missing from the markdown:\n%s", md)
	}
	results, _, _ := strings.Cut(md[strings.Index(md, "## Results"):], "## Rows")
	if strings.Contains(results, "| kitex |") || strings.Contains(results, "| FAILED") {
		t.Errorf("rows that did not run are reported:\n%s", md)
	}
}

// The streaming targets compare Storks with grpc-go in the same rounds, and
// the 1 MiB row's bytes per message with three messages.
func TestStreamTargets(t *testing.T) {
	rep := &report{cfg: config{mode: "quick", repeats: 3, procs: 2}, specs: specsByName("storks", "grpc-go", "kitex-grpc")}
	streamCell := func(peer string, round int, thr float64, size int, bytes float64) cell {
		c := fakeCell(peer, round, thr)
		c.Size, c.Bytes, c.Stream = size, bytes, peers.ServerStreaming.String()
		return c
	}
	s64 := &scenario{Callers: 64, Size: payload.Rpcx, Reply: 527, Rounds: 3, Stream: peers.ServerStreaming, specs: rep.specs}
	big := &scenario{Callers: 1, Size: payload.Large, Reply: payload.Large, Rounds: 3, Stream: peers.ServerStreaming, specs: rep.specs}
	for r := 1; r <= 3; r++ {
		s64.Cells = append(s64.Cells, streamCell("storks", r, 300, payload.Rpcx, 800), streamCell("grpc-go", r, 100, payload.Rpcx, 2000), streamCell("kitex-grpc", r, 150, payload.Rpcx, 2000))
		big.Cells = append(big.Cells, streamCell("storks", r, 500, payload.Large, 4<<20), streamCell("grpc-go", r, 500, payload.Large, 1<<20), streamCell("kitex-grpc", r, 400, payload.Large, 2<<20))
	}
	rep.scenarios = []*scenario{s64, big}
	if rep.compute() {
		t.Fatal("compute reported a failure")
	}
	want := map[string]string{
		"Server-streaming messages/s vs grpc-go|581 B, 64 streams, server-streaming":            "**PASS**",
		"Server-streaming messages/s vs grpc-go|581 B, 1 stream, server-streaming":              "—",
		"Bidi echo messages/s vs grpc-go|581 B, 64 streams, bidi lockstep":                      "—",
		"Large-message streaming MB/s vs grpc-go|1 MiB, 1 stream, server-streaming":             "**PASS**",
		"Bytes allocated per 1 MiB message (client + server)|1 MiB, 1 stream, server-streaming": "**MISS**",
	}
	got := map[string]string{}
	for _, tg := range rep.targets {
		got[tg.what+"|"+tg.where] = tg.result
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("target %s: %q, want %q", k, got[k], v)
		}
	}
	if got := s64.row("storks").vsGRPC; got != 3 {
		t.Errorf("storks vs grpc-go = %v, want 3", got)
	}
	md := rep.markdown()
	for _, s := range []string{"## Streaming results", "### 581 B, server-streaming, 64 streams", "| **storks** | 300 | 0.2 | 3.00× | 2.00× |", "4,194,304 B = 4.00× the message (grpc-go 1.00×)"} {
		if !strings.Contains(md, s) {
			t.Errorf("RESULTS.md lacks %q:\n%s", s, md)
		}
	}
	if strings.Contains(rep.chart(), "kitex-grpc") {
		t.Error("the unary chart names the stream-only row")
	}
}

// runCell measures streams: every message counted and checked.
func TestRunCellStreams(t *testing.T) {
	spec := specsByName("storks")[0]
	inst, err := spec.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	p, _ := payload.New(payload.Rpcx)
	for _, kind := range []peers.StreamKind{peers.ServerStreaming, peers.Bidi} {
		c := runCell(spec, inst, p, 4, cellOptions{stream: kind, dur: 100 * time.Millisecond, hangCap: 10 * time.Second})
		if !c.ok() || c.Calls < 100 || c.Stream != kind.String() {
			t.Fatalf("%v cell: %+v", kind, c)
		}
	}
}

// Large unary and streaming scenarios in one run without the unary ones
// (-sizes none -large true -streams ...): each reports its own rows, and
// the targets are theirs only.
func TestLargeAndStreamScenarios(t *testing.T) {
	all := specsByName("storks", "grpc-go", "kitex-grpc")
	rep := &report{cfg: config{repeats: 3}, specs: all}
	large := &scenario{Callers: 8, Size: payload.Huge, Large: true, Rounds: 3, specs: all[:2]}
	bidi := &scenario{Callers: 64, Size: payload.Rpcx, Reply: 527, Rounds: 3, Stream: peers.Bidi, specs: all}
	for r := 1; r <= 3; r++ {
		for i, peer := range []string{"storks", "grpc-go", "kitex-grpc"} {
			c := fakeCell(peer, r, float64(300-100*i))
			c.Size, c.Callers, c.Stream = payload.Rpcx, 64, peers.Bidi.String()
			bidi.Cells = append(bidi.Cells, c)
			if peer != "kitex-grpc" {
				c := fakeCell(peer, r, float64(30-10*i))
				c.Size, c.Callers, c.Bytes = payload.Huge, 8, 2*payload.Huge
				large.Cells = append(large.Cells, c)
			}
		}
	}
	rep.scenarios = []*scenario{large, bidi}
	if rep.compute() {
		t.Fatal("compute reported a failure")
	}
	got := map[string]string{}
	for _, tg := range rep.targets {
		got[tg.what+"|"+tg.where] = tg.result
	}
	want := map[string]string{
		"Large unary throughput vs grpc-go|8 callers, 3.9 MiB":                                  "**PASS**",
		"Large unary bytes allocated per call ÷ payload (request + reply)|8 callers, 3.9 MiB":   "**PASS**",
		"Bidi echo messages/s vs grpc-go|581 B, 64 streams, bidi lockstep":                      "**PASS**",
		"Server-streaming messages/s vs grpc-go|581 B, 64 streams, server-streaming":            "—",
		"Bytes allocated per 1 MiB message (client + server)|1 MiB, 1 stream, server-streaming": "—",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("target %s: %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "Throughput vs") || strings.HasPrefix(k, "Allocations per call") {
			t.Errorf("unary target %s in a run without unary scenarios", k)
		}
	}
	md := rep.markdown()
	results, streams, _ := strings.Cut(md[strings.Index(md, "## Results"):], "## Streaming results")
	if !strings.Contains(results, "### 3.9 MiB, 8 callers (large unary)") || strings.Contains(results, "kitex-grpc") {
		t.Errorf("large unary table:\n%s", results)
	}
	if !strings.Contains(streams, "### 581 B, bidi echo, 64 streams") || !strings.Contains(streams, "| kitex-grpc | 100 |") {
		t.Errorf("streaming table:\n%s", streams)
	}
}

// The grpc-go→storks row is compared with the grpc-go row, per round, in
// a target of its own; it is never the best peer, so the Storks rows'
// ratios do not depend on it.
func TestGRPCClientTarget(t *testing.T) {
	rep := &report{cfg: config{mode: "quick", repeats: 3, procs: 2}, specs: specsByName("storks", "grpc-go", peers.GRPCToStorks, "tcp-mux")}
	var scens []*scenario
	for _, c := range []struct {
		callers int
		interop float64 // grpc-go→storks calls/s; grpc-go makes 100
	}{{1, 90}, {64, 96}, {1000, 500}} {
		s := &scenario{Callers: c.callers, Size: payload.Rpcx, Rounds: 3}
		for r := 1; r <= 3; r++ {
			for _, fc := range []cell{fakeCell("storks", r, 300), fakeCell("grpc-go", r, 100), fakeCell(peers.GRPCToStorks, r, c.interop), fakeCell("tcp-mux", r, 600)} {
				fc.Callers = c.callers
				s.Cells = append(s.Cells, fc)
			}
		}
		scens = append(scens, s)
	}
	rep.scenarios = scens
	if rep.compute() {
		t.Fatal("compute reported a failure")
	}
	for _, s := range scens {
		if got := s.row("storks").vsBest; got != 3 {
			t.Errorf("%d callers: storks vs best peer = %v, want 3: grpc-go→storks is no peer", s.Callers, got)
		}
	}
	want := map[string]string{
		"1 caller, 581 B":     "0.90× (grpc-go client: storks server / grpc-go server; 90 vs 100 calls/s)|**MISS**",
		"64 callers, 581 B":   "0.96× (grpc-go client: storks server / grpc-go server; 96 vs 100 calls/s)|**PASS**",
		"1000 callers, 581 B": "5.00× (grpc-go client: storks server / grpc-go server; 500 vs 100 calls/s)|**PASS**",
	}
	n := 0
	for _, tg := range rep.targets {
		if !strings.HasPrefix(tg.what, "gRPC clients") {
			continue
		}
		n++
		if got := tg.measured + "|" + tg.result; got != want[tg.where] {
			t.Errorf("%s: %s, want %s", tg.where, got, want[tg.where])
		}
	}
	if n != len(want) {
		t.Errorf("%d gRPC-client targets, want %d", n, len(want))
	}
	if md := rep.markdown(); !strings.Contains(md, "grpc-go client: storks server / grpc-go server = 0.96×") {
		t.Error("the 64-caller table does not state the gRPC-client ratio")
	}
}
