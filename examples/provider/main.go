// Command provider exports the example Greeter and Echo services on a TCP
// listener and registers them in a registry, until SIGINT or SIGTERM, when
// it shuts down gracefully (deregister, wait, drain).
//
//	provider -registry etcd://127.0.0.1:2379/storks -listen 127.0.0.1:0 -name p1
//
// With -tls-cert and -tls-key (PEM files) it accepts only TLS connections,
// from Storks and gRPC clients alike.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}
}

func run() error {
	regURL := flag.String("registry", "", "registry URL (etcd://, consul://, zookeeper://, static://, direct://)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	advertise := flag.String("advertise", "", "address to register instead of the bound one")
	name := flag.String("name", "", "provider name shown in replies (default: the bound address)")
	version := flag.String("version", "", "service version")
	group := flag.String("group", "", "service group")
	weight := flag.Int("weight", registry.DefaultWeight, "registry weight (0: no calls from weighted balancers while another provider has a weight)")
	wait := flag.Duration("shutdown-wait", time.Second, "how long to wait after deregistering before refusing calls")
	logRequests := flag.String("log-requests", "", "append \"<method> <name>\" to this file for every SayHello and Echo handler run, one write per line (for fault tests)")
	latency := flag.Duration("latency", 0, "how long every SayHello and Echo call takes (for fault tests)")
	tlsCert := flag.String("tls-cert", "", "PEM certificate chain file: serve only TLS (needs -tls-key)")
	tlsKey := flag.String("tls-key", "", "PEM private key file of -tls-cert")
	tag := flag.String("tag", "", "routing tag: calls tagged so (runtime.NewTagContext, consumer -tag) come here; untagged calls do not")
	loadReport := flag.Duration("load-report", 0, "publish the provider's recent load (calls/s, in flight, CPU) in its registry entries this often (0: never)")
	flag.Parse()
	if *regURL == "" {
		return errors.New("-registry is required")
	}
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	tlsConf, err := loadTLS(*tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg, err := registry.Open(ctx, *regURL)
	if err != nil {
		return err
	}
	defer reg.Close()
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *name == "" {
		*name = lis.Addr().String()
	}
	opts := []storks.ServerOption{storks.WithRegistry(reg), storks.WithShutdownWait(*wait)}
	if *loadReport < 0 {
		return fmt.Errorf("-load-report %v: want a duration of 0 (off) or more", *loadReport)
	}
	if *loadReport > 0 {
		opts = append(opts, storks.WithLoadReport(storks.LoadReport{Interval: *loadReport, CPU: true}))
	}
	if tlsConf != nil {
		opts = append(opts, storks.WithTLSConfig(tlsConf))
	}
	if *advertise != "" {
		opts = append(opts, storks.WithAdvertiseAddr(*advertise))
	}
	srv := storks.NewServer(opts...)
	md := map[string]string{"name": *name}
	if *tag != "" {
		md[registry.MetadataTag] = *tag
	}
	eopts := []storks.ExportOption{storks.WithVersion(*version), storks.WithGroup(*group), storks.WithWeight(*weight),
		storks.WithMetadata(md)}
	hooks := impl.Hooks{Latency: *latency}
	if *logRequests != "" {
		f, err := os.OpenFile(*logRequests, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		// Unbuffered: a provider killed with SIGKILL loses nothing it ran.
		hooks.OnCall = func(method, name string) { f.WriteString(method + " " + name + "\n") }
	}
	greeter, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: *name, Hooks: hooks}, eopts...)
	if err != nil {
		return err
	}
	echo, err := echov1.RegisterEchoServer(srv, &impl.Echo{Name: *name, Hooks: hooks}, eopts...)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	slog.Info("provider serving", "name", *name, "addr", lis.Addr().String(), "registry", registry.RedactURL(*regURL),
		"exports", exportStates(greeter, echo))
	fmt.Printf("READY %s %s\n", *name, lis.Addr())

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	slog.Info("provider shutting down", "name", *name)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-served
	slog.Info("provider stopped", "name", *name)
	return nil
}

// loadTLS returns the server TLS config of the -tls-cert and -tls-key
// files, or nil when both are empty.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "":
		return nil, errors.New("-tls-key needs -tls-cert")
	case keyFile == "":
		return nil, errors.New("-tls-cert needs -tls-key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s -tls-key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// exportStates waits (at most 2 s) for the first registration attempts
// that Serve makes, and describes the state of each export, for example
// "storks.examples.greeter.v1.Greeter: registered". An export whose
// registry is unreachable is "registering", with the error: the server
// takes calls meanwhile and registers it in the background.
func exportStates(exports ...*storks.Exporter) string {
	settled := func(ex *storks.Exporter) bool {
		st := ex.State()
		return st != storks.ExportPending && (st != storks.ExportRegistering || ex.Err() != nil)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !slices.ContainsFunc(exports, func(ex *storks.Exporter) bool { return !settled(ex) }) {
			break
		}
	}
	states := make([]string, len(exports))
	for i, ex := range exports {
		states[i] = fmt.Sprintf("%s: %s", ex.Key(), ex.State())
		if err := ex.Err(); err != nil {
			states[i] += fmt.Sprintf(" (%v)", err)
		}
	}
	return strings.Join(states, ", ")
}
