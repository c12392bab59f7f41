package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/bench/internal/hist"
	"github.com/storks-rpc/storks/bench/internal/sysstat"
	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

// cell is the measurement of one row in one scenario in one round.
//
// In a streaming scenario, Callers is the number of streams and a call is
// one message: one received (server streaming) or one sent and its echo
// received (bidi); every per-call figure is per message.
type cell struct {
	Peer    string `json:"peer"`
	Stream  string `json:"stream,omitempty"` // the streaming scenario's kind; empty for unary calls
	Callers int    `json:"callers"`
	Size    int    `json:"size"`
	Round   int    `json:"round"`

	Calls   int64         `json:"calls"`
	Err     string        `json:"error,omitempty"` // a failed call: the row is not reported
	Elapsed time.Duration `json:"elapsed_ns"`

	Throughput float64       `json:"calls_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	P999       time.Duration `json:"p999_ns"`
	Max        time.Duration `json:"max_ns"`
	Allocs     float64       `json:"allocs_per_op"`
	Bytes      float64       `json:"bytes_per_op"`
	CPU        float64       `json:"cpu_us_per_op"`
	Syscalls   float64       `json:"syscalls_per_op"`    // every syscall (perf); -1 if not measured
	RWSyscalls float64       `json:"rw_syscalls_per_op"` // read+write syscalls (/proc/self/io); -1 if not measured
}

func (c *cell) ok() bool { return c.Err == "" && c.Calls > 0 }

// histograms are reused from cell to cell so that the measured window
// allocates nothing for them.
var histPool []*hist.H

func histograms(n int) []*hist.H {
	for len(histPool) < n {
		histPool = append(histPool, new(hist.H))
	}
	hs := histPool[:n]
	for _, h := range hs {
		h.Reset()
	}
	return hs
}

type cellOptions struct {
	// stream is the kind of a streaming scenario's streams, 0 for unary
	// calls.
	stream  peers.StreamKind
	dur     time.Duration
	perf    bool // count every syscall with perf
	hangCap time.Duration
	// around runs just before the window opens and just after it closes
	// (the profiler); nil for none.
	before, after func()
}

// errHung marks a cell whose callers did not return.
const errHung = "hung"

// runCell measures one row: callers goroutines (or one pipeline of that
// depth) call as fast as they can for o.dur. Everything is prepared before
// the window opens (callers, connections, histograms, a GC), so the window
// measures calls only.
//
// With o.stream, every goroutine has a stream of its own, opened (and its
// first message received) before the window, so that a server stream has
// filled its flow-control window when the window opens as it has when it
// closes: the window sees the steady state. The streams are ended
// (cancelled) after the window.
func runCell(spec peers.Spec, inst peers.Instance, p *payload.Payload, callers int, o cellOptions) cell {
	res := cell{Peer: spec.Name, Callers: callers, Size: p.Size, Syscalls: -1, RWSyscalls: -1}
	if o.stream != 0 {
		res.Stream = o.stream.String()
	}
	fail := func(err error) cell { res.Err = err.Error(); return res }

	hs := histograms(callers)
	counts := make([]int64, callers)
	errs := make([]error, callers)
	start := make(chan struct{})
	var stop atomic.Bool
	var wg sync.WaitGroup

	var pipe peers.Pipeline
	if pl, ok := inst.(peers.Pipeliner); ok && o.stream == 0 {
		var err error
		if pipe, err = pl.NewPipeline(p, callers); err != nil {
			return fail(fmt.Errorf("pipeline: %w", err))
		}
	}
	if pipe != nil {
		defer pipe.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[0], errs[0] = pipe.Run(start, &stop, hs[0])
		}()
	} else {
		newCaller := func() (peers.Caller, error) { return inst.NewCaller(p) }
		if o.stream != 0 {
			st, ok := inst.(peers.Streamer)
			if !ok {
				return fail(fmt.Errorf("%s has no streams", spec.Name))
			}
			newCaller = func() (peers.Caller, error) { return st.NewStream(context.Background(), o.stream, p) }
		}
		cs := make([]peers.Caller, callers)
		for i := range cs {
			c, err := newCaller()
			if err != nil {
				for _, c := range cs[:i] {
					c.Close()
				}
				return fail(fmt.Errorf("new caller: %w", err))
			}
			cs[i] = c
		}
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		ctx := context.Background()
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := hs[i]
				var n int64
				<-start
				for !stop.Load() {
					t := time.Now()
					if err := c.Call(ctx); err != nil {
						errs[i] = err
						break
					}
					h.Record(time.Since(t))
					n++
				}
				counts[i] = n
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var perf *sysstat.Perf
	if o.perf {
		var err error
		if perf, err = sysstat.StartPerf(); err != nil {
			perf = nil
		}
	}
	runtime.GC()
	if perf != nil && perf.Enable() != nil {
		perf.Stop()
		perf = nil
	}
	if o.before != nil {
		o.before()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := sysstat.CPU()
	rw0 := sysstat.ReadWriteSyscalls()
	t0 := time.Now()
	close(start)
	time.Sleep(o.dur)
	stop.Store(true)
	select {
	case <-done:
	case <-time.After(o.hangCap):
		// Leave the goroutines: the row is marked hung and not run again.
		if perf != nil {
			perf.Stop()
		}
		res.Err = errHung
		return res
	}
	res.Elapsed = time.Since(t0)
	rw1 := sysstat.ReadWriteSyscalls()
	cpu1 := sysstat.CPU()
	runtime.ReadMemStats(&m1)
	if o.after != nil {
		o.after()
	}
	var sys int64 = -1
	if perf != nil {
		if perf.Disable() == nil {
			if n, err := perf.Stop(); err == nil {
				sys = n
			}
		} else {
			perf.Stop()
		}
	}

	var all hist.H
	for i, h := range hs {
		all.Merge(h)
		res.Calls += counts[i]
		if errs[i] != nil && res.Err == "" {
			res.Err = errs[i].Error()
		}
	}
	if res.Err != "" {
		return res
	}
	if res.Calls == 0 {
		return fail(fmt.Errorf("no call completed in %v", o.dur))
	}
	if all.Count() != uint64(res.Calls) {
		return fail(fmt.Errorf("recorded %d latencies for %d calls", all.Count(), res.Calls))
	}
	n := float64(res.Calls)
	res.Throughput = n / res.Elapsed.Seconds()
	res.P50, res.P99, res.P999, res.Max = all.Quantile(0.50), all.Quantile(0.99), all.Quantile(0.999), all.Max()
	res.Allocs = float64(m1.Mallocs-m0.Mallocs) / n
	res.Bytes = float64(m1.TotalAlloc-m0.TotalAlloc) / n
	res.CPU = float64(cpu1-cpu0) / float64(time.Microsecond) / n
	if rw0 >= 0 && rw1 >= 0 {
		res.RWSyscalls = float64(rw1-rw0) / n
	}
	if sys >= 0 {
		res.Syscalls = float64(sys) / n
	}
	return res
}
