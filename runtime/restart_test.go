package runtime_test

import (
	"context"
	"github.com/storks-rpc/storks/internal/loadtest"
	"strings"
	"sync"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A provider that is draining answers new calls with "not executed"; a
// provider that is gone refuses the connection. Neither ran the call, so the
// reference sends it to another instance, for any method.
func TestCallsThatDidNotRunGoElsewhere(t *testing.T) {
	reg := newRegistry(t)
	srvA, _ := startProvider(t, reg, &echoImpl{name: "a"}, nil)
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	// Deferred, so a failing test releases the held handler before the
	// servers are closed by the cleanups.
	defer unblock()
	entered := make(chan struct{}, 1)
	b := &echoImpl{hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if in.GetValue() == "hold" {
			entered <- struct{}{}
			<-release
		}
		return wrapperspb.String("b:" + in.GetValue()), nil
	}}
	srvB, _ := startProvider(t, reg, b, []storks.ServerOption{storks.WithShutdownWait(0)})
	// A fixed list, so the consumer keeps calling B after it deregisters.
	static := mustOpen(t, "static://"+srvA.Addr()+","+srvB.Addr())
	_, ref := refer(t, static, nil)

	hold := make(chan error, 1)
	go func() {
		// Round-robin: find B by calling until a hold lands there.
		for {
			got, err := callEcho(context.Background(), ref, "hold")
			if err != nil || strings.HasPrefix(got, "b:") {
				hold <- err
				return
			}
		}
	}()
	select {
	case <-entered:
	case err := <-hold:
		t.Fatalf("held call ended before it was held: %v", err)
	}
	shut := make(chan error, 1)
	go func() { shut <- srvB.Shutdown(context.Background()) }()
	// B is draining (the held call keeps it from closing): every new call
	// it receives is refused and must be served by A instead.
	waitFor(t, func() bool {
		_, err := srvB.Export(&bytesDesc, bytesImpl{})
		return err != nil
	})
	for i := range 20 {
		got, err := callEcho(context.Background(), ref, "x")
		if err != nil || got != "a:x" {
			t.Fatalf("call %d while B drains: %q, %v", i, got, err)
		}
	}
	unblock()
	if err := <-hold; err != nil {
		t.Fatalf("held call: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	// B is gone: connections to it are refused, and A serves everything.
	for i := range 20 {
		got, err := callEcho(context.Background(), ref, "y")
		if err != nil || got != "a:y" {
			t.Fatalf("call %d after B closed: %q, %v", i, got, err)
		}
	}
}

// Graceful shutdown of one of three providers under concurrent load: no
// call fails.
func TestGracefulShutdownUnderLoadLosesNoCall(t *testing.T) {
	reg := newRegistry(t)
	var srvs []*storks.Server
	for _, n := range []string{"a", "b", "c"} {
		s, _ := startProvider(t, reg, &echoImpl{name: n}, []storks.ServerOption{storks.WithShutdownWait(100 * time.Millisecond)})
		srvs = append(srvs, s)
	}
	_, ref := refer(t, reg, nil)
	waitFor(t, func() bool { return len(ref.Providers()) == 3 })
	load := loadtest.Start(16, 5*time.Second, 0, func(ctx context.Context) error {
		_, err := callEcho(ctx, ref, "x")
		return err
	})
	time.Sleep(100 * time.Millisecond)
	if err := srvs[1].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	res := load.Stop()
	if res.Failed > 0 {
		t.Fatalf("%d of %d calls failed during a graceful shutdown; first: %v", res.Failed, res.Calls, res.FirstErr)
	}
	if len(ref.Providers()) != 2 {
		t.Fatalf("consumer still lists %d providers", len(ref.Providers()))
	}
	t.Logf("%d calls, 0 failed, across a graceful shutdown of 1 of 3 providers", res.Calls)
}
