package runtime

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// countingRegistry counts Register calls and fails them while fail is set.
type countingRegistry struct {
	registry.Registry
	registers atomic.Int64
	fail      atomic.Bool
}

func (c *countingRegistry) Register(ctx context.Context, in registry.Instance) error {
	c.registers.Add(1)
	if c.fail.Load() {
		return errors.New("registry down")
	}
	return c.Registry.Register(ctx, in)
}

// handClock is a clock the test moves by hand.
type handClock struct{ t time.Time }

func (c *handClock) Now() time.Time { return c.t }

// loadFixture is a served, registered export whose load reporter the test
// drives tick by tick with a fake clock (the server's own reporter, with an
// interval of an hour, never ticks).
type loadFixture struct {
	s     *Server
	ex    *Exporter
	reg   *countingRegistry
	clock *handClock
	lr    *loadReporter
	log   *registrytest.LogBuffer
}

func newLoadFixture(t *testing.T, cfg LoadReport) *loadFixture {
	t.Helper()
	inner := registry.NewInproc()
	t.Cleanup(func() { inner.Close() })
	f := &loadFixture{reg: &countingRegistry{Registry: inner}, clock: &handClock{t: time.UnixMilli(1_765_000_000_000)}, log: &registrytest.LogBuffer{}}
	f.s = NewServer(WithRegistry(f.reg), WithLogger(f.log.Logger()), WithShutdownWait(0), WithLoadReport(LoadReport{Interval: time.Hour}))
	ex, err := f.s.Export(&settingsEchoDesc, &settingsEcho{})
	if err != nil {
		t.Fatal(err)
	}
	f.ex = ex
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.s.Serve(l) }()
	t.Cleanup(func() {
		f.s.Close()
		<-done
	})
	waitSettled(t, func() bool { return ex.State() == ExportRegistered })
	f.lr = &loadReporter{s: f.s, cfg: &cfg, now: f.clock.Now, cpuTime: func() (time.Duration, bool) { return 0, false }}
	f.lr.start()
	return f
}

// tick advances the clock by d, adds calls handled meanwhile, ticks and
// returns the writes made.
func (f *loadFixture) tick(d time.Duration, calls uint64) int {
	f.s.served.Add(calls)
	f.clock.t = f.clock.t.Add(d)
	return f.lr.tick()
}

// published returns the load in the registry's entry of the export.
func (f *loadFixture) published(t *testing.T) (Load, bool) {
	t.Helper()
	ins, err := f.reg.Discover(context.Background(), f.ex.Key())
	if err != nil || len(ins) != 1 {
		t.Fatalf("Discover: %v, %v", ins, err)
	}
	v, ok := ins[0].Metadata[registry.MetadataLoad]
	if !ok {
		return Load{}, false
	}
	l, ok := ParseLoad(v)
	if !ok {
		t.Fatalf("published load %q does not parse", v)
	}
	return l, true
}

func TestLoadReportWritesOnlyChangesAndAged(t *testing.T) {
	const iv = time.Second
	f := newLoadFixture(t, LoadReport{Interval: iv, Threshold: 0.1, MaxAge: 10 * iv})
	base := f.reg.registers.Load() // the registration
	if _, ok := f.published(t); ok {
		t.Fatal("a load is published before the first tick")
	}
	// The first tick publishes, whatever the load.
	if n := f.tick(iv, 0); n != 1 {
		t.Fatalf("first tick: %d writes, want 1", n)
	}
	if l, ok := f.published(t); !ok || l.CallsPerSecond != 0 || l.InFlight != 0 || l.CPU != -1 || !l.At.Equal(f.clock.t) {
		t.Fatalf("first published load %+v, %v", l, ok)
	}
	// Idle: nothing until the max age.
	for i := 2; i <= 10; i++ {
		if n := f.tick(iv, 0); n != 0 {
			t.Fatalf("idle tick %d: %d writes, want 0", i, n)
		}
	}
	if n := f.tick(iv, 0); n != 1 {
		t.Fatalf("tick at the max age: %d writes, want 1", n)
	}
	// 100 calls in the interval: 100 cps, published at once.
	if n := f.tick(iv, 100); n != 1 {
		t.Fatalf("tick after a change: %d writes, want 1", n)
	}
	if l, _ := f.published(t); l.CallsPerSecond != 100 {
		t.Fatalf("published %v cps, want 100", l.CallsPerSecond)
	}
	// 105 cps: within 10%, not written.
	if n := f.tick(iv, 105); n != 0 {
		t.Fatalf("tick within the threshold: %d writes, want 0", n)
	}
	// Over the last interval, not the lifetime: 10 s at 50 calls a
	// second after 100 cps is 50 cps (a lifetime mean would be about 30).
	if n := f.tick(10*iv, 500); n != 1 {
		t.Fatalf("tick after a drop: %d writes, want 1", n)
	}
	if l, _ := f.published(t); l.CallsPerSecond != 50 {
		t.Fatalf("published %v cps, want 50 (over the last interval)", l.CallsPerSecond)
	}
	// In flight: a change of 2 counts.
	f.s.inflight.Add(2)
	n := f.tick(iv, 50)
	f.s.inflight.Add(-2)
	if n != 1 {
		t.Fatalf("tick with 2 in flight: %d writes, want 1", n)
	}
	if l, _ := f.published(t); l.InFlight != 2 {
		t.Fatalf("published %d in flight, want 2", l.InFlight)
	}
	if got, want := f.reg.registers.Load()-base, int64(5); got != want {
		t.Errorf("%d writes in all, want %d", got, want)
	}
	// The entry is the registered one with the load added.
	ins, _ := f.reg.Discover(context.Background(), f.ex.Key())
	if in := ins[0]; in.ID != f.ex.Instance().ID || in.Metadata[MetadataProtocols] == "" {
		t.Errorf("republished entry %+v lost the registration's fields", in)
	}
}

