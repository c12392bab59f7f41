package runtime_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// requestFrame is a complete request frame for test.Echo/Echo carrying
// payload as the request's value.
func requestFrame(id uint64, payload string) []byte {
	msg := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(payload)))...)
	msg = append(msg, payload...)
	body := []byte{byte(len(echoService))}
	body = append(body, echoService...)
	body = append(body, 4, 'E', 'c', 'h', 'o', 0, 0)
	body = append(body, msg...)
	b := []byte{'S', 'K', 1, 1}
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// latencies makes n sequential calls and returns their sorted durations.
func latencies(t *testing.T, ref storks.Invoker, n int) []time.Duration {
	t.Helper()
	d, err := latenciesUntil(ref, func(i int) bool { return i == n })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// latenciesUntil makes sequential calls, a millisecond apart, until stop
// and returns their sorted durations.
func latenciesUntil(ref storks.Invoker, stop func(calls int) bool) ([]time.Duration, error) {
	var d []time.Duration
	for i := 0; !stop(i); i++ {
		start := time.Now()
		if _, err := callEcho(context.Background(), ref, "x"); err != nil {
			return d, fmt.Errorf("legitimate call %d: %w", i, err)
		}
		d = append(d, time.Since(start))
		time.Sleep(time.Millisecond)
	}
	slices.Sort(d)
	return d, nil
}

func pct(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

func heapInuse() uint64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapInuse
}

// 200 connections trickle one byte a second and 200 announce a 1 MiB frame
// and stall. Every one is closed at the frame timeout, the server's memory
// stays bounded while they hold on (a stalled announcement pins what was
// sent, not what was announced), and a legitimate caller keeps its latency.
func TestSlowClientsAreClosedAtTheFrameTimeout(t *testing.T) {
	const (
		tricklers    = 200
		stallers     = 200
		frameTimeout = time.Second
	)
	reg := newRegistry(t)
	var logs logBuffer
	srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{
		storks.WithLogger(logs.logger()), storks.WithFrameTimeout(frameTimeout),
	})
	_, ref := refer(t, reg, nil)
	latencies(t, ref, 50) // warm up
	before := latencies(t, ref, 300)
	heapBefore := heapInuse()

	type result struct {
		kind   string
		closed time.Duration // from the first byte sent to the server closing
		err    error
	}
	results := make(chan result, tricklers+stallers)
	var ready sync.WaitGroup
	attack := func(kind string, first []byte, trickle bool) {
		defer ready.Done()
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			results <- result{kind: kind, err: err}
			return
		}
		start := time.Now()
		if _, err := c.Write(first); err != nil {
			c.Close()
			results <- result{kind: kind, err: err}
			return
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * frameTimeout))
			_, err := io.Copy(io.Discard, c) // returns when the server closes
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				results <- result{kind: kind, err: fmt.Errorf("%s connection still open after %v", kind, time.Since(start))}
				return
			}
			results <- result{kind: kind, closed: time.Since(start)}
		}()
		if trickle {
			go func() {
				frame := requestFrame(1, "trickle")
				for i := 1; i < len(frame); i++ {
					select {
					case <-closed:
						return
					case <-time.After(time.Second):
					}
					if _, err := c.Write(frame[i : i+1]); err != nil {
						return
					}
				}
			}()
		}
	}
	ready.Add(tricklers + stallers)
	attackStart := time.Now()
	for i := range tricklers + stallers {
		if i%2 == 0 {
			go attack("trickle", requestFrame(1, "trickle")[:1], true)
		} else {
			// A header announcing a 1 MiB body, 100 bytes of it, then nothing.
			h := []byte{'S', 'K', 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x10, 0, 0}
			go attack("1 MiB stall", append(h, make([]byte, 100)...), false)
		}
	}
	ready.Wait()
	connected := time.Since(attackStart)
	heapDuring := heapInuse()
	// The legitimate caller runs from now until every attacker is closed.
	var attackOver atomic.Bool
	legit := make(chan error, 1)
	var during []time.Duration
	go func() {
		var err error
		during, err = latenciesUntil(ref, func(int) bool { return attackOver.Load() })
		legit <- err
	}()
	closed := map[string][]time.Duration{}
	for range tricklers + stallers {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		closed[r.kind] = append(closed[r.kind], r.closed)
	}
	attackOver.Store(true)
	if err := <-legit; err != nil {
		t.Fatal(err)
	}
	after := latencies(t, ref, 100)

	grew := int64(heapDuring) - int64(heapBefore)
	t.Logf("legitimate caller, sequential calls: before the attack p50 %v p99 %v; during it (%d calls, until the last attacker was closed) p50 %v p99 %v; after it p50 %v p99 %v",
		pct(before, .5), pct(before, .99), len(during), pct(during, .5), pct(during, .99), pct(after, .5), pct(after, .99))
	t.Logf("%d attacking connections opened in %v; server heap in use grew by %.1f MiB while they held on (%.1f KiB each)",
		tricklers+stallers, connected.Round(time.Millisecond), float64(grew)/(1<<20), float64(grew)/1024/(tricklers+stallers))
	for kind, d := range closed {
		slices.Sort(d)
		t.Logf("%d %s connections closed after min %v, median %v, max %v (frame timeout %v)",
			len(d), kind, d[0].Round(time.Millisecond), pct(d, .5).Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), frameTimeout)
		// The timeout runs from the first byte; the watchdog sweeps every
		// tenth of it, so the close comes within about 1.2 timeouts. The
		// upper bound is generous for a loaded machine.
		if d[0] < frameTimeout*9/10 || d[len(d)-1] > 5*frameTimeout {
			t.Errorf("%s connections closed after %v..%v, want about %v", kind, d[0], d[len(d)-1], frameTimeout)
		}
	}
	if p99, limit := pct(during, .99), max(50*time.Millisecond, 10*pct(before, .99)); p99 > limit {
		t.Errorf("legitimate p99 under attack %v > %v", p99, limit)
	}
	// Before readBody grew buffers as bytes arrive, the 200 stalled
	// announcements alone pinned 200 MiB.
	if grew > 64<<20 {
		t.Errorf("heap grew by %d MiB during the attack, want < 64 MiB", grew>>20)
	}
	// The warnings are rate-limited: those not logged are counted in
	// summaries, logged at the watchdog's next sweep.
	waitFor(t, func() bool {
		logged, suppressed, _ := warnings(logs.String(), "frame not complete 1s after its first byte", "timeout")
		return logged+suppressed == tricklers+stallers
	})
	if logged, suppressed, _ := warnings(logs.String(), "frame not complete 1s after its first byte", "timeout"); logged > 50 {
		t.Errorf("server logged %d frame timeouts (and suppressed %d), want them rate-limited", logged, suppressed)
	}
}

