// Command rpcbench is the Storks benchmark harness: it starts every peer
// (Storks, grpc-go, rpcx, Kitex with long connections and with one mux
// connection) and the plain-TCP reference rows in this process on
// 127.0.0.1, runs every scenario (callers x payload size) with all rows
// interleaved round by round after a warm-up, and writes RESULTS.md (medians
// over the rounds, ratios, the targets), a throughput chart (SVG)
// and CPU and allocation profiles of Storks.
//
//	go run ./cmd/rpcbench -mode quick   # 581 B at 1/64/1000 callers, 3 rounds of 1 s, + 2 streaming scenarios: about two minutes
//	go run ./cmd/rpcbench -mode full    # 16 B, 581 B, 16 KiB at 1/64/1000 callers, 5 rounds of 2 s, 1 MiB smoke test, + streams, + large unary
//	go run ./cmd/rpcbench -mode large   # large unary only: 16 KiB, 1 MiB, 3.9 MiB at 8 callers, Storks vs grpc-go
//
// The streaming scenarios (-streams) run the rows that have the streaming
// methods (Storks, grpc-go, Kitex over its gRPC transport): server
// streaming and bidi echo in lockstep, messages/s. The large unary
// scenarios (-large) run Storks and grpc-go only.
//
// Run it from bench/ (the output paths are relative). It exits non-zero if
// any row had a failed call; such a row is reported as FAILED, never with
// numbers.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/bench/internal/sysstat"
	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

type config struct {
	mode       string
	callers    []int
	sizes      []int
	streams    []streamScen
	repeats    int
	dur        time.Duration
	warmup     time.Duration
	smoke      bool // one round of 1 MiB at smokeCallers
	large      bool // the large unary scenarios (largeSizes at largeCallers, largeRows only)
	procs      int
	perf       string
	only       []string
	out        string
	svg        string
	jsonOut    string
	profiles   string
	profDur    time.Duration
	profileRun bool
	profScen   streamScen // the profiled scenario of -profile-run (kind 0: unary)
	profRow    string     // the profiled row of -profile-run
}

const smokeCallers = 8

// The large unary scenarios: large messages at a few callers, Storks
// against grpc-go only, measured like every other scenario (rounds,
// medians, per-round ratios).
const largeCallers = 8

var (
	largeSizes = []int{payload.Medium, payload.Large, payload.Huge}
	largeRows  = []string{"storks", "grpc-go"}
)

// streamScen is a streaming scenario: streams of kind at once, each
// carrying messages of size bytes.
type streamScen struct {
	kind    peers.StreamKind
	streams int
	size    int
}

// The streaming scenarios of each mode (flag syntax, see parseStreams).
const (
	quickStreams = "server:64:581,bidi:64:581"
	fullStreams  = "server:1:581,server:64:581,bidi:64:581,server:1:1048576"
)

// parseStreams parses a -streams list: "none", or comma-separated
// kind:streams:size, kind server or bidi.
func parseStreams(s string) ([]streamScen, error) {
	if s == "none" {
		return nil, nil
	}
	var out []streamScen
	for _, f := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(f), ":")
		if len(parts) != 3 {
			return nil, fmt.Errorf("%q: want kind:streams:size", f)
		}
		var sc streamScen
		switch parts[0] {
		case "server":
			sc.kind = peers.ServerStreaming
		case "bidi":
			sc.kind = peers.Bidi
		default:
			return nil, fmt.Errorf("%q: kind must be server or bidi", f)
		}
		var err error
		if sc.streams, err = strconv.Atoi(parts[1]); err != nil || sc.streams <= 0 {
			return nil, fmt.Errorf("%q: bad number of streams", f)
		}
		if sc.size, err = strconv.Atoi(parts[2]); err != nil || sc.size <= 0 {
			return nil, fmt.Errorf("%q: bad size", f)
		}
		out = append(out, sc)
	}
	return out, nil
}

