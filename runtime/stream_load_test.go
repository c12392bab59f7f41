package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"

	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// streamWindow is the default initial stream window.
const streamWindow = 256 << 10

// A receiver that stops reading stops its sender after one window, while
// 64 callers' unary calls on the same connection keep completing.
func TestStreamStalledReceiverHeadOfLine(t *testing.T) {
	reg := newRegistry(t)
	const msgSize = 1024
	var sent atomic.Int64
	impl := &streamBoth{}
	impl.echoImpl.name = "e"
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		msg := wrapperspb.Bytes(make([]byte, msgSize))
		for {
			if err := st.Send(msg); err != nil {
				return err
			}
			sent.Add(1)
		}
	}
	startStreamProvider(t, reg, impl)
	ref := referStream(t, reg, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chat, err := openChat(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chat.Header(); err != nil { // the stream is open; now never read
		t.Fatal(err)
	}
	waitFor(t, func() bool { return sent.Load() > 0 })

	// 64 callers make unary calls on the same connection meanwhile.
	var (
		mu    sync.Mutex
		lat   []time.Duration
		fails atomic.Int64
		wg    sync.WaitGroup
	)
	stop := time.Now().Add(time.Second)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				t0 := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := callEchoMethod(cctx, ref, "/"+streamService+"/Echo", "x")
				ccancel()
				if err != nil {
					fails.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := fails.Load(); n > 0 {
		t.Fatalf("%d unary calls failed while a stream was stalled", n)
	}
	if len(lat) < 64 {
		t.Fatalf("only %d unary calls completed in 1s while a stream was stalled", len(lat))
	}
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	// The stalled sender: at most one stream window (256 KiB) of messages,
	// each costing its size plus a flags byte, plus one message that is
	// the head (its credit is granted as it arrives), plus the Send in
	// progress.
	maxSent := int64(streamWindow/(msgSize+3)) + 3
	got := sent.Load()
	t.Logf("unary calls completed: %d, p50 %v, p99 %v; stalled stream's sends: %d (bound %d)", len(lat), lat[len(lat)/2], p99, got, maxSent)
	if got > maxSent {
		t.Fatalf("the stalled stream's sender sent %d messages of %d bytes, more than one window allows (%d)", got, msgSize, maxSent)
	}
	time.Sleep(50 * time.Millisecond)
	if again := sent.Load(); again != got {
		t.Fatalf("the stalled sender kept sending: %d, then %d", got, again)
	}
	// Reading resumes the flow.
	for range int(got) + 100 {
		if _, err := chat.Recv(); err != nil {
			t.Fatal(err)
		}
	}
}

// A client whose server does not read stops after one window too.
func TestStreamStalledServerStopsClient(t *testing.T) {
	reg := newRegistry(t)
	release := make(chan struct{})
	impl := &streamBoth{}
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		<-release
		return nil
	}
	startStreamProvider(t, reg, impl)
	ref := referStream(t, reg, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chat, err := openChat(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	done := make(chan error, 1)
	go func() {
		msg := wrapperspb.Bytes(make([]byte, 4096))
		for {
			if err := chat.Send(msg); err != nil {
				done <- err
				return
			}
			sent.Add(1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	got := sent.Load()
	t.Logf("sends before the window filled: %d", got)
	if got > streamWindow/4096+3 {
		t.Fatalf("client sent %d messages of 4 KiB to a server that reads none", got)
	}
	close(release) // the handler returns: the stream ends, the sender wakes
	select {
	case err := <-done:
		if err != io.EOF {
			t.Fatalf("Send after the server ended the stream = %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocked sender did not wake when the stream ended")
	}
}

// 1,000 streams at once on one connection.
func TestStreamThousandConcurrent(t *testing.T) {
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithMaxConcurrentStreams(1000), storks.WithShutdownWait(50*time.Millisecond))
	if _, err := srv.Export(&streamDesc, &streamBoth{}); err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: listen(t)}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	waitFor(t, func() bool { return srv.Addr() != "" })
	ref := referStream(t, reg, false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const n = 1000
	streams := make([]storks.BidiStreamingClient[wrapperspb.BytesValue, wrapperspb.BytesValue], n)
	for i := range streams {
		s, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 3 {
				msg := []byte{byte(i), byte(i >> 8), byte(j)}
				if err := s.Send(wrapperspb.Bytes(msg)); err != nil {
					errs <- err
					return
				}
				r, err := s.Recv()
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(r.GetValue(), msg) {
					errs <- errors.New("a stream got another stream's message")
					return
				}
			}
			s.CloseSend()
			if _, err := s.Recv(); err != io.EOF {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if a := cl.accepted.Load(); a != 1 {
		t.Fatalf("%d connections accepted, want 1", a)
	}
}

// 64 MiB in 16 KiB messages arrives intact; a 3 MiB message, far larger
// than the window, goes through.
func TestStreamBulkTransfer(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		impl := &streamBoth{}
		impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
			h := sha256.New()
			var n int
			for {
				m, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				h.Write(m.GetValue())
				n += len(m.GetValue())
				if len(m.GetValue()) > 1<<20 {
					if err := st.Send(m); err != nil { // echo the big one
						return err
					}
				}
			}
			return st.Send(wrapperspb.Bytes(h.Sum(nil)))
		}
		startStreamProvider(t, reg, impl)
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		total := 64 << 20
		if testing.Short() {
			total = 8 << 20
		}
		h := sha256.New()
		msg := make([]byte, 16<<10)
		start := time.Now()
		for range total / len(msg) {
			rand.Read(msg)
			h.Write(msg)
			if err := chat.Send(wrapperspb.Bytes(msg)); err != nil {
				t.Fatal(err)
			}
		}
		big := make([]byte, 3<<20)
		rand.Read(big)
		h.Write(big)
		if err := chat.Send(wrapperspb.Bytes(big)); err != nil {
			t.Fatal(err)
		}
		chat.CloseSend()
		echo, err := chat.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(echo.GetValue(), big) {
			t.Fatal("the 3 MiB message came back changed")
		}
		sum, err := chat.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sum.GetValue(), h.Sum(nil)) {
			t.Fatal("checksum mismatch: the server received other bytes than were sent")
		}
		t.Logf("%d MiB in 16 KiB messages plus 3 MiB: %v", total>>20, time.Since(start))
	})
}

// A message over the smaller of the two max message sizes fails locally
// with ResourceExhausted; the stream goes on.
func TestStreamMessageTooLarge(t *testing.T) {
	reg := newRegistry(t)
	startStreamProvider(t, reg, &streamBoth{}, storks.WithMaxMessageSize(1<<20))
	ref := referStream(t, reg, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chat, err := openChat(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, chat.Send(wrapperspb.Bytes(make([]byte, 2<<20))), storks.CodeResourceExhausted, "larger than max")
	if err := chat.Send(wrapperspb.Bytes([]byte("ok"))); err != nil {
		t.Fatal(err)
	}
	if r, err := chat.Recv(); err != nil || string(r.GetValue()) != "ok" {
		t.Fatalf("after a refused message: %v, %v", r, err)
	}
}

// Beyond the server's max concurrent streams a client waits for a slot.
func TestStreamWaitsForSlot(t *testing.T) {
	reg := newRegistry(t)
	startStreamProvider(t, reg, &streamBoth{}, storks.WithMaxConcurrentStreams(2))
	ref := referStream(t, reg, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := openChat(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openChat(ctx, ref); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	_, err = openChat(short, ref)
	wantCode(t, err, storks.CodeDeadlineExceeded, "")
	opened := make(chan error, 1)
	go func() {
		_, err := openChat(ctx, ref)
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("a third stream opened while two were open: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	a.CloseSend()
	if _, err := a.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting stream did not open when a slot freed")
	}
}

// Shutdown: new streams are refused, open ones get WithShutdownWait and
// then end with Unavailable.
func TestStreamGracefulShutdown(t *testing.T) {
	modes(t, testStreamGracefulShutdown)
}

func testStreamGracefulShutdown(t *testing.T, local bool) {
	reg := newRegistry(t)
	impl := &streamBoth{}
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		<-st.Context().Done()
		return st.Context().Err()
	}
	srv := startStreamProvider(t, reg, impl, storks.WithShutdownWait(300*time.Millisecond))
	ref := referStream(t, reg, local)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chat, err := openChat(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.Send(wrapperspb.Bytes([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	_, err = chat.Recv()
	took := time.Since(start)
	wantCode(t, err, storks.CodeUnavailable, "shutting down")
	if took < 300*time.Millisecond {
		t.Fatalf("the open stream ended %v after Shutdown, before its WithShutdownWait (300ms)", took)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	t.Logf("the open stream ended with Unavailable %v after Shutdown began", took)
}

// Streams abandoned in every state release their goroutines and buffers,
// on both sides.
func TestStreamAbandonedReleaseEverything(t *testing.T) {
	reg := newRegistry(t)
	impl := &streamBoth{}
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		switch string(m.GetValue()[:1]) {
		case "r": // return at once, without reading the rest
			return nil
		case "f": // fill the client's window, then return
			for range 20 {
				if err := st.Send(wrapperspb.Bytes(make([]byte, 4096))); err != nil {
					return err
				}
			}
			return nil
		}
		<-st.Context().Done() // wait for the client to go
		return nil
	}
	startStreamProvider(t, reg, impl)
	ref := referStream(t, reg, false)
	// Warm up: the connection and its goroutines exist.
	if _, err := callEchoMethod(context.Background(), ref, "/"+streamService+"/Echo", "x"); err != nil {
		t.Fatal(err)
	}
	settle := func() (int, uint64) {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
			time.Sleep(20 * time.Millisecond)
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	g0, h0 := settle()
	n := 10000
	if testing.Short() {
		n = 2000
	}
	big := wrapperspb.Bytes(make([]byte, 8192))
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 4 {
		case 0: // opened, then cancelled
		case 1: // the handler returns without reading; the client drops it
			chat.Send(wrapperspb.Bytes([]byte("r")))
			chat.Send(big)
			for {
				if _, err := chat.Recv(); err != nil {
					break
				}
			}
		case 2: // the server fills the window; the client never reads
			chat.Send(wrapperspb.Bytes([]byte("f")))
			chat.Header()
		case 3: // the client sends, reads nothing, and cancels
			chat.Send(wrapperspb.Bytes([]byte("w")))
			chat.Send(big)
		}
		cancel()
	}
	waitFor(t, func() bool {
		g, _ := settle()
		return g <= g0+5
	})
	g1, h1 := settle()
	t.Logf("%d streams abandoned: goroutines %d -> %d, heap %d KiB -> %d KiB", n, g0, g1, h0>>10, h1>>10)
	if h1 > h0+8<<20 {
		t.Fatalf("heap grew by %d KiB after %d abandoned streams", (h1-h0)>>10, n)
	}
	// The connection is still good.
	if _, err := callEchoMethod(context.Background(), ref, "/"+streamService+"/Echo", "x"); err != nil {
		t.Fatal(err)
	}
}