// A client that sends requests but never reads the replies: the server
// stops reading its requests once the replies back up, and closes the
// connection when a write has been stuck for the frame timeout. Other
// clients are not affected.
func TestClientThatDoesNotReadIsClosed(t *testing.T) {
	reg := newRegistry(t)
	var logs logBuffer
	impl := &echoImpl{name: "p"}
	srv, _ := startProvider(t, reg, impl, []storks.ServerOption{
		storks.WithLogger(logs.logger()), storks.WithFrameTimeout(2 * time.Second),
	})
	_, ref := refer(t, reg, nil)
	heapBefore := heapInuse()
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	frame := requestFrame(1, strings.Repeat("x", 60<<10))
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, err := c.Write(frame); err != nil {
				done <- err
				return
			}
			sent.Add(1)
		}
	}()
	// Watch the requests the server runs: once the replies back up, it
	// takes no more, until it closes the connection.
	var peak uint64
	var plateau, longest time.Duration
	last, lastChange := impl.calls.Load(), time.Now()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "replies not read by the client") {
		if time.Now().After(deadline) {
			t.Fatalf("server did not close the connection; it ran %d of %d requests", impl.calls.Load(), sent.Load())
		}
		if n := impl.calls.Load(); n != last {
			last, lastChange = n, time.Now()
		}
		plateau = time.Since(lastChange)
		longest = max(longest, plateau)
		peak = max(peak, heapInuse())
		time.Sleep(20 * time.Millisecond)
	}
	if err := <-done; err == nil {
		t.Fatal("writes did not fail")
	}
	t.Logf("non-reading client sent %d requests of 60 KiB (%.1f MiB); the server ran %d of them, then took none for %v until it closed the connection; server heap peaked at +%.1f MiB",
		sent.Load(), float64(sent.Load()*int64(len(frame)))/(1<<20), impl.calls.Load(), longest.Round(time.Millisecond), float64(int64(peak)-int64(heapBefore))/(1<<20))
	// The write stall is detected 2s after it starts; the server must have
	// stopped taking requests well before.
	if longest < 500*time.Millisecond {
		t.Errorf("the server kept taking requests from a client that reads no reply (longest pause %v)", longest)
	}
	if got, err := callEcho(context.Background(), ref, "ok"); err != nil || got != "p:ok" {
		t.Fatalf("other client: %q, %v", got, err)
	}
}

