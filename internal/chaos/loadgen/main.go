// Command loadgen is the consumer process of the fault tests: concurrent
// callers of Greeter.SayHello through a registry, until SIGTERM or SIGINT.
// It prints "READY" once it lists the providers it was told to wait for,
// and at the end one line "RESULT {json}" with the number of calls, the
// failed ones, the first errors and the fewest providers it listed while
// it ran.
//
//	loadgen -registry zookeeper://127.0.0.1:2181/storks -callers 50 -providers 3
//
// It is a process of its own, built without the race detector, so that a
// fault test can restart a registry under a consumer whose registry client
// (and its third-party library) is not part of the race-instrumented test
// binary.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

// Result is what loadgen prints at the end, after "RESULT ".
type Result struct {
	Calls       int64    `json:"calls"`
	Failed      int64    `json:"failed"`
	Errors      []string `json:"errors,omitempty"` // the first few
	MinListed   int      `json:"min_listed"`       // fewest providers listed while calling
	FinalListed int      `json:"final_listed"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	regURL := flag.String("registry", "", "registry URL")
	callers := flag.Int("callers", 50, "concurrent callers")
	pause := flag.Duration("pause", 5*time.Millisecond, "pause of each caller between calls")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	providers := flag.Int("providers", 1, "wait until this many providers are listed before calling")
	flag.Parse()
	if *regURL == "" {
		return errors.New("-registry is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg, err := registry.Open(octx, *regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		return err
	}
	defer cli.Close()
	ref, err := cli.Refer(octx, greeterv1.Greeter_ServiceName)
	if err != nil {
		return err
	}
	for len(ref.Providers()) < *providers {
		select {
		case <-octx.Done():
			return fmt.Errorf("%d of %d providers listed: %w", len(ref.Providers()), *providers, octx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	fmt.Println("READY")
	g := greeterv1.NewGreeterClient(ref)

	var res Result
	var calls, failed atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range *callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				cctx, cancel := context.WithTimeout(context.Background(), *timeout)
				_, err := g.SayHello(cctx, &greeterv1.HelloRequest{Name: fmt.Sprintf("w%d-%d", w, seq)})
				cancel()
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(res.Errors) < 5 {
						res.Errors = append(res.Errors, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					mu.Unlock()
				}
				time.Sleep(*pause)
			}
		}()
	}
	res.MinListed = len(ref.Providers())
	tick := time.NewTicker(10 * time.Millisecond)
	for ctx.Err() == nil {
		select {
		case <-tick.C:
			res.MinListed = min(res.MinListed, len(ref.Providers()))
		case <-ctx.Done():
		}
	}
	tick.Stop()
	wg.Wait()
	res.Calls, res.Failed = calls.Load(), failed.Load()
	res.FinalListed = len(ref.Providers())
	b, err := json.Marshal(&res)
	if err != nil {
		return err
	}
	fmt.Printf("RESULT %s\n", b)
	return nil
}