func main() {
	var cfg config
	var callers, sizes, streams, only, profStream string
	flag.StringVar(&cfg.mode, "mode", "full", "quick, full or large (the large unary scenarios only): sets the defaults of the flags below")
	flag.StringVar(&callers, "callers", "", "comma-separated caller counts (default 1,64,1000)")
	flag.StringVar(&sizes, "sizes", "", "comma-separated request sizes in bytes of the unary scenarios, or none (default: quick 581; full 16,581,16384)")
	flag.IntVar(&cfg.repeats, "repeats", 0, "rounds per scenario (default: quick 3, full 5)")
	flag.DurationVar(&cfg.dur, "dur", 0, "measured time per cell (default: quick 1s, full 2s)")
	flag.DurationVar(&cfg.warmup, "warmup", 0, "warm-up per row and scenario (default: quick 300ms, full 500ms)")
	smoke := flag.String("smoke", "", "run the 1 MiB smoke test: true or false (default: full only, and not with -sizes none)")
	large := flag.String("large", "", "run the large unary scenarios (16 KiB, 1 MiB, 3.9 MiB at 8 callers, storks and grpc-go): true or false (default: full and large, and not with -sizes none)")
	flag.StringVar(&streams, "streams", "", "streaming scenarios, kind:streams:size,... with kind server or bidi, or none (default: quick "+quickStreams+"; full "+fullStreams+"; large none)")
	flag.IntVar(&cfg.procs, "procs", 2, "GOMAXPROCS")
	flag.StringVar(&cfg.perf, "perf", "auto", "count every syscall with perf: auto, on or off")
	flag.StringVar(&only, "peers", "", "comma-separated rows to run (default all)")
	flag.StringVar(&cfg.out, "out", "RESULTS.md", "results file (empty: none)")
	flag.StringVar(&cfg.svg, "svg", "throughput.svg", "throughput chart (empty: none)")
	flag.StringVar(&cfg.jsonOut, "json", "", "also write every cell as JSON here")
	flag.StringVar(&cfg.profiles, "profiles", "profiles", "directory for the Storks CPU and allocation profiles (empty: none)")
	flag.DurationVar(&cfg.profDur, "profile-dur", 0, "profiled time (default: quick 2s, full 5s)")
	flag.BoolVar(&cfg.profileRun, "profile-run", false, "run only the profiled Storks cell (the parent starts this in a fresh process; run it yourself to profile another scenario)")
	flag.StringVar(&cfg.profRow, "profile-row", "storks", "with -profile-run: the profiled row (grpc-go, "+peers.GRPCToStorks+", ...)")
	flag.StringVar(&profStream, "profile-scenario", "", "with -profile-run: the profiled scenario, unary (64 callers, 581 B) or a streaming one as in -streams (server:64:581)")
	flag.Parse()

	quick := cfg.mode == "quick"
	largeOnly := cfg.mode == "large"
	if !quick && !largeOnly && cfg.mode != "full" {
		fatalf("-mode must be quick, full or large")
	}
	cfg.callers = intList(callers, []int{1, 64, 1000})
	if sizes != "none" {
		cfg.sizes = intList(sizes, pick(quick, []int{payload.Rpcx}, []int{payload.Tiny, payload.Rpcx, payload.Medium}))
	}
	// -sizes none: no unary scenario unless asked for (-smoke, -large).
	noUnary := sizes == "none"
	if largeOnly {
		// Nothing but the large scenarios; nothing written unless asked:
		// RESULTS.md holds a full run.
		cfg.callers, cfg.sizes = nil, nil
		if streams == "" {
			streams = "none"
		}
		setDefault("out", "")
		setDefault("svg", "")
		setDefault("profiles", "")
	}
	cfg.repeats = orInt(cfg.repeats, pick(quick, 3, 5))
	cfg.dur = orDur(cfg.dur, pick(quick, time.Second, 2*time.Second))
	cfg.warmup = orDur(cfg.warmup, pick(quick, 300*time.Millisecond, 500*time.Millisecond))
	cfg.profDur = orDur(cfg.profDur, pick(quick, 2*time.Second, 5*time.Second))
	cfg.smoke = !quick && !largeOnly && !noUnary
	if *smoke != "" {
		b, err := strconv.ParseBool(*smoke)
		if err != nil {
			fatalf("-smoke: %v", err)
		}
		cfg.smoke = b
	}
	cfg.large = !quick && !noUnary
	if *large != "" {
		b, err := strconv.ParseBool(*large)
		if err != nil {
			fatalf("-large: %v", err)
		}
		cfg.large = b
	}
	var err error
	if cfg.streams, err = parseStreams(pick(streams == "", pick(quick, quickStreams, fullStreams), streams)); err != nil {
		fatalf("-streams: %v", err)
	}
	cfg.profScen = streamScen{streams: profCallers, size: profSize}
	if profStream != "" && profStream != "unary" {
		ss, err := parseStreams(profStream)
		if err != nil || len(ss) != 1 {
			fatalf("-profile-scenario: want unary or one kind:streams:size (%v)", err)
		}
		cfg.profScen = ss[0]
	}
	if only != "" {
		cfg.only = strings.Split(only, ",")
	}
	runtime.GOMAXPROCS(cfg.procs)

	if cfg.profileRun {
		if err := profileRun(cfg); err != nil {
			fatalf("profile run: %v", err)
		}
		return
	}
	os.Exit(run(cfg))
}

