package sysstat

import (
	"os"
	"testing"
)

func TestReadWriteSyscalls(t *testing.T) {
	before := ReadWriteSyscalls()
	if before < 0 {
		t.Skip("/proc/self/io unavailable")
	}
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [64]byte
	for range 10 {
		f.ReadAt(b[:], 0)
	}
	if d := ReadWriteSyscalls() - before; d < 10 {
		t.Errorf("counted %d read syscalls, want >= 10", d)
	}
}

func TestPerf(t *testing.T) {
	if err := PerfAvailable(); err != nil {
		t.Skip("perf unavailable:", err)
	}
	p, err := StartPerf()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open("/proc/self/stat")
	var b [64]byte
	for range 1000 {
		f.ReadAt(b[:], 0)
	}
	f.Close()
	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	n, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1000 || n > 1500 {
		t.Errorf("perf counted %d system calls, want about 1000", n)
	}
}
