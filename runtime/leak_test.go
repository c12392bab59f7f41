package runtime_test

import (
	"context"
	goruntime "runtime"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
)

func pause() { time.Sleep(time.Millisecond) }

// Close on the client and the server stops every goroutine they started:
// connection readers, registry watchers, delayed exports.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	reg := newRegistry(t)
	before := goruntime.NumGoroutine()
	srv := storks.NewServer(storks.WithRegistry(reg))
	if _, err := srv.Export(&echoDesc, &echoImpl{name: "p"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Export(&bytesDesc, bytesImpl{}, storks.WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	lis := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := cli.Refer(context.Background(), echoService, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(ref.Providers()) == 1 })
	for range 10 {
		if _, err := callEcho(context.Background(), ref, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := goruntime.NumGoroutine(); n <= before {
		t.Fatalf("no goroutines started? before %d, now %d", before, n)
	}
	cli.Close()
	srv.Close()
	<-served
	deadline := time.Now().Add(5 * time.Second)
	for goruntime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := goruntime.Stack(buf, true)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, goruntime.NumGoroutine(), buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
