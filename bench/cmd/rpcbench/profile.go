package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/peers"
)

// Profiled scenario by default: the headline one.
const (
	profCallers = 64
	profSize    = payload.Rpcx
)

// profileRun runs in a fresh process: one row alone (cfg.profRow, by
// default Storks) in cfg.profScen (by default unary, 64 callers, 581 B),
// warm-up, then a CPU profile of the measured window and the allocation
// profile of the process (setup is a negligible part of it).
func profileRun(cfg config) error {
	// Sample allocations finely (every 16 KiB instead of 512 KiB).
	runtime.MemProfileRate = 16 << 10
	var spec peers.Spec
	for _, s := range peers.All() {
		if s.Name == cfg.profRow {
			spec = s
		}
	}
	if spec.Start == nil {
		return fmt.Errorf("no row %q", cfg.profRow)
	}
	inst, err := spec.Start()
	if err != nil {
		return err
	}
	defer inst.Close()
	sc := cfg.profScen
	p, err := payload.New(sc.size)
	if err != nil {
		return err
	}
	hang := cfg.profDur + 60*time.Second
	if w := runCell(spec, inst, p, sc.streams, cellOptions{stream: sc.kind, dur: cfg.warmup, hangCap: hang}); !w.ok() {
		return fmt.Errorf("warm-up: %s", w.Err)
	}
	row := fileTag(spec.Name)
	base := fmt.Sprintf("%s-c%d-%s", row, sc.streams, sizeTag(sc.size))
	switch sc.kind {
	case peers.ServerStreaming:
		base = fmt.Sprintf("%s-server-s%d-%s", row, sc.streams, sizeTag(sc.size))
	case peers.Bidi:
		base = fmt.Sprintf("%s-bidi-s%d-%s", row, sc.streams, sizeTag(sc.size))
	}
	cpuPath := filepath.Join(cfg.profiles, base+"-cpu.pprof")
	f, err := os.Create(cpuPath)
	if err != nil {
		return err
	}
	defer f.Close()
	var perr error
	c := runCell(spec, inst, p, sc.streams, cellOptions{
		stream:  sc.kind,
		dur:     cfg.profDur,
		hangCap: hang,
		before:  func() { perr = pprof.StartCPUProfile(f) },
		after:   pprof.StopCPUProfile,
	})
	if perr != nil {
		return perr
	}
	if !c.ok() {
		return fmt.Errorf("profiled cell: %s", c.Err)
	}
	allocPath := filepath.Join(cfg.profiles, base+"-allocs.pprof")
	af, err := os.Create(allocPath)
	if err != nil {
		return err
	}
	defer af.Close()
	if err := pprof.Lookup("allocs").WriteTo(af, 0); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rpcbench: profiled %d calls (%.0f calls/s under the profiler, %.1f allocs/op): %s, %s\n",
		c.Calls, c.Throughput, c.Allocs, cpuPath, allocPath)
	return nil
}

// fileTag is a row name as a file name: grpc-go→storks is
// grpc-go-to-storks.
func fileTag(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ReplaceAll(name, "→", "-to-"))
}

func sizeTag(size int) string {
	switch {
	case size >= 1<<20 && size%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", size>>20)
	case size >= 1<<10 && size%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", size>>10)
	}
	return fmt.Sprintf("%dB", size)
}
