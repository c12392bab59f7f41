package grpcgo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/common/v1"
	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
)

// gRPC calls in flight when a provider shuts down gracefully run to their
// end: unary calls whose handlers outlast the shutdown wait and the start
// of the drain (the listener closed, GOAWAY sent) answer as usual, and a
// bidi stream open across SIGTERM goes on exchanging messages during the
// drain and ends cleanly when the client ends it.
func TestShutdownLetsGRPCCallsFinish(t *testing.T) {
	const (
		latency = 3 * time.Second
		wait    = time.Second
		calls   = 6
	)
	log := filepath.Join(t.TempDir(), "requests.log")
	p := startProvider(t, "inproc://", "draining", "-latency", latency.String(), "-shutdown-wait", wait.String(), "-log-requests", log)
	cc := dial(t, p.addr)
	g, e := greeterv1.NewGreeterClient(cc), echov1.NewEchoClient(cc)
	ctx := timeout(t, 60*time.Second)

	chat, err := e.Chat(ctx)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	exchange := func(body string) {
		t.Helper()
		if err := chat.Send(&commonv1.Text{Body: body}); err != nil {
			t.Fatalf("Chat: Send(%q): %v", body, err)
		}
		if m, err := chat.Recv(); err != nil || m.GetBody() != body {
			t.Fatalf("Chat: Recv after %q: %v, %v", body, m, err)
		}
	}
	exchange("before SIGTERM")

	results := make(chan error, calls)
	for i := range calls {
		go func() {
			name := fmt.Sprintf("call%d", i)
			if i%2 == 0 {
				out, err := g.SayHello(ctx, &greeterv1.HelloRequest{Name: name})
				if err == nil && out.GetMessage() != "Hello, "+name {
					err = fmt.Errorf("SayHello(%q) = %q", name, out.GetMessage())
				}
				results <- err
				return
			}
			out, err := e.Echo(ctx, &commonv1.Text{Body: name})
			if err == nil && out.GetBody() != name {
				err = fmt.Errorf("Echo(%q) = %q", name, out.GetBody())
			}
			results <- err
		}()
	}
	// Every handler runs (and sleeps out -latency) before the SIGTERM.
	for deadline := time.Now().Add(30 * time.Second); len(readLines(t, log)) < calls; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d handlers ran within 30s: %q", len(readLines(t, log)), calls, readLines(t, log))
		}
	}
	termed := p.terminate(t)

	// The drain begins when the provider closes its listener, after
	// -shutdown-wait.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("provider still accepts connections 30s after SIGTERM")
		}
	}
	drain := time.Since(termed)
	if drain >= latency {
		t.Fatalf("the drain began %v after SIGTERM, not before the calls in flight end (%v): the test proves nothing", drain, latency)
	}
	exchange("during the drain")
	if err := chat.CloseSend(); err != nil {
		t.Fatalf("Chat: CloseSend: %v", err)
	}
	if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Chat: Recv after CloseSend during the drain: %v, want io.EOF", err)
	}

	for range calls {
		if err := <-results; err != nil {
			t.Errorf("a call in flight at SIGTERM: %v", err)
		}
	}
	p.waitExit(t, 30*time.Second)
	t.Logf("drain began %v after SIGTERM; provider exited %v after it",
		drain.Round(time.Millisecond), time.Since(termed).Round(time.Millisecond))
}
