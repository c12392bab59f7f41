package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/storks-rpc/storks/internal/devetcd"
)

type devFlags struct {
	dataDir  string
	listen   string
	basePath string
}

func newDevCmd() *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev [--listen HOST:PORT] [--data-dir DIR]",
		Short: "Run an embedded etcd registry for local development",
		Long: `dev runs a single-member etcd server inside this process, for providers and
consumers on this machine to find each other through. The first line it prints on
standard output is the registry URL to give them; it then runs until interrupted
(Ctrl-C or SIGTERM), stops etcd and exits with status 0.

Without --data-dir the data lives in a temporary directory that is removed on
exit; with it, the data is kept there and found again by the next run. etcd's own
logging is discarded. It is not a production etcd: one member, no TLS, no
authentication.`,
		Example: `  storks dev
  # etcd://127.0.0.1:2379/storks

  # A free port and a data directory that survives restarts:
  storks dev --listen 127.0.0.1:0 --data-dir .storks-etcd

  # In another terminal:
  storks registry ls --registry etcd://127.0.0.1:2379/storks`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", "", "keep etcd's data in `DIR` (default: a temporary directory removed on exit)")
	fl.StringVar(&f.listen, "listen", devetcd.DefaultListen, "client address `HOST:PORT` (port 0: a free port)")
	fl.StringVar(&f.basePath, "base-path", devetcd.DefaultBasePath, "base `path` of the registry URL printed")
	return cmd
}

func runDev(cmd *cobra.Command, f devFlags) error {
	ctx := cmd.Context()
	srv, err := devetcd.Start(ctx, devetcd.Config{Listen: f.listen, DataDir: f.dataDir, BasePath: f.basePath})
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		msg := err.Error()
		if strings.Contains(msg, "address already in use") {
			msg += " (is another etcd running? --listen 127.0.0.1:0 picks a free port)"
		}
		return errors.New(msg)
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	fmt.Fprintln(stdout, srv.URL())
	where := "in " + srv.DataDir()
	if srv.TempDataDir() {
		where = "in the temporary directory " + srv.DataDir() + ", removed on exit"
	}
	fmt.Fprintf(stderr, "storks dev: etcd serving on %s, data %s; press Ctrl-C to stop\n", srv.Endpoint(), where)
	fmt.Fprintf(stderr, "storks dev: export STORKS_REGISTRY=%s to make it the default --registry of storks call and storks registry\n", srv.URL())

	var runErr error
	select {
	case <-ctx.Done():
	case err, ok := <-srv.Err():
		if ok && err != nil {
			runErr = fmt.Errorf("etcd failed: %w", err)
		} else {
			runErr = errors.New("etcd stopped unexpectedly")
		}
	}
	if err := srv.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		fmt.Fprintln(stderr, "storks dev: stopped")
	}
	return runErr
}
