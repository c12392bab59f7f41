// Package sysstat reads the process-wide counters the benchmark divides by
// the number of calls: CPU time (getrusage), read/write system calls
// (/proc/self/io) and, where perf works, every system call (perf stat on the
// raw_syscalls:sys_enter tracepoint).
package sysstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU returns the user and system CPU time the process has used so far.
func CPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReadWriteSyscalls returns syscr+syscw of /proc/self/io: the read and
// write system calls (read, readv, pread, write, writev, ...) the process
// has made so far. It returns -1 where the file is unavailable. It does not
// count epoll, futex, sendmsg/recvmsg or anything else.
func ReadWriteSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	var n int64
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return -1
		}
		n += x
		found++
	}
	if found != 2 {
		return -1
	}
	return n
}

// Perf counts every system call of this process (all threads, including
// threads created while it counts) between Start and Stop, with
// `perf stat -e raw_syscalls:sys_enter -p PID` controlled through FIFOs so
// that exactly the measured window is counted.
type Perf struct {
	cmd     *exec.Cmd
	dir     string
	ctl     *os.File
	ack     *os.File
	out     bytes.Buffer
	stopped bool
}

// PerfAvailable reports whether perf can count this process's system calls,
// and if not, why.
func PerfAvailable() error {
	p, err := StartPerf()
	if err != nil {
		return err
	}
	if err := p.Enable(); err != nil {
		p.Stop()
		return err
	}
	_ = ReadWriteSyscalls()
	if err := p.Disable(); err != nil {
		p.Stop()
		return err
	}
	n, err := p.Stop()
	if err != nil {
		return err
	}
	if n <= 0 {
		return errors.New("perf counted no system call")
	}
	return nil
}

// StartPerf starts perf attached to this process, counting disabled.
func StartPerf() (*Perf, error) {
	path, err := exec.LookPath("perf")
	if err != nil {
		return nil, errors.New("perf is not installed")
	}
	dir, err := os.MkdirTemp("", "rpcbench-perf-")
	if err != nil {
		return nil, err
	}
	ctlPath, ackPath := filepath.Join(dir, "ctl"), filepath.Join(dir, "ack")
	for _, f := range []string{ctlPath, ackPath} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	p := &Perf{dir: dir}
	p.cmd = exec.Command(path, "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
		"-D", "-1", "--control", "fifo:"+ctlPath+","+ackPath,
		"-p", strconv.Itoa(os.Getpid()))
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Opening a FIFO blocks until the other end opens it; perf opens both
	// at start-up. Bound the wait in case perf dies first.
	type opened struct {
		f   *os.File
		err error
	}
	ch := make(chan opened, 2)
	go func() { f, err := os.OpenFile(ctlPath, os.O_WRONLY, 0); ch <- opened{f, err} }()
	select {
	case o := <-ch:
		if o.err != nil {
			p.kill()
			return nil, o.err
		}
		p.ctl = o.f
	case <-time.After(5 * time.Second):
		p.kill()
		return nil, fmt.Errorf("perf did not start: %s", strings.TrimSpace(p.out.String()))
	}
	go func() { f, err := os.OpenFile(ackPath, os.O_RDONLY, 0); ch <- opened{f, err} }()
	select {
	case o := <-ch:
		if o.err != nil {
			p.kill()
			return nil, o.err
		}
		p.ack = o.f
	case <-time.After(5 * time.Second):
		p.kill()
		return nil, fmt.Errorf("perf did not open its ack FIFO: %s", strings.TrimSpace(p.out.String()))
	}
	return p, nil
}

func (p *Perf) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
	if p.ctl != nil {
		p.ctl.Close()
	}
	if p.ack != nil {
		p.ack.Close()
	}
	os.RemoveAll(p.dir)
}

func (p *Perf) command(c string) error {
	if _, err := p.ctl.Write([]byte(c + "\n")); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		var b [16]byte
		n, err := p.ack.Read(b[:])
		if err == nil && !strings.HasPrefix(string(b[:n]), "ack") {
			err = fmt.Errorf("perf answered %q", b[:n])
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		return errors.New("perf did not acknowledge " + c)
	}
}

// Enable starts counting and returns once perf has acknowledged.
func (p *Perf) Enable() error { return p.command("enable") }

// Disable stops counting and returns once perf has acknowledged.
func (p *Perf) Disable() error { return p.command("disable") }

// Stop ends perf and returns the number of system calls counted while
// enabled.
func (p *Perf) Stop() (int64, error) {
	if p.stopped {
		return 0, errors.New("perf already stopped")
	}
	p.stopped = true
	p.ctl.Close()
	p.cmd.Process.Signal(os.Interrupt)
	werr := p.cmd.Wait()
	p.ack.Close()
	os.RemoveAll(p.dir)
	for _, line := range strings.Split(p.out.String(), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || f[2] != "raw_syscalls:sys_enter" {
			continue
		}
		if strings.HasPrefix(f[0], "<not") {
			return 0, nil
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("perf output %q: %v", line, err)
		}
		return n, nil
	}
	if werr != nil {
		return 0, fmt.Errorf("perf: %v: %s", werr, strings.TrimSpace(p.out.String()))
	}
	return 0, fmt.Errorf("no count in perf output: %s", strings.TrimSpace(p.out.String()))
}
