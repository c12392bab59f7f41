package runtime

import (
	"context"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Published load: with WithLoadReport a server measures its recent load
// every interval and writes it into the registry entry of each registered
// export (Metadata[registry.MetadataLoad]), by registering the instance
// again, which replaces the entry and keeps its lease, TTL check or
// ephemeral node. It writes only when the load changed by more than a
// threshold or the last value grew old, so idle providers stay quiet.
// Consumers read it with Endpoint.PublishedLoad.
//
// The hot path pays one atomic add per call or stream handled
// (Server.served); the reporter, a goroutine of the server, does the rest.

// Defaults of LoadReport.
const (
	DefaultLoadReportInterval  = 5 * time.Second
	DefaultLoadReportThreshold = 0.1
	// DefaultLoadReportMaxAge is in intervals: a value is written again
	// after 10 intervals even if it did not change.
	DefaultLoadReportMaxAge = 10
	// minLoadReportInterval bounds how often a provider may write.
	minLoadReportInterval = 10 * time.Millisecond
)

// LoadReport configures WithLoadReport. Zero fields take their defaults.
type LoadReport struct {
	// Interval is how often the load is measured, and the most often it
	// is written (default DefaultLoadReportInterval, at least 10 ms).
	Interval time.Duration
	// Threshold is the relative change of a figure that makes a new value
	// worth writing (default DefaultLoadReportThreshold, 10%). Below
	// absolute floors no change counts: 1 call per second, 1 call in
	// flight, 0.05 of CPU.
	Threshold float64
	// MaxAge is how old the written value may grow before it is written
	// again although it did not change (default DefaultLoadReportMaxAge
	// intervals; at least one interval).
	MaxAge time.Duration
	// CPU adds the process's CPU share over the interval (user and system
	// time over wall time and GOMAXPROCS, from getrusage) where the
	// platform has it.
	CPU bool
}

// WithLoadReport makes the server publish its recent load into the
// registry entry of every registered export, every r.Interval at most,
// as Metadata[registry.MetadataLoad]: calls and streams handled per second
// over the last interval (not a lifetime mean), unary calls in flight and,
// with r.CPU, the process's CPU share (see Load). A value is written only
// when a figure changed by more than r.Threshold or the last value is
// r.MaxAge old. A failed write is logged (at most once a minute) and tried
// again at the next interval; it never delays a call. Exports withdrawn by
// Unexport, Shutdown or Close are not written again. Without a registry the
// option does nothing. Negative fields are an error.
func WithLoadReport(r LoadReport) ServerOption {
	switch {
	case r.Interval < 0:
		return reject("WithLoadReport", "interval %v must not be negative", r.Interval)
	case r.MaxAge < 0:
		return reject("WithLoadReport", "max age %v must not be negative", r.MaxAge)
	case r.Threshold < 0 || math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0):
		return reject("WithLoadReport", "threshold %v must be a non-negative number", r.Threshold)
	}
	if r.Interval == 0 {
		r.Interval = DefaultLoadReportInterval
	}
	r.Interval = max(r.Interval, minLoadReportInterval)
	if r.Threshold == 0 {
		r.Threshold = DefaultLoadReportThreshold
	}
	if r.MaxAge == 0 {
		r.MaxAge = DefaultLoadReportMaxAge * r.Interval
	}
	r.MaxAge = max(r.MaxAge, r.Interval)
	return serverFunc(func(c *serverConfig) { c.loadReport = &r })
}

// Load is the load a provider published (see WithLoadReport). Its text
// form, in Metadata[registry.MetadataLoad], is comma-separated key=value
// pairs: "cps=1234.5,inflight=3,cpu=0.420,at=1765000000000", where cps is
// calls (and streams) handled per second over the last interval, inflight
// the unary calls being handled, cpu the process's CPU share in [0, 1]
// (left out if not measured) and at the Unix time of the measure in
// milliseconds. Unknown keys are ignored.
type Load struct {
	CallsPerSecond float64
	InFlight       int
	CPU            float64 // -1: not measured
	At             time.Time
}

