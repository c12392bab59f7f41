// Command demo runs the Storks demo: three provider processes and one
// consumer process on 127.0.0.1 that find each other through a real
// registry. The consumer calls round-robin and prints which provider
// answered each call; a grpc-go client then calls the first provider on the
// same port (every Storks provider also serves gRPC) and checks its
// grpc.health.v1 status; then a governance rule disables provider-2 (what
// `storks provider disable` writes), a second consumer run calls only the
// two others, and the rule is removed; then the providers are stopped
// gracefully (SIGTERM: deregister, wait, drain).
//
//	demo -bin bin [-registry URL]
//
// Without -registry (or $REGISTRY) the demo starts an embedded etcd on a free
// loopback port, the same server `storks dev` runs, so nothing needs to be
// installed. Any other registry URL works too: consul://127.0.0.1:8500,
// zookeeper://127.0.0.1:2181/storks, etcd://127.0.0.1:2379/storks.
//
// A provider that exits before the demo stops it (a malformed or
// unreachable registry, say) fails the demo at once: the error names the
// provider, its exit status and the last lines of its stderr.
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/internal/devetcd"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	"github.com/storks-rpc/storks/registry/rule"
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
		fmt.Println("demo: to watch the demo in the web console, run `make console` in another terminal, open http://127.0.0.1:8080/ and run `make demo REGISTRY=etcd://127.0.0.1:2379/storks`")
	} else {
		fmt.Printf("demo: registry %s\n", registry.RedactURL(*regURL))
		fmt.Println("demo: to watch it in the web console, run `make console REGISTRY=<this registry's URL>` in another terminal and open http://127.0.0.1:8080/")
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
	// A provider that exits before the demo stops it fails the demo at
	// once (a bad registry URL, say), instead of after the readiness
	// timeout.
	exited := make(chan *proc, len(providers))
	for _, p := range providers {
		go func() { <-p.done; exited <- p }()
	}
	addrs := map[string]string{}
	notReady := map[string]bool{}
	for _, p := range providers {
		notReady[p.name] = true
	}
	timeout := time.After(readyTimeout)
	for len(notReady) > 0 {
		select {
		case line := <-ready:
			// "READY name addr"
			if f := strings.Fields(line); len(f) > 2 {
				delete(notReady, f[1])
				addrs[f[1]] = f[2]
			}
		case p := <-exited:
			stopAll(providers)
			return p.exitError("before it was ready")
		case <-timeout:
			var errs []error
			for _, p := range providers {
				if notReady[p.name] {
					errs = append(errs, p.tailError(fmt.Sprintf("did not become ready within %v", readyTimeout)))
				}
			}
			stopAll(providers)
			return errors.Join(errs...)
		}
	}

	consumer, err := start("consumer", &out, nil, filepath.Join(*bin, "consumer"), "-registry", *regURL,
		"-calls", fmt.Sprint(*calls), "-wait-providers", fmt.Sprint(*n), "-selector", "roundrobin")
	if err != nil {
		stopAll(providers)
		return err
	}
	select {
	case <-consumer.done:
	case p := <-exited:
		stopAll([]*proc{consumer})
		stopAll(providers)
		return p.exitError("while the consumer ran")
	}

	if consumer.err == nil {
		if err := grpcHello(providers[0].name, addrs[providers[0].name]); err != nil {
			stopAll(providers)
			return err
		}
		if len(providers) > 1 {
			if err := governed(*regURL, *bin, &out, providers[1].name, addrs[providers[1].name], *n-1); err != nil {
				stopAll(providers)
				return err
			}
		}
	}

	fmt.Println("demo: stopping the providers gracefully (SIGTERM)")
	stopErr := stopAll(providers)
	if consumer.err != nil {
		return errors.Join(consumer.exitError(""), stopErr)
	}
	if stopErr != nil {
		return stopErr
	}
	fmt.Println("demo: done")
	return nil
}

// readyTimeout bounds the wait for the providers to print READY.
const readyTimeout = 30 * time.Second

// tailLines is how many of its last stderr lines a failed process is
// reported with.
const tailLines = 5

// proc is a child process whose output is relayed with a name prefix.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is relayed
	err  error         // the exit error, valid after done

	mu   sync.Mutex
	tail []string // the last tailLines lines of its stderr
}

// exitError describes the exit of p, which has exited, with the last lines
// of its stderr; when says when it happened, if it is worth saying.
func (p *proc) exitError(when string) error {
	what := "exited (" + p.cmd.ProcessState.String() + ")"
	if when != "" {
		what += " " + when
	}
	return p.tailError(what)
}

