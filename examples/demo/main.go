// Command demo runs the Storks demo: three provider processes and one
// consumer process on 127.0.0.1 that find each other through a registry. The
// consumer calls round-robin and prints which provider answered each call;
// then the providers are stopped gracefully.
//
//	demo -bin bin [-registry URL]
//
// Without -registry the demo gives the providers fixed free ports and the
// consumer a static:// list of them.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding the provider and consumer binaries")
	regURL := flag.String("registry", os.Getenv("REGISTRY"), "registry URL (default: a static list of the providers)")
	n := flag.Int("providers", 3, "number of provider processes")
	calls := flag.Int("calls", 9, "number of calls the consumer makes")
	flag.Parse()

	listens := make([]string, *n)
	for i := range listens {
		listens[i] = "127.0.0.1:0"
	}
	if *regURL == "" {
		addrs, err := freeAddrs(*n)
		if err != nil {
			return err
		}
		copy(listens, addrs)
		*regURL = "static://" + strings.Join(addrs, ",")
	}
	fmt.Printf("demo: registry %s\n", *regURL)

	var out sync.Mutex
	providers := make([]*exec.Cmd, *n)
	ready := make(chan string, *n)
	for i := range providers {
		name := fmt.Sprintf("provider-%d", i+1)
		cmd := exec.Command(filepath.Join(*bin, "provider"), "-registry", *regURL, "-listen", listens[i], "-name", name, "-shutdown-wait", "300ms")
		if err := start(cmd, name, &out, ready); err != nil {
			stopAll(providers)
			return err
		}
		providers[i] = cmd
	}
	defer stopAll(providers)
	timeout := time.After(30 * time.Second)
	for range *n {
		select {
		case <-ready:
		case <-timeout:
			return errors.New("providers did not become ready within 30s")
		}
	}

	consumer := exec.Command(filepath.Join(*bin, "consumer"), "-registry", *regURL, "-calls", fmt.Sprint(*calls),
		"-wait-providers", fmt.Sprint(*n), "-selector", "roundrobin")
	if err := start(consumer, "consumer", &out, nil); err != nil {
		return err
	}
	cerr := consumer.Wait()

	fmt.Println("demo: stopping providers gracefully (SIGTERM)")
	if err := stopAll(providers); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("consumer: %w", cerr)
	}
	fmt.Println("demo: done")
	return nil
}

// start runs cmd with its output prefixed by name. A line starting with
// READY is sent on ready.
func start(cmd *exec.Cmd, name string, out *sync.Mutex, ready chan<- string) error {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
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
		cmd.Wait()
		pw.Close()
	}()
	return nil
}

// stopAll sends SIGTERM to every running provider and waits for each to exit.
func stopAll(cmds []*exec.Cmd) error {
	var errs []error
	for _, c := range cmds {
		if c != nil && c.Process != nil && c.ProcessState == nil {
			c.Process.Signal(syscall.SIGTERM)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range cmds {
		if c == nil || c.Process == nil {
			continue
		}
		for c.ProcessState == nil {
			if ctx.Err() != nil {
				c.Process.Kill()
				errs = append(errs, fmt.Errorf("%s did not stop in time", c.Path))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if c.ProcessState != nil && !c.ProcessState.Success() {
			errs = append(errs, fmt.Errorf("%s exited with %v", c.Args[len(c.Args)-5], c.ProcessState))
		}
	}
	return errors.Join(errs...)
}

func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = l.Addr().String()
		defer l.Close()
	}
	return addrs, nil
}