// String returns the text form of l, as published.
func (l Load) String() string {
	b := make([]byte, 0, 64)
	b = append(b, "cps="...)
	b = strconv.AppendFloat(b, l.CallsPerSecond, 'f', 1, 64)
	b = append(b, ",inflight="...)
	b = strconv.AppendInt(b, int64(l.InFlight), 10)
	if l.CPU >= 0 {
		b = append(b, ",cpu="...)
		b = strconv.AppendFloat(b, l.CPU, 'f', 3, 64)
	}
	b = append(b, ",at="...)
	b = strconv.AppendInt(b, l.At.UnixMilli(), 10)
	return string(b)
}

// ParseLoad parses the text form of a Load (see Load). It reports false if
// s is not one: a pair without '=', a figure that is not a finite,
// non-negative number, or cps, inflight or at missing.
func ParseLoad(s string) (Load, bool) {
	l := Load{CPU: -1}
	var have uint8
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, ",")
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return Load{}, false
		}
		switch k {
		case "cps", "cpu":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return Load{}, false
			}
			if k == "cps" {
				l.CallsPerSecond, have = f, have|1
			} else {
				l.CPU = f
			}
		case "inflight":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Load{}, false
			}
			l.InFlight, have = n, have|2
		case "at":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 0 {
				return Load{}, false
			}
			l.At, have = time.UnixMilli(ms), have|4
		}
	}
	if have != 7 {
		return Load{}, false
	}
	return l, true
}

// PublishedLoad returns the load the provider last published into its
// registry entry (see WithLoadReport), and false if it published none or
// the value is not a Load. Balancers may use it to estimate the load of
// endpoints they have not called yet; At says how old it is. It parses the
// metadata at each call: call it when building a Picker, not per pick.
func (e *Endpoint) PublishedLoad() (Load, bool) {
	v, ok := e.inst.Metadata[registry.MetadataLoad]
	if !ok {
		return Load{}, false
	}
	return ParseLoad(v)
}

// changed reports whether a load measured now differs enough from the one
// published last, by cfg.Threshold above the floors, or the published one
// is cfg.MaxAge old.
func (cfg *LoadReport) changed(old, cur Load) bool {
	if cur.At.Sub(old.At) >= cfg.MaxAge {
		return true
	}
	differs := func(a, b, floor float64) bool {
		return math.Abs(a-b) > max(cfg.Threshold*a, floor)
	}
	if differs(old.CallsPerSecond, cur.CallsPerSecond, 1) || differs(float64(old.InFlight), float64(cur.InFlight), 1) {
		return true
	}
	if (old.CPU < 0) != (cur.CPU < 0) {
		return true
	}
	return cur.CPU >= 0 && differs(old.CPU, cur.CPU, 0.05)
}

// loadReporter measures and publishes a server's load; its fields are
// used by its goroutine only (or a test driving tick).
type loadReporter struct {
	s   *Server
	cfg *LoadReport
	now func() time.Time
	// cpuTime returns the CPU time the process used so far, and false
	// where it cannot be had.
	cpuTime func() (time.Duration, bool)

	lastAt    time.Time
	lastCalls uint64
	lastCPU   time.Duration
	cpuOK     bool

	failing  bool      // the last write failed
	warnedAt time.Time // the last failure logged
}

// loadWarnEvery bounds how often a failing write is logged.
const loadWarnEvery = time.Minute

func newLoadReporter(s *Server, now func() time.Time) *loadReporter {
	lr := &loadReporter{s: s, cfg: s.cfg.loadReport, now: now, cpuTime: processCPUTime}
	lr.start()
	return lr
}

// start takes the first reference sample.
func (lr *loadReporter) start() {
	lr.lastAt = lr.now()
	lr.lastCalls = lr.s.served.Load()
	if lr.cfg.CPU {
		lr.lastCPU, lr.cpuOK = lr.cpuTime()
	}
}

