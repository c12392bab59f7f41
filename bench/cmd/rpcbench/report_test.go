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
