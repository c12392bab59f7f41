package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

// binDir holds the programs the tests build, removed when they end.
var binDir = sync.OnceValues(func() (string, error) { return os.MkdirTemp("", "storks-chaos-") })

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := binDir(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// binary returns a function that builds the command pkg once per test
// binary (without the race detector) and returns its path.
func binary(name, pkg string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		dir, err := binDir()
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin, nil
	})
}

var (
	providerBin = binary("provider", "github.com/storks-rpc/storks/examples/provider")
	loadgenBin  = binary("loadgen", "github.com/storks-rpc/storks/internal/chaos/loadgen")
)

// proc is one child process: a provider or a load generator.
type proc struct {
	name, addr, logPath string
	cmd                 *exec.Cmd
	out                 *syncBuffer
	exited              chan struct{}
	exitErr             error
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var readyLine = regexp.MustCompile(`(?m)^READY (\S+) (\S+)$`)

// startProc starts a provider process registering in the registry at url
// and waits until it serves. Each process logs the requests it runs to a
// file of its own (see readLog). The process is killed when the test ends.
func startProc(t *testing.T, url, name string, args ...string) *proc {
	t.Helper()
	p, err := launch(t, url, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startProcs starts n providers named p1..pn concurrently.
func startProcs(t *testing.T, url string, n int, args ...string) []*proc {
	t.Helper()
	ps := make([]*proc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps[i], errs[i] = launch(t, url, fmt.Sprintf("p%d", i+1), args...)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ps
}

// launch is startProc, for any goroutine.
func launch(t *testing.T, url, name string, args ...string) (*proc, error) {
	bin, err := providerBin()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, logPath: filepath.Join(t.TempDir(), name+".log"), out: new(syncBuffer), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-registry", url, "-name", name, "-listen", "127.0.0.1:0", "-log-requests", p.logPath}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("output of provider %s:\n%s", p.name, p.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := readyLine.FindStringSubmatch(p.out.String()); m != nil {
			p.addr = m[2]
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("provider %s exited (%v):\n%s", name, p.exitErr, p.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("provider %s not ready after 30s:\n%s", name, p.out.String())
		}
	}
}

// signal sends sig and returns when it was sent.
func (p *proc) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
	return at
}

// wait waits for the process to exit.
func (p *proc) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("provider %s still running %v later:\n%s", p.name, timeout, p.out.String())
	}
}

// readLog returns the request log of the provider: one "<method> <name>"
// per handler run.
func (p *proc) readLog(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return scanLines(string(b))
}

func openRegistry(t *testing.T, url string) registry.Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// refer makes a client of the registry at url and refers service.
func refer(t *testing.T, url, service string, copts []storks.ClientOption, ropts ...storks.ReferOption) *storks.Reference {
	t.Helper()
	cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(openRegistry(t, url))}, copts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, service, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// waitListed waits until the reference lists exactly the addresses of ps.
func waitListed(t *testing.T, ref *storks.Reference, ps ...*proc) {
	t.Helper()
	want := make([]string, len(ps))
	for i, p := range ps {
		want[i] = p.addr
	}
	slices.Sort(want)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got []string
		for _, in := range ref.Providers() {
			got = append(got, in.Addr)
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer lists %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// load runs callers that call until stopped.
type load struct {
	stop                  chan struct{}
	wg                    sync.WaitGroup
	started, done, failed atomic.Int64

	mu       sync.Mutex
	failures []failure
}

type failure struct {
	at  time.Time
	err error
}

// startLoad starts n callers, each calling call(worker, seq) in a loop with
// pause between calls.
func startLoad(n int, pause time.Duration, call func(worker, seq int) error) *load {
	l := &load{stop: make(chan struct{})}
	for w := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.started.Add(1)
				err := call(w, seq)
				l.done.Add(1)
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, failure{time.Now(), err})
					l.mu.Unlock()
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
		}()
	}
	return l
}

// finish stops the callers and waits for the calls in flight, failing the
// test if one of them does not complete.
func (l *load) finish(t *testing.T, timeout time.Duration) {
	t.Helper()
	close(l.stop)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%d calls still in flight %v after the load stopped", l.started.Load()-l.done.Load(), timeout)
	}
	if s, d := l.started.Load(), l.done.Load(); s != d {
		t.Fatalf("%d calls started, %d completed", s, d)
	}
}