// The per-connection cap: requests over it are answered at once with
// ResourceExhausted, flagged as not run; under it everything works.
func TestPerConnectionRequestCap(t *testing.T) {
	const limit = 8
	reg := newRegistry(t)
	release := make(chan struct{})
	var running atomic.Int64
	impl := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.GetValue() == "block" {
			running.Add(1)
			<-release
		}
		return wrapperspb.String("ok:" + in.GetValue()), nil
	}}
	_, lis := startProvider(t, reg, impl, []storks.ServerOption{storks.WithMaxConcurrentRequests(limit)})
	_, ref := refer(t, reg, nil)
	var wg sync.WaitGroup
	errs := make(chan error, limit)
	for range limit {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := callEcho(context.Background(), ref, "block"); err != nil {
				errs <- err
			}
		}()
	}
	waitFor(t, func() bool { return running.Load() == limit })
	_, err := callEcho(context.Background(), ref, "over")
	wantCode(t, err, storks.CodeResourceExhausted, fmt.Sprintf("%d requests are already running on this connection", limit))
	if n := impl.calls.Load(); n != limit {
		t.Fatalf("handler ran %d times, want %d: the request over the cap ran", n, limit)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Back under the cap, on the same connection.
	for i := range 3 * limit {
		if got, err := callEcho(context.Background(), ref, fmt.Sprint(i)); err != nil || got != fmt.Sprintf("ok:%d", i) {
			t.Fatalf("call under the cap: %q, %v", got, err)
		}
	}
	if n := lis.accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// An idle connection is sent goaway: the client closes it and redials for
// its next call, losing nothing. A connection with a call running is not
// idle, however long the call. A client that ignores goaway is closed.
func TestIdleConnections(t *testing.T) {
	reg := newRegistry(t)
	var logs logBuffer
	impl := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if d, err := time.ParseDuration(in.GetValue()); err == nil {
			time.Sleep(d)
		}
		return wrapperspb.String(in.GetValue()), nil
	}}
	const idle = 200 * time.Millisecond
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithLogger(logs.logger()),
		storks.WithIdleTimeout(idle), storks.WithFrameTimeout(300*time.Millisecond))
	if _, err := srv.Export(&echoDesc, impl); err != nil {
		t.Fatal(err)
	}
	lis := &closeCountingListener{Listener: listen(t)}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close(); <-served })
	waitFor(t, func() bool { return len(instances(t, reg)) == 1 }) // Serve registers in the background
	_, ref := refer(t, reg, nil)

	// A call four times as long as the idle timeout keeps its connection.
	if _, err := callEcho(context.Background(), ref, (4 * idle).String()); err != nil {
		t.Fatal(err)
	}
	if n := lis.accepted.Load(); n != 1 {
		t.Fatalf("%d connections after a long call, want 1", n)
	}

	// Idle: goaway, the client closes, the next call dials again.
	waitFor(t, func() bool { return lis.closed.Load() == 1 })
	if _, err := callEcho(context.Background(), ref, "again"); err != nil {
		t.Fatal(err)
	}
	if n := lis.accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the idle one replaced)", n)
	}

	// Calls with pauses around the idle timeout: none fails.
	for i := range 16 {
		if _, err := callEcho(context.Background(), ref, "x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		time.Sleep(time.Duration(i%4) * idle / 2)
	}
	t.Logf("16 calls with pauses of 0 to 1.5 idle timeouts: 0 failed, %d connections used in all", lis.accepted.Load())

	// A raw client that ignores goaway is closed after the grace period.
	raw, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	got, err := io.ReadAll(bufio.NewReader(raw))
	if err != nil {
		t.Fatalf("idle raw connection not closed: %v", err)
	}
	if len(got) != 16 || got[3] != 7 {
		t.Fatalf("server sent %x before closing, want one goaway frame", got)
	}
	t.Logf("raw idle connection: goaway, then closed %v after connecting (idle %v + grace 300ms)", time.Since(start).Round(time.Millisecond), idle)
	waitFor(t, func() bool { return strings.Contains(logs.String(), "idle connection kept open 300ms after goaway") })
}

// closeCountingListener counts accepted connections and how many of them
// the server has closed (after the client did, or on its own).
type closeCountingListener struct {
	net.Listener
	accepted, closed atomic.Int64
}

func (l *closeCountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &closeCountingConn{Conn: c, l: l}, nil
}

type closeCountingConn struct {
	net.Conn
	l    *closeCountingListener
	once sync.Once
}

func (c *closeCountingConn) Close() error {
	c.once.Do(func() { c.l.closed.Add(1) })
	return c.Conn.Close()
}

// Invalid options make Serve fail with an error naming the option.
func TestServerOptionsAreChecked(t *testing.T) {
	cases := []struct {
		opt  storks.ServerOption
		want string
	}{
		{storks.WithFrameTimeout(-time.Second), "WithFrameTimeout: frame timeout -1s must not be negative"},
		{storks.WithIdleTimeout(-1), "WithIdleTimeout: idle timeout -1ns must not be negative"},
		{storks.WithMaxConcurrentRequests(-5), "WithMaxConcurrentRequests: limit -5 must not be negative"},
		{storks.WithMaxConnections(-1), "WithMaxConnections: limit -1 must not be negative"},
		{storks.WithMaxConnectionsPerIP(-2), "WithMaxConnectionsPerIP: limit -2 must not be negative"},
		{storks.WithMaxMessageSize(-1), "WithMaxMessageSize: max message size -1 must not be negative"},
		{storks.WithTLSConfig(nil), "WithTLSConfig: the *tls.Config is nil"},
	}
	for _, c := range cases {
		srv := storks.NewServer(c.opt)
		lis := listen(t)
		err := srv.Serve(lis)
		wantCode(t, err, storks.CodeInvalidArgument, c.want)
		if _, err := lis.Accept(); err == nil {
			t.Fatal("Serve left the listener open")
		}
		srv.Close()
	}
}
