package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/storks-rpc/storks/internal/gen"
	"github.com/storks-rpc/storks/registry"
)

type describeFlags struct {
	registry    string
	addr        string
	importPaths []string
	protos      []string
	version     string
	group       string
	timeout     time.Duration
}

func newDescribeCmd() *cobra.Command {
	var f describeFlags
	cmd := &cobra.Command{
		Use:   "describe (--addr HOST:PORT | --registry URL | --proto FILE.proto) [flags] [SYMBOL]",
		Short: "List the services of a running server, or show one service or message in proto syntax",
		Long: `describe reads the gRPC server reflection of a Storks provider, or of any gRPC
server that serves reflection (grpc.reflection.v1, or v1alpha), and shows what
it serves: no .proto file is needed.

Without SYMBOL it lists the services the server serves, one per line. With the
full name of a service it prints the service in proto syntax; with a method
(package.Service/Method or package.Service.Method) it prints the method and
its request and response messages; with a message or an enum it prints that.
Comments are printed when the descriptors have them (those of Go generated
code do not). Names of the same package are printed relative to it.

The server is --addr HOST:PORT, or the first provider that the registry
(--registry URL, or $STORKS_REGISTRY) lists for the service of SYMBOL, with the
service key's --version and --group. With --proto, describe shows what the
named .proto files declare instead, with their comments, and needs no server.`,
		Example: `  # The services of a provider:
  storks describe --addr 127.0.0.1:8972

  # One service, its methods and their streams:
  storks describe --addr 127.0.0.1:8972 storks.examples.greeter.v1.Greeter

  # A method and its messages, from the provider of version v1 in a registry:
  storks describe --registry etcd://127.0.0.1:2379/storks --version v1 \
      storks.examples.greeter.v1.Greeter/SayHello

  # A message, from the .proto files rather than a server:
  storks describe -I examples/proto --proto greeter/v1/greeter.proto \
      storks.examples.greeter.v1.HelloRequest`,
		Args: rangeArgs(0, 1, "at most one SYMBOL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDescribe(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	registryFlag(cmd, &f.registry)
	fl.StringVar(&f.addr, "addr", "", "describe the server at `HOST:PORT`")
	fl.StringArrayVarP(&f.importPaths, "proto_path", "I", nil, "`directory` to resolve imports in (repeatable; default: the current directory)")
	fl.StringArrayVar(&f.protos, "proto", nil, "describe what `FILE.proto` declares instead of a server (repeatable)")
	fl.StringVar(&f.version, "version", "", "version of the service key, with --registry")
	fl.StringVar(&f.group, "group", "", "group of the service key, with --registry")
	fl.DurationVar(&f.timeout, "timeout", defaultCallTimeout, "give up if the registry or the server does not answer within this time (0: never)")
	return cmd
}

func runDescribe(cmd *cobra.Command, f describeFlags, args []string) error {
	var symbol string
	if len(args) == 1 {
		symbol = strings.TrimPrefix(strings.TrimPrefix(args[0], "/"), ".")
		if strings.Count(symbol, "/") == 1 {
			// package.Service/Method is the method package.Service.Method.
			symbol = strings.Replace(symbol, "/", ".", 1)
		}
		if !protoreflect.FullName(symbol).IsValid() {
			return usagef("%q is not the full name of a service, method, message or enum%s", args[0], helpHint(cmd))
		}
	}
	if f.timeout < 0 {
		return usagef("--timeout must not be negative%s", helpHint(cmd))
	}
	regSet := cmd.Flags().Changed("registry")
	if len(f.protos) > 0 {
		if f.addr != "" || regSet {
			return usagef("--proto describes the files, not a server: give it without --addr and --registry%s", helpHint(cmd))
		}
		res, err := gen.Compile(cmd.Context(), gen.Config{
			ImportPaths: splitImportPaths(f.importPaths),
			Warn:        func(string) {},
		}, f.protos)
		if err != nil {
			return err
		}
		// Without SYMBOL: the services of the files named, not of
		// their imports.
		return describe(cmd, compiledSource(res), symbol)
	}
	switch {
	case f.addr != "" && regSet:
		return usagef("give either --registry or --addr, not both%s", helpHint(cmd))
	case f.addr != "":
		if err := registry.ValidateAddr(f.addr); err != nil {
			return usagef("--addr: %s", strings.TrimPrefix(err.Error(), "registry: "))
		}
	case f.registry == "":
		return usagef("nothing to describe: give --addr HOST:PORT, --registry URL (or set $STORKS_REGISTRY) or --proto FILE.proto%s", helpHint(cmd))
	case symbol == "":
		return usagef("with --registry, name the SERVICE (or a method of it) to describe: the registry has no list of what one server serves; or give --addr HOST:PORT%s", helpHint(cmd))
	}

	ctx, cancel := withTimeout(cmd.Context(), f.timeout)
	defer cancel()
	addr := f.addr
	if addr == "" {
		var err error
		if addr, err = providerOf(ctx, f, symbol); err != nil {
			return err
		}
	}
	rf, err := openReflection(ctx, addr, f.timeout)
	if err != nil {
		return err
	}
	defer rf.Close()
	src := descSource{services: rf.services, where: addr, verb: "serve"}
	if symbol == "" {
		return describe(cmd, src, "")
	}
	if err := rf.fileOf(symbol); err != nil {
		if errors.Is(err, errSymbolNotFound) {
			return unknownSymbol(symbol, src)
		}
		return err
	}
	files, err := rf.registry()
	if err != nil {
		return err
	}
	src.resolver = files
	return describe(cmd, src, symbol)
}

// describe prints the services of src, or the symbol.
func describe(cmd *cobra.Command, src descSource, symbol string) error {
	var b bytes.Buffer
	if symbol == "" {
		for _, s := range src.services {
			b.WriteString(s + "\n")
		}
		_, err := cmd.OutOrStdout().Write(b.Bytes())
		return err
	}
	d, err := src.resolver.FindDescriptorByName(protoreflect.FullName(symbol))
	if err != nil {
		return unknownSymbol(symbol, src)
	}
	printDescription(&b, d)
	_, err = cmd.OutOrStdout().Write(b.Bytes())
	return err
}

// unknownSymbol is the error for a symbol that src does not have.
func unknownSymbol(symbol string, src descSource) error { return unknownName("symbol", symbol, src) }

// providerOf returns the address of the first provider that the registry
// of f lists for the service of symbol: symbol itself, or the service of
// a method.
func providerOf(ctx context.Context, f describeFlags, symbol string) (string, error) {
	reg, err := openRegistry(ctx, f.registry, f.timeout)
	if err != nil {
		return "", err
	}
	defer reg.Close()
	candidates := []string{symbol}
	if i := strings.LastIndexByte(symbol, '.'); i > 0 {
		candidates = append(candidates, symbol[:i])
	}
	var keys []string
	for _, s := range candidates {
		key := registry.ServiceKey{Service: s, Version: f.version, Group: f.group}
		if key.Validate() != nil {
			continue
		}
		list, err := reg.Discover(ctx, key)
		if err != nil {
			return "", registryError("discovering "+key.String(), ctx, f.timeout, err)
		}
		if len(list) > 0 {
			return list[0].Addr, nil
		}
		keys = append(keys, key.String())
	}
	return "", fmt.Errorf("the registry has no provider for %s to read gRPC reflection from (name a service or one of its methods; see storks registry ls)",
		strings.Join(keys, " or "))
}