// firstFailures describes up to n failures.
func (l *load) firstFailures(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for i, f := range l.failures {
		if i == n {
			fmt.Fprintf(&b, "\n  ... and %d more", len(l.failures)-n)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %v", f.at.Format("15:04:05.000"), f.err)
	}
	return b.String()
}

func (l *load) failuresSnapshot() []failure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.failures)
}

// recorder is the client's observer: per-address attempt counts and
// in-flight gauges, attempt and success times on one watched address, and
// every health event.
type recorder struct {
	watched string
	addrs   sync.Map // addr -> *addrStats

	// In flight on the watched address: the peak while armed (from a
	// kill until the first attempt that failed on the broken connection).
	armed atomic.Bool
	peak  atomic.Int64

	mu       sync.Mutex
	attempts []time.Time // attempts started on the watched address
	oks      []time.Time // attempts that succeeded on the watched address
	health   []healthEvent
}

type addrStats struct {
	attempts, inflight, ok, broken atomic.Int64
}

type healthEvent struct {
	at time.Time
	ev storks.Event
}

func newRecorder(watched string) *recorder { return &recorder{watched: watched} }

func (r *recorder) option() storks.ClientOption { return storks.WithObserver(r.observe) }

func (r *recorder) stats(addr string) *addrStats {
	if s, ok := r.addrs.Load(addr); ok {
		return s.(*addrStats)
	}
	s, _ := r.addrs.LoadOrStore(addr, new(addrStats))
	return s.(*addrStats)
}

func (r *recorder) observe(ev storks.Event) {
	now := time.Now()
	switch ev.Kind {
	case storks.EventAttempt:
		s := r.stats(ev.Addr)
		s.attempts.Add(1)
		n := s.inflight.Add(1)
		if ev.Addr == r.watched {
			if r.armed.Load() {
				r.raisePeak(n)
			}
			r.mu.Lock()
			r.attempts = append(r.attempts, now)
			r.mu.Unlock()
		}
	case storks.EventAttemptDone:
		s := r.stats(ev.Addr)
		broken := errors.Is(ev.Err, storks.ErrConnClosed)
		if ev.Addr == r.watched && broken && r.armed.Load() {
			r.raisePeak(s.inflight.Load())
			r.armed.Store(false)
		}
		s.inflight.Add(-1)
		switch {
		case ev.Err == nil:
			s.ok.Add(1)
			if ev.Addr == r.watched {
				r.mu.Lock()
				r.oks = append(r.oks, now)
				r.mu.Unlock()
			}
		case broken:
			s.broken.Add(1)
		}
	default:
		r.mu.Lock()
		r.health = append(r.health, healthEvent{now, ev})
		r.mu.Unlock()
	}
}

func (r *recorder) raisePeak(n int64) {
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// arm starts measuring the peak in flight on the watched address.
func (r *recorder) arm() {
	r.peak.Store(r.stats(r.watched).inflight.Load())
	r.armed.Store(true)
}

// attemptsBetween counts attempts on the watched address started in
// (from, to).
func (r *recorder) attemptsBetween(from, to time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, at := range r.attempts {
		if at.After(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// lastAttempt is the time of the last attempt on the watched address.
func (r *recorder) lastAttempt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.attempts) == 0 {
		return time.Time{}
	}
	return r.attempts[len(r.attempts)-1]
}

// firstOK returns the first success on the watched address after t.
func (r *recorder) firstOK(after time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.oks {
		if at.After(after) {
			return at, true
		}
	}
	return time.Time{}, false
}

// healthEvents returns the health events of kind on addr after t.
func (r *recorder) healthEvents(kind storks.EventKind, addr string, after time.Time) []healthEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []healthEvent
	for _, h := range r.health {
		if h.ev.Kind == kind && h.ev.Addr == addr && h.at.After(after) {
			out = append(out, h)
		}
	}
	return out
}

// waitHealth waits for the first health event of kind on addr after t.
func (r *recorder) waitHealth(t *testing.T, kind storks.EventKind, addr string, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if evs := r.healthEvents(kind, addr, after); len(evs) > 0 {
			return evs[0].at
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v event for %s within %v", kind, addr, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// perAddr formats the attempts per address.
func (r *recorder) perAddr(ps ...*proc) string {
	var parts []string
	for _, p := range ps {
		s := r.stats(p.addr)
		parts = append(parts, fmt.Sprintf("%s %d (%d ok)", p.name, s.attempts.Load(), s.ok.Load()))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// figures logs one line of a test's figures.
func figures(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("figures: "+format, args...)
}

// scanLines is bufio.ScanLines over a string.
func scanLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
