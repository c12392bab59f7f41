// Command demo runs the Storks demo: three provider processes and one
// consumer process on 127.0.0.1 that find each other through a real
// registry. The consumer calls round-robin and prints which provider
// answered each call; then the providers are stopped gracefully (SIGTERM:
// deregister, wait, drain).
//
//	demo -bin bin [-registry URL]
//
// Without -registry (or $REGISTRY) the demo starts an embedded etcd on a free
// loopback port, the same server `storks dev` runs, so nothing needs to be
// installed. Any other registry URL works too: consul://127.0.0.1:8500,
// zookeeper://127.0.0.1:2181/storks, etcd://127.0.0.1:2379/storks.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/storks-rpc/storks/internal/devetcd"
	"github.com/storks-rpc/storks/registry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding the provider and consumer binaries")
	regURL := flag.String("registry", os.Getenv("REGISTRY"), "registry URL (default: an embedded etcd)")
	n := flag.Int("providers", 3, "number of provider processes")
	calls := flag.Int("calls", 9, "number of calls the consumer makes")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	if *regURL == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		etcd, err := devetcd.Start(ctx, devetcd.Config{Listen: "127.0.0.1:0", BasePath: "/storks-demo"})
		cancel()
		if err != nil {
			return fmt.Errorf("starting the embedded etcd: %w", err)
		}
		defer etcd.Close()
		*regURL = etcd.URL()
		fmt.Printf("demo: started an embedded etcd; registry %s\n", *regURL)
	} else {
		fmt.Printf("demo: registry %s\n", registry.RedactURL(*regURL))
	}

	var out sync.Mutex
	var providers []*proc
	ready := make(chan string, *n)
	for i := range *n {
		name := fmt.Sprintf("provider-%d", i+1)
		p, err := start(name, &out, ready, filepath.Join(*bin, "provider"),
			"-registry", *regURL, "-listen", "127.0.0.1:0", "-name", name, "-shutdown-wait", "500ms")
		if err != nil {
			stopAll(providers)
			return err
		}
		providers = append(providers, p)
	}
	timeout := time.After(30 * time.Second)
	for range *n {
		select {
		case <-ready:
		case <-timeout:
			stopAll(providers)
			return errors.New("providers did not become ready within 30s")
		}
	}

	consumer, err := start("consumer", &out, nil, filepath.Join(*bin, "consumer"), "-registry", *regURL,
		"-calls", fmt.Sprint(*calls), "-wait-providers", fmt.Sprint(*n), "-selector", "roundrobin")
	if err != nil {
		stopAll(providers)
		return err
	}
	<-consumer.done
	cerr := consumer.err

	fmt.Println("demo: stopping the providers gracefully (SIGTERM)")
	if err := stopAll(providers); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("consumer: %w", cerr)
	}
	fmt.Println("demo: done")
	return nil
}

// proc is a child process whose output is relayed with a name prefix.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is relayed
	err  error         // the exit error, valid after done
}

// start runs the program with its output prefixed by name. A line starting
// with READY is sent on ready.
func start(name string, out *sync.Mutex, ready chan<- string, path string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	relayed := make(chan struct{})
	go func() {
		defer close(relayed)
		s := bufio.NewScanner(pr)
		for s.Scan() {
			line := s.Text()
			if ready != nil && strings.HasPrefix(line, "READY ") {
				ready <- line
			}
			out.Lock()
			fmt.Printf("%-11s| %s\n", name, line)
			out.Unlock()
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		<-relayed
		close(p.done)
	}()
	return p, nil
}

// stopAll sends SIGTERM to every provider and waits for each to exit,
// killing those that take longer than 30s.
func stopAll(ps []*proc) error {
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var errs []error
	deadline := time.After(30 * time.Second)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			p.cmd.Process.Kill()
			<-p.done
			errs = append(errs, fmt.Errorf("%s did not stop within 30s", p.name))
			continue
		}
		if p.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, p.err))
		}
	}
	return errors.Join(errs...)
}
