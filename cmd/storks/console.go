package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/console"
	"github.com/storks-rpc/storks/registry"
)

// consoleTokenEnv is the environment variable of the console's write token.
const consoleTokenEnv = "STORKS_CONSOLE_TOKEN"

type consoleFlags struct {
	registry string
	listen   string
	token    string
	refresh  time.Duration
	timeout  time.Duration
}

func newConsoleCmd() *cobra.Command {
	var f consoleFlags
	cmd := &cobra.Command{
		Use:   "console --registry URL [--listen HOST:PORT] [--token TOKEN]",
		Short: "Serve a web console of the services, providers, consumers, load and rules of a registry",
		Long: `console serves a web page that shows the services of a registry, their
providers (address, weight, age, published load with a chart of the last minutes,
disabled and tagged state) and consumers, and their rules, updated live as the
registry changes.

It is read-only unless it is given a write token, with --token or, better (a
flag shows in the process list), $` + consoleTokenEnv + `. With one, a browser
that logs in with the token can disable, enable, weight and tag providers and
add, edit and delete rules; each change is written as a rule, with the same
validation as "storks rule" and "storks provider", and logged on standard error
with who, what and when. Writes are refused from other origins (CSRF).

It listens on loopback (127.0.0.1:8080) by default, reachable only from this
machine; the first line it prints on standard output is its URL. Registry
credentials are never shown.`,
		Example: `  storks console --registry etcd://127.0.0.1:2379/storks
  STORKS_CONSOLE_TOKEN=s3cret storks console --registry etcd://127.0.0.1:2379/storks --listen 127.0.0.1:0`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error { return runConsole(cmd, f) },
	}
	registryFlag(cmd, &f.registry)
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "serve on `HOST:PORT` (port 0: a free port)")
	fl.StringVar(&f.token, "token", os.Getenv(consoleTokenEnv), "write token (default $"+consoleTokenEnv+"; none: read-only)")
	fl.DurationVar(&f.refresh, "refresh", 2*time.Second, "read the list of services this often")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "give up if the registry does not answer within this time")
	return cmd
}

func runConsole(cmd *cobra.Command, f consoleFlags) error {
	if f.registry == "" {
		return usagef("--registry is required (or set $STORKS_REGISTRY)%s", helpHint(cmd))
	}
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return usagef("--listen %q is not HOST:PORT%s", f.listen, helpHint(cmd))
	}
	ctx := cmd.Context()
	octx, cancel := withTimeout(ctx, f.timeout)
	reg, err := openRegistry(octx, f.registry, f.timeout)
	cancel()
	if err != nil {
		return err
	}
	defer reg.Close()
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("console: %v", err)
	}
	stderr := cmd.ErrOrStderr()
	opts := console.Options{
		Token:       f.token,
		Logger:      slog.New(slog.NewTextHandler(stderr, nil)),
		RegistryURL: f.registry,
		Refresh:     f.refresh,
		Timeout:     f.timeout,
	}
	loopback := isLoopback(host)
	if loopback {
		opts.Hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	c, err := console.New(reg, opts)
	if err != nil {
		lis.Close()
		return err
	}
	defer c.Close()
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	url := "http://" + lis.Addr().String() + "/"
	fmt.Fprintln(cmd.OutOrStdout(), url)
	if loopback {
		fmt.Fprintf(stderr, "storks console: serving %s on loopback only (this machine); registry %s\n", url, registry.RedactURL(f.registry))
	} else {
		fmt.Fprintf(stderr, "storks console: serving %s: reachable from other machines, over plain HTTP; registry %s\n", url, registry.RedactURL(f.registry))
	}
	if f.token == "" {
		fmt.Fprintf(stderr, "storks console: read-only (no --token nor $%s)\n", consoleTokenEnv)
	} else {
		fmt.Fprintln(stderr, "storks console: writes enabled for browsers that log in with the token")
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("console: %v", err)
		}
	}
	// Live pages hold their connections open: close the console first,
	// which ends them, then the server.
	c.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	fmt.Fprintln(stderr, "storks console: stopped")
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
