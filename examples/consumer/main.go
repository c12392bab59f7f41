// Command consumer refers the example Greeter service through a registry and
// calls it, printing which provider answered each call; then it opens a
// server-streaming and a bidi-streaming call of the Echo service.
//
//	consumer -registry etcd://127.0.0.1:2379/storks -calls 9 -selector roundrobin
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

func run() error {
	regURL := flag.String("registry", "", "registry URL (etcd://, consul://, zookeeper://, static://, direct://)")
	calls := flag.Int("calls", 9, "number of calls to make")
	interval := flag.Duration("interval", 0, "pause between calls")
	selector := flag.String("selector", "roundrobin", "balancer: roundrobin, random, leastloaded, weighted or weightedrandom")
	name := flag.String("name", "storks", "name to greet")
	providers := flag.Int("wait-providers", 1, "wait until this many providers are known before calling")
	waitFor := flag.Duration("wait", 30*time.Second, "how long to wait for the providers")
	timeout := flag.Duration("timeout", 2*time.Second, "deadline of each call")
	version := flag.String("version", "", "service version")
	group := flag.String("group", "", "service group")
	streams := flag.Bool("streams", true, "after the calls, stream from the Echo service (Count and Chat)")
	tag := flag.String("tag", "", "routing tag of the calls: they go to providers with this tag (see storks provider tag)")
	app := flag.String("app", "consumer", "application name in the consumer record (storks registry ls)")
	flag.Parse()
	if *regURL == "" {
		return errors.New("-registry is required")
	}
	var sel storks.BalancerFactory
	switch *selector {
	case "roundrobin":
		sel = storks.RoundRobin()
	case "random":
		sel = storks.Random()
	case "leastloaded":
		sel = storks.LeastLoaded()
	case "weighted":
		sel = storks.WeightedRoundRobin()
	case "weightedrandom":
		sel = storks.WeightedRandom()
	default:
		return fmt.Errorf("-selector %q: want roundrobin, random, leastloaded, weighted or weightedrandom", *selector)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tag != "" {
		ctx = storks.NewTagContext(ctx, *tag)
	}

	reg, err := registry.Open(ctx, *regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	cli, err := storks.NewClient(storks.WithRegistry(reg), storks.WithApplication(*app))
	if err != nil {
		return err
	}
	defer cli.Close()
	ref, err := cli.Refer(ctx, greeterv1.Greeter_ServiceName,
		storks.WithVersion(*version), storks.WithGroup(*group), storks.WithBalancer(sel))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(*waitFor)
	for len(ref.Providers()) < *providers {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d providers of %s appeared within %v", len(ref.Providers()), *providers, ref.Key(), *waitFor)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	fmt.Printf("consumer: %d providers of %s\n", len(ref.Providers()), ref.Key())
	greeter := greeterv1.NewGreeterClient(ref)
	failed := 0
	for i := 1; i <= *calls; i++ {
		cctx, cancel := context.WithTimeout(ctx, *timeout)
		start := time.Now()
		reply, err := greeter.SayHello(cctx, &greeterv1.HelloRequest{Name: *name})
		cancel()
		if err != nil {
			failed++
			fmt.Printf("call %d: error: %v\n", i, err)
		} else {
			fmt.Printf("call %d: %q from %s in %v\n", i, reply.GetMessage(), reply.GetProvider(), time.Since(start).Round(time.Microsecond))
		}
		if *interval > 0 && i < *calls {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(*interval):
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed", failed, *calls)
	}
	if *streams {
		eref, err := cli.Refer(ctx, echov1.Echo_ServiceName,
			storks.WithVersion(*version), storks.WithGroup(*group), storks.WithBalancer(sel), storks.WithWaitForProvider())
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, 5**timeout)
		defer cancel()
		if err := stream(sctx, echov1.NewEchoClient(eref), *name); err != nil {
			return fmt.Errorf("streams: %w", err)
		}
	}
	return nil
}

// stream makes one server-streaming call (Count) and one bidi-streaming
// call (Chat), printing every message as it arrives.
func stream(ctx context.Context, echo echov1.EchoClient, name string) error {
	count, err := echo.Count(ctx, &echov1.CountRequest{Text: name, Times: 3})
	if err != nil {
		return err
	}
	for {
		t, err := count.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		fmt.Printf("stream Count: %q\n", t.GetBody())
	}
	chat, err := echo.Chat(ctx)
	if err != nil {
		return err
	}
	for _, line := range []string{"ping", "pong", "bye"} {
		if err := chat.Send(&commonv1.Text{Body: line}); err != nil {
			return err
		}
		t, err := chat.Recv()
		if err != nil {
			return err
		}
		fmt.Printf("stream Chat: sent %q, got %q\n", line, t.GetBody())
	}
	if err := chat.CloseSend(); err != nil {
		return err
	}
	if _, err := chat.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("chat did not end cleanly: %v", err)
	}
	return nil
}