func run(cfg config) int {
	began := time.Now()
	usePerf := false
	perfNote := "off (-perf=off)"
	if cfg.perf != "off" {
		if err := sysstat.PerfAvailable(); err != nil {
			perfNote = "unavailable: " + err.Error()
			if cfg.perf == "on" {
				fatalf("perf: %v", err)
			}
		} else {
			usePerf = true
			perfNote = "perf stat -e raw_syscalls:sys_enter on this process, enabled for the measured window only"
		}
	}

	var specs []peers.Spec
	for _, s := range peers.All() {
		if len(cfg.only) == 0 || slices.Contains(cfg.only, s.Name) {
			specs = append(specs, s)
		}
	}
	if len(specs) == 0 {
		fatalf("no row selected")
	}
	rep := &report{cfg: cfg, specs: specs, began: began, perfNote: perfNote, loadBefore: loadavg()}

	insts := make(map[string]peers.Instance)
	for _, s := range specs {
		inst, err := s.Start()
		if err != nil {
			fatalf("start %s: %v", s.Name, err)
		}
		insts[s.Name] = inst
	}

	type scen struct {
		callers, size, rounds int
		dur                   time.Duration
		smoke, large          bool
		stream                peers.StreamKind
		specs                 []peers.Spec // the rows that run it
	}
	// The unary scenarios run every row but the stream-only ones; the
	// large ones Storks and grpc-go only; the streaming ones the rows
	// whose instance has the streaming methods.
	var unary, largeSpecs, streaming []peers.Spec
	for _, s := range specs {
		if !s.StreamOnly {
			unary = append(unary, s)
			if slices.Contains(largeRows, s.Name) {
				largeSpecs = append(largeSpecs, s)
			}
		}
		if _, ok := insts[s.Name].(peers.Streamer); ok {
			streaming = append(streaming, s)
		}
	}
	var scens []scen
	for _, size := range cfg.sizes {
		for _, c := range cfg.callers {
			scens = append(scens, scen{c, size, cfg.repeats, cfg.dur, false, false, 0, unary})
		}
	}
	if cfg.smoke {
		scens = append(scens, scen{smokeCallers, payload.Large, 1, cfg.dur / 2, true, false, 0, unary})
	}
	if cfg.large {
		for _, size := range largeSizes {
			scens = append(scens, scen{largeCallers, size, cfg.repeats, cfg.dur, false, true, 0, largeSpecs})
		}
	}
	for _, st := range cfg.streams {
		scens = append(scens, scen{st.streams, st.size, cfg.repeats, cfg.dur, false, false, st.kind, streaming})
	}
	payloads := map[int]*payload.Payload{}
	broken := map[string]string{} // rows that hung: not run again
	total := 0
	for _, sc := range scens {
		total += len(sc.specs) * sc.rounds
	}
	fmt.Fprintf(os.Stderr, "rpcbench: %s mode, %d rows, %d scenarios (%d streaming), %d cells of %v (+ warm-up %v), GOMAXPROCS=%d, syscalls: %s\n",
		cfg.mode, len(specs), len(scens), len(cfg.streams), total, cfg.dur, cfg.warmup, cfg.procs, perfNote)
	done := 0
	for _, sc := range scens {
		p := payloads[sc.size]
		if p == nil {
			var err error
			if p, err = payload.New(sc.size); err != nil {
				fatalf("%v", err)
			}
			payloads[sc.size] = p
		}
		s := &scenario{Callers: sc.callers, Size: sc.size, Smoke: sc.smoke, Large: sc.large, Rounds: sc.rounds, Stream: sc.stream, Reply: p.Reply, specs: sc.specs}
		if len(sc.specs) == 0 {
			continue
		}
		hang := sc.dur + 60*time.Second
		// Warm-up: every row once, unmeasured.
		for _, spec := range sc.specs {
			if broken[spec.Name] != "" {
				continue
			}
			w := runCell(spec, insts[spec.Name], p, sc.callers, cellOptions{stream: sc.stream, dur: cfg.warmup, hangCap: hang})
			if w.Err == errHung {
				broken[spec.Name] = "hung in warm-up"
			}
		}
		for r := 0; r < sc.rounds; r++ {
			// Rotate the order every round so no row always runs first.
			for k := range sc.specs {
				spec := sc.specs[(k+r)%len(sc.specs)]
				var c cell
				if why := broken[spec.Name]; why != "" {
					c = cell{Peer: spec.Name, Callers: sc.callers, Size: sc.size, Err: why}
				} else {
					c = runCell(spec, insts[spec.Name], p, sc.callers, cellOptions{stream: sc.stream, dur: sc.dur, perf: usePerf, hangCap: hang})
					if c.Err == errHung {
						broken[spec.Name] = "a call hung (no reply within the cell's time + 60 s)"
						c.Err = broken[spec.Name]
					}
				}
				c.Round = r + 1
				s.Cells = append(s.Cells, c)
				done++
				progress(done, total, p, sc.stream, c)
			}
		}
		rep.scenarios = append(rep.scenarios, s)
	}
	rep.loadAfter = loadavg()

	if cfg.profiles != "" && (len(cfg.only) == 0 || slices.Contains(cfg.only, "storks")) {
		fmt.Fprintf(os.Stderr, "rpcbench: profiling storks at 64 callers, 581 B for %v in a fresh process\n", cfg.profDur)
		if err := startProfileRun(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "rpcbench: profiles: %v\n", err)
			rep.profileErr = err.Error()
		}
	}
	rep.elapsed = time.Since(began)

	failed := rep.compute()
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep.markdown()), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	if cfg.svg != "" {
		if err := os.WriteFile(cfg.svg, []byte(rep.chart()), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	if cfg.jsonOut != "" {
		var all []cell
		for _, s := range rep.scenarios {
			all = append(all, s.Cells...)
		}
		b, _ := json.MarshalIndent(all, "", "  ")
		if err := os.WriteFile(cfg.jsonOut, b, 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	fmt.Fprint(os.Stderr, rep.summary())
	fmt.Fprintf(os.Stderr, "rpcbench: done in %v; wrote %s %s\n", rep.elapsed.Round(time.Second), cfg.out, cfg.svg)
	// The instances are not closed: the process ends here, and closing
	// Kitex's mux server makes its client log a recovered panic.
	if failed {
		fmt.Fprintln(os.Stderr, "rpcbench: some rows FAILED (see the tables): their numbers are not reported")
		return 1
	}
	return 0
}

func progress(done, total int, p *payload.Payload, kind peers.StreamKind, c cell) {
	what, unit := "c", "calls/s"
	switch kind {
	case peers.ServerStreaming:
		what, unit = "srv", "msgs/s "
	case peers.Bidi:
		what, unit = "bid", "msgs/s "
	}
	if !c.ok() {
		fmt.Fprintf(os.Stderr, "[%3d/%d] %-7s %s=%-4d r%d %-14s FAILED: %s\n", done, total, p.Name, what, c.Callers, c.Round, c.Peer, c.Err)
		return
	}
	fmt.Fprintf(os.Stderr, "[%3d/%d] %-7s %s=%-4d r%d %-14s %9.0f %s p50 %-9v p99 %-9v %6.1f allocs/op %7.0f B/op %6.2f µs CPU/op %s\n",
		done, total, p.Name, what, c.Callers, c.Round, c.Peer, c.Throughput, unit, roundDur(c.P50), roundDur(c.P99), c.Allocs, c.Bytes, c.CPU, fmtSys(c.Syscalls, c.RWSyscalls))
}

func fmtSys(all, rw float64) string {
	s := ""
	if all >= 0 {
		s = fmt.Sprintf("%.2f syscalls/op ", all)
	}
	if rw >= 0 {
		s += fmt.Sprintf("(%.2f r+w)", rw)
	}
	return s
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d.Round(10 * time.Nanosecond)
}

// startProfileRun re-runs this program as a child that profiles only
// Storks, so the profiles hold nothing of the other rows.
func startProfileRun(cfg config) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.profiles, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(exe, "-profile-run", "-profiles", cfg.profiles, "-profile-dur", cfg.profDur.String(),
		"-warmup", cfg.warmup.String(), "-procs", strconv.Itoa(cfg.procs), "-mode", cfg.mode)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func intList(s string, def []int) []int {
	if s == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fatalf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out
}

// setDefault changes the default of a flag the command line did not set.
func setDefault(name, value string) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	if !set {
		flag.Set(name, value)
	}
}

func pick[T any](quick bool, q, f T) T {
	if quick {
		return q
	}
	return f
}

func orInt(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}

func orDur(v, d time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return d
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rpcbench: "+format+"\n", args...)
	os.Exit(2)
}

// moduleVersions returns the versions of the peers this binary was built
// with.
func moduleVersions() []string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	want := []string{"google.golang.org/grpc", "github.com/smallnest/rpcx", "github.com/cloudwego/kitex", "github.com/cloudwego/netpoll", "google.golang.org/protobuf"}
	var out []string
	for _, w := range want {
		for _, d := range bi.Deps {
			if d.Path == w {
				out = append(out, w+" "+d.Version)
			}
		}
	}
	return out
}