// tailError is an error "name what", followed by the last lines of the
// stderr of p, indented.
func (p *proc) tailError(what string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	msg := p.name + " " + what
	if len(p.tail) == 0 {
		return errors.New(msg + "; it wrote nothing on stderr")
	}
	return errors.New(msg + "; the last lines of its stderr:\n    " + strings.Join(p.tail, "\n    "))
}

// start runs the program with its stdout and stderr relayed, each line
// prefixed by name. A line of stdout starting with READY is sent on ready.
func start(name string, out *sync.Mutex, ready chan<- string, path string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(path, args...), done: make(chan struct{})}
	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = stdoutW, stderrW
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	var relayed sync.WaitGroup
	relay := func(r io.Reader, onLine func(string)) {
		defer relayed.Done()
		s := bufio.NewScanner(r)
		for s.Scan() {
			line := s.Text()
			onLine(line)
			out.Lock()
			fmt.Printf("%-11s| %s\n", name, line)
			out.Unlock()
		}
		io.Copy(io.Discard, r) // a line too long for the scanner
	}
	relayed.Add(2)
	go relay(stdoutR, func(line string) {
		if ready != nil && strings.HasPrefix(line, "READY ") {
			ready <- line
		}
	})
	go relay(stderrR, func(line string) {
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > tailLines {
			p.tail = p.tail[len(p.tail)-tailLines:]
		}
		p.mu.Unlock()
	})
	go func() {
		p.err = p.cmd.Wait()
		stdoutW.Close()
		stderrW.Close()
		relayed.Wait()
		close(p.done)
	}()
	return p, nil
}

// stopAll sends SIGTERM to every process and waits for each to exit,
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

// grpcHello calls a provider with a plain grpc-go client, no Storks code:
// Greeter.SayHello and the standard health check, on the port the Storks
// consumer used.
func grpcHello(name, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("gRPC client for %s: %w", name, err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply := new(greeterv1.HelloReply)
	if err := cc.Invoke(ctx, greeterv1.Greeter_SayHello_FullMethodName, &greeterv1.HelloRequest{Name: "grpc-go"}, reply); err != nil {
		return fmt.Errorf("gRPC call to %s at %s: %w", name, addr, err)
	}
	health, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: greeterv1.Greeter_ServiceName})
	if err != nil {
		return fmt.Errorf("gRPC health check of %s at %s: %w", name, addr, err)
	}
	fmt.Printf("demo: a grpc-go client on %s's port %s: %q from %s; health %v\n", name, addr, reply.GetMessage(), reply.GetProvider(), health.GetStatus())
	return nil
}

// governed disables the provider name at addr with a rule, as `storks
// provider disable --registry URL ADDR` does, runs the consumer again
// (which sees the others only), and removes the rule. A registry that
// keeps no rules (direct://, static://) skips the step.
func governed(regURL, bin string, out *sync.Mutex, name, addr string, others int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := registry.Open(ctx, regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	store, err := rule.Store(reg)
	if err != nil {
		fmt.Printf("demo: skipping the governance step: %v\n", err)
		return nil
	}
	key := registry.ServiceKey{Service: greeterv1.Greeter_ServiceName}
	edit := func(f func(*rule.Set, rule.Match)) error {
		_, err := rule.Update(ctx, store, key, func(s *rule.Set) error { f(s, rule.Match{Addr: addr}); return nil })
		return err
	}
	fmt.Printf("demo: disabling %s with a rule, as `storks provider disable --registry %s %s` does\n", name, registry.RedactURL(regURL), addr)
	if err := edit((*rule.Set).Disable); err != nil {
		return fmt.Errorf("writing the rule: %w", err)
	}
	c, err := start("governed", out, nil, filepath.Join(bin, "consumer"), "-registry", regURL,
		"-calls", "6", "-wait-providers", fmt.Sprint(others), "-selector", "roundrobin", "-streams=false", "-app", "demo-governed")
	if err != nil {
		return err
	}
	<-c.done
	if c.err != nil {
		return c.exitError("")
	}
	if err := edit((*rule.Set).Enable); err != nil {
		return fmt.Errorf("removing the rule: %w", err)
	}
	if _, err := store.GetRule(ctx, key); !errors.Is(err, registry.ErrNoRule) {
		return fmt.Errorf("the rule document is still there after enabling %s: %v", name, err)
	}
	fmt.Printf("demo: %s enabled again; no rule is left\n", name)
	return nil
}