func TestLoadReportFailedWriteRetriedAndLoggedOnce(t *testing.T) {
	const iv = time.Second
	f := newLoadFixture(t, LoadReport{Interval: iv, Threshold: 0.1, MaxAge: 10 * iv})
	f.reg.fail.Store(true)
	base := f.reg.registers.Load()
	for range 3 {
		if n := f.tick(iv, 0); n != 0 {
			t.Fatalf("%d writes to a failing registry", n)
		}
	}
	if got := f.reg.registers.Load() - base; got != 3 {
		t.Errorf("%d attempts in 3 ticks, want 3 (one a tick)", got)
	}
	if n := strings.Count(f.log.String(), "publishing the load failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, f.log.String())
	}
	f.reg.fail.Store(false)
	if n := f.tick(iv, 0); n != 1 {
		t.Fatalf("after recovery: %d writes, want 1", n)
	}
	if _, ok := f.published(t); !ok {
		t.Error("no load published after recovery")
	}
	if !strings.Contains(f.log.String(), "publishing the load works again") {
		t.Errorf("recovery not logged:\n%s", f.log.String())
	}
}

func TestLoadReportNotAfterWithdrawal(t *testing.T) {
	const iv = time.Second
	f := newLoadFixture(t, LoadReport{Interval: iv, Threshold: 0.1, MaxAge: iv})
	if n := f.tick(iv, 10); n != 1 {
		t.Fatalf("first tick: %d writes", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	base := f.reg.registers.Load()
	if n := f.tick(iv, 1000); n != 0 {
		t.Fatalf("tick after Shutdown: %d writes", n)
	}
	if got := f.reg.registers.Load() - base; got != 0 {
		t.Errorf("%d Register calls after Shutdown", got)
	}
	ins, _ := f.reg.Discover(context.Background(), f.ex.Key())
	if len(ins) != 0 {
		t.Errorf("instances after Shutdown: %+v", ins)
	}
}

// The server's own reporter, in real time: the load appears within two
// intervals and is written at most once an interval.
func TestLoadReportRuns(t *testing.T) {
	inner := registry.NewInproc()
	defer inner.Close()
	reg := &countingRegistry{Registry: inner}
	const iv = 20 * time.Millisecond
	s := NewServer(WithRegistry(reg), WithShutdownWait(0), WithLoadReport(LoadReport{Interval: iv, CPU: true}))
	ex, err := s.Export(&settingsEchoDesc, &settingsEcho{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	defer func() {
		s.Close()
		<-done
	}()
	w, err := reg.Watch(context.Background(), ex.Key())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	var got Load
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ins, err := w.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("no load published after %v: %v", time.Since(start), err)
		}
		if len(ins) == 1 {
			if v, ok := ins[0].Metadata[registry.MetadataLoad]; ok {
				got, ok = ParseLoad(v)
				if !ok {
					t.Fatalf("published %q", v)
				}
				break
			}
		}
	}
	if el := time.Since(start); el > 2*iv+firstAttemptWait {
		t.Errorf("load published after %v", el)
	}
	t.Logf("published %v after %v", got, time.Since(start))
	base, t0 := reg.registers.Load(), time.Now()
	time.Sleep(10 * iv)
	if n, max := reg.registers.Load()-base, int64(time.Since(t0)/iv)+1; n > max {
		t.Errorf("%d writes in %v, more than one an interval", n, time.Since(t0))
	}
}

func TestParseLoad(t *testing.T) {
	at := time.UnixMilli(1_765_000_000_123)
	for _, l := range []Load{
		{CallsPerSecond: 1234.5, InFlight: 3, CPU: 0.42, At: at},
		{CallsPerSecond: 0, InFlight: 0, CPU: -1, At: at},
	} {
		got, ok := ParseLoad(l.String())
		if !ok || got != l && !(got.CallsPerSecond == l.CallsPerSecond && got.InFlight == l.InFlight && got.CPU == l.CPU && got.At.Equal(l.At)) {
			t.Errorf("ParseLoad(%q) = %+v, %v; want %+v", l.String(), got, ok, l)
		}
	}
	if s := (Load{CallsPerSecond: 1234.5, InFlight: 3, CPU: 0.42, At: at}).String(); s != "cps=1234.5,inflight=3,cpu=0.420,at=1765000000123" {
		t.Errorf("String() = %q", s)
	}
	if l, ok := ParseLoad("at=5,cps=1,inflight=2,future=x"); !ok || l.CallsPerSecond != 1 || l.InFlight != 2 || l.CPU != -1 {
		t.Errorf("unknown key: %+v, %v", l, ok)
	}
	for _, bad := range []string{
		"", "garbage", "cps=1,inflight=2", "cps=x,inflight=2,at=5", "cps=-1,inflight=2,at=5",
		"cps=NaN,inflight=2,at=5", "cps=Inf,inflight=2,at=5", "cps=1,inflight=2.5,at=5", "cps=1,inflight=2,at=5,cpu=",
		"cps=1,inflight=-2,at=5", "cps=1,,inflight=2,at=5", "cps=1;inflight=2;at=5",
	} {
		if l, ok := ParseLoad(bad); ok {
			t.Errorf("ParseLoad(%q) = %+v, true", bad, l)
		}
	}
	e := &Endpoint{inst: registry.Instance{Metadata: map[string]string{registry.MetadataLoad: "cps=2.0,inflight=1,at=7"}}}
	if l, ok := e.PublishedLoad(); !ok || l.CallsPerSecond != 2 || l.InFlight != 1 {
		t.Errorf("PublishedLoad = %+v, %v", l, ok)
	}
	for _, md := range []map[string]string{nil, {registry.MetadataLoad: "cps=2"}} {
		if l, ok := (&Endpoint{inst: registry.Instance{Metadata: md}}).PublishedLoad(); ok {
			t.Errorf("PublishedLoad of %v = %+v, true", md, l)
		}
	}
}

func TestWithLoadReportOptions(t *testing.T) {
	for _, r := range []LoadReport{{Interval: -1}, {MaxAge: -1}, {Threshold: -0.1}} {
		s := NewServer(WithLoadReport(r))
		if _, err := s.Export(&settingsEchoDesc, &settingsEcho{}); err == nil || !strings.Contains(err.Error(), "WithLoadReport") {
			t.Errorf("WithLoadReport(%+v): Export error %v", r, err)
		}
		s.Close()
	}
	var c serverConfig
	WithLoadReport(LoadReport{}).applyServer(&c)
	if r := c.loadReport; r.Interval != DefaultLoadReportInterval || r.Threshold != DefaultLoadReportThreshold || r.MaxAge != 10*DefaultLoadReportInterval {
		t.Errorf("defaults: %+v", *r)
	}
}

// Unexport and Shutdown racing the reporter, which writes at every tick
// (the load changes all the time): once they return, the entry is gone for
// good, never written back.
func TestLoadReportRacesWithdrawal(t *testing.T) {
	var republished int64
	for i := range 20 {
		inner := registry.NewInproc()
		reg := &countingRegistry{Registry: inner}
		s := NewServer(WithRegistry(reg), WithShutdownWait(0), WithLoadReport(LoadReport{Interval: minLoadReportInterval}))
		ex, err := s.Export(&settingsEchoDesc, &settingsEcho{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(l) }()
		stop := make(chan struct{})
		churned := make(chan struct{})
		go func() { // a load that changes at every tick
			defer close(churned)
			for n := uint64(1); ; n *= 2 {
				select {
				case <-stop:
					return
				case <-time.After(minLoadReportInterval / 2):
				}
				s.served.Add(n % 100_000)
			}
		}()
		waitSettled(t, func() bool { return ex.State() == ExportRegistered })
		time.Sleep(time.Duration(i%5) * minLoadReportInterval)
		republished += reg.registers.Load() - 1
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if i%2 == 0 {
			err = ex.Unexport(ctx)
		} else {
			err = s.Shutdown(ctx)
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		base := reg.registers.Load()
		time.Sleep(5 * minLoadReportInterval)
		if n := reg.registers.Load() - base; n != 0 {
			t.Errorf("run %d: %d writes after the withdrawal", i, n)
		}
		if ins, _ := inner.Discover(context.Background(), ex.Key()); len(ins) != 0 {
			t.Errorf("run %d: entry back after the withdrawal: %+v", i, ins)
		}
		close(stop)
		<-churned
		s.Close()
		<-done
		inner.Close()
	}
	if republished < 20 {
		t.Errorf("%d republications before the withdrawals: the race was not run", republished)
	}
	t.Logf("%d republications before the 20 withdrawals", republished)
}