// sample measures the load since the previous sample.
func (lr *loadReporter) sample() Load {
	now := lr.now()
	calls := lr.s.served.Load()
	l := Load{InFlight: int(max(lr.s.inflight.Load(), 0)), CPU: -1, At: now}
	if d := now.Sub(lr.lastAt); d > 0 {
		l.CallsPerSecond = float64(calls-lr.lastCalls) / d.Seconds()
		if lr.cfg.CPU {
			cpu, ok := lr.cpuTime()
			if ok && lr.cpuOK {
				l.CPU = min(max(float64(cpu-lr.lastCPU)/float64(d)/float64(runtime.GOMAXPROCS(0)), 0), 1)
			}
			lr.lastCPU, lr.cpuOK = cpu, ok
		}
	}
	lr.lastAt, lr.lastCalls = now, calls
	return l
}

// run ticks every interval until the server closes.
func (lr *loadReporter) run() {
	defer lr.s.bg.Done()
	t := time.NewTicker(lr.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-lr.s.ctx.Done():
			return
		case <-t.C:
			lr.tick()
		}
	}
}

// tick measures the load and writes it for every registered export whose
// published value it differs from enough. It returns the number of writes
// made.
func (lr *loadReporter) tick() int {
	l := lr.sample()
	s := lr.s
	s.mu.RLock()
	exs := make([]*Exporter, 0, len(s.exporters))
	for ex := range s.exporters {
		exs = append(exs, ex)
	}
	s.mu.RUnlock()
	writes := 0
	var firstErr error
	for _, ex := range exs {
		wrote, err := lr.publish(ex, l)
		if wrote {
			writes++
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	switch now := lr.now(); {
	case firstErr != nil && (!lr.failing || now.Sub(lr.warnedAt) >= loadWarnEvery):
		s.cfg.logger.Warn("storks: publishing the load failed; tried again at the next interval",
			"addr", s.Addr(), "err", firstErr)
		lr.failing, lr.warnedAt = true, now
	case firstErr == nil && lr.failing && writes > 0:
		s.cfg.logger.Info("storks: publishing the load works again", "addr", s.Addr())
		lr.failing = false
	}
	return writes
}

// publish writes l into ex's registry entry if ex is registered and l
// differs enough from what was published. It never waits for the export's
// registration ops: if one is under way, it leaves l to the next tick.
func (lr *loadReporter) publish(ex *Exporter, l Load) (bool, error) {
	ex.mu.Lock()
	r := ex.regLocked()
	if !ex.registered || r.withdrawn || ex.removed || r.loadSet && !lr.cfg.changed(r.load, l) {
		ex.mu.Unlock()
		return false, nil
	}
	rctx, ops := r.ctx, r.ops
	ex.mu.Unlock()
	select {
	case ops <- struct{}{}:
	default:
		return false, nil
	}
	defer func() { <-ops }()
	ex.mu.Lock()
	if !ex.registered || r.withdrawn || ex.removed {
		ex.mu.Unlock()
		return false, nil
	}
	in := r.inst.Clone()
	ex.mu.Unlock()
	if in.Metadata == nil {
		in.Metadata = make(map[string]string, 1)
	}
	in.Metadata[registry.MetadataLoad] = l.String()

	// A write may take longer than a short interval (a remote registry);
	// the ticker drops the ticks it misses. A withdrawal cancels rctx.
	ctx, cancel := context.WithTimeout(rctx, min(max(lr.cfg.Interval, time.Second), registerAttemptTimeout))
	err := lr.s.cfg.registry.Register(ctx, in)
	cancel()
	if err != nil {
		if rctx.Err() != nil {
			return false, nil // withdrawn meanwhile; withdraw deregisters
		}
		return false, err
	}
	ex.mu.Lock()
	r.inst, r.load, r.loadSet = in, l, true
	ex.mu.Unlock()
	return true, nil
}

// noteServed counts a call or stream handled, for the load report; a
// server without WithLoadReport counts nothing, so its handlers share no
// counter.
func (s *Server) noteServed() {
	if s.cfg.loadReport != nil {
		s.served.Add(1)
	}
}
