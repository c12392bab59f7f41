package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/storks-rpc/storks/internal/gen"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// defaultCallTimeout is the default --timeout. Streams have no deadline
// unless --timeout is given, but finding their provider and opening them
// are bounded by this.
const defaultCallTimeout = 10 * time.Second

type callFlags struct {
	registry     string
	addr         string
	importPaths  []string
	protos       []string
	timeout      time.Duration
	headers      []string
	version      string
	group        string
	selector     string
	emitDefaults bool
	verbose      bool
}

func newCallCmd() *cobra.Command {
	var f callFlags
	cmd := &cobra.Command{
		Use:   "call (--registry URL | --addr HOST:PORT) [--proto FILE.proto] [flags] package.Service/Method [JSON]",
		Short: "Call a method of a running service, with JSON in and out",
		Long: `call builds the request message from JSON, calls the method through the
Storks runtime and prints the reply as JSON. No generated code is needed, nor
any file: call learns the method and its messages from the gRPC server
reflection of the provider (every Storks provider serves it on its port; with
a registry, it is read from the first provider listed for the service key).
With --proto, call compiles the .proto file that declares the service instead,
and asks the provider nothing but the call: for a server without reflection,
or to call with the messages of your own files.

The providers come from a registry (--registry URL, or $STORKS_REGISTRY), with
the service key's --version and --group, and --selector picks one per call; or
--addr HOST:PORT calls one provider directly (it is short for
--registry direct://HOST:PORT).

The method is package.Service/Method or /package.Service/Method. JSON is the
request in protobuf's JSON mapping: '{}' when left out, "-" to read it from
standard input, "@FILE" to read it from a file. -H key=value sends call
metadata. A failed call prints the Storks error code and message:

  storks: call failed: NotFound: no user "bob"

Streaming methods print every response as one line of compact JSON, as soon
as it arrives, then exit 0 if the stream ended with status OK, or print the
status as above and exit 1. A server-streaming method takes its one request
as a unary one does. A client- or bidi-streaming method takes one request per
line, sent as soon as the line is read: from standard input when JSON is left
out or is "-", from the file of "@FILE", or from the lines of JSON itself.
Blank lines are skipped; at the end of the input the stream is half-closed
and the responses still coming are printed. A line that is not a request in
JSON cancels the stream and fails the call with its line number:

  storks: line 3 of standard input: not a pkg.Item in JSON: ...

Responses are printed while requests are still read, so a bidi call is
interactive: type a line, see the replies, type the next (Ctrl-D ends).
-v prints the metadata of the stream's header and trailer on standard error,
as "header KEY: VALUE" and "trailer KEY: VALUE" lines (unary calls have
none). --timeout bounds the whole stream; without it, a stream has no
deadline (it may last as long as its input or its server), but finding the
provider and opening the stream still give up after the default 10s.`,
		Example: `  # One provider, by address; its messages from its gRPC reflection:
  storks call --addr 127.0.0.1:8972 storks.examples.greeter.v1.Greeter/SayHello '{"name": "storks"}'

  # The same, with the messages of the .proto file:
  storks call --addr 127.0.0.1:8972 -I examples/proto --proto greeter/v1/greeter.proto \
      storks.examples.greeter.v1.Greeter/SayHello '{"name": "storks"}'

  # Whatever provider the registry has for version v1, with metadata and a deadline:
  storks call --registry etcd://127.0.0.1:2379/storks --version v1 \
      -I examples/proto --proto greeter/v1/greeter.proto \
      -H trace=abc --timeout 2s \
      /storks.examples.greeter.v1.Greeter/SayHello '{"name": "storks"}'

  # The request from a file:
  storks call --addr 127.0.0.1:8972 -I proto --proto hello/v1/hello.proto \
      hello.v1.Greeter/SayHello @request.json

  # A server-streaming method: one response per line, for at most a minute:
  storks call --addr 127.0.0.1:8972 -I proto --proto feed/v1/feed.proto --timeout 1m \
      feed.v1.Feed/Watch '{"topic": "news"}'

  # A client-streaming method, one request per line of a file:
  storks call --addr 127.0.0.1:8972 -I proto --proto feed/v1/feed.proto \
      feed.v1.Feed/Upload @items.jsonl

  # A client-streaming method, the requests from a pipe:
  printf '{"n": 1}\n{"n": 2}\n' | storks call --addr 127.0.0.1:8972 -I proto \
      --proto feed/v1/feed.proto feed.v1.Feed/Upload

  # A bidi-streaming method, interactive (one request per line, Ctrl-D ends),
  # with the stream's header and trailer metadata on standard error:
  storks call -v --addr 127.0.0.1:8972 -I proto --proto chat/v1/chat.proto chat.v1.Chat/Talk`,
		Args: rangeArgs(1, 2, "the method (package.Service/Method) and optionally the request JSON"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCall(cmd, f, args)
		},
	}
	fl := cmd.Flags()
	registryFlag(cmd, &f.registry)
	fl.StringVar(&f.addr, "addr", "", "call the provider at `HOST:PORT` directly (short for --registry direct://HOST:PORT)")
	fl.StringArrayVarP(&f.importPaths, "proto_path", "I", nil, "`directory` to resolve imports in (repeatable; default: the current directory)")
	fl.StringArrayVar(&f.protos, "proto", nil, "`FILE.proto` that declares the service (repeatable; default: ask the provider's gRPC reflection)")
	fl.DurationVar(&f.timeout, "timeout", defaultCallTimeout, "deadline of the whole call or stream, registry lookup included (0: none; streams: none unless given)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "call metadata `key=value` (repeatable)")
	fl.StringVar(&f.version, "version", "", "version of the service key")
	fl.StringVar(&f.group, "group", "", "group of the service key")
	fl.StringVar(&f.selector, "selector", "round-robin", "how to pick a provider: "+balancerNames)
	fl.BoolVar(&f.emitDefaults, "emit-defaults", false, "print fields of the reply that have their default value too")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the header and trailer metadata of a stream on standard error")
	return cmd
}

func runCall(cmd *cobra.Command, f callFlags, args []string) error {
	// Everything that can be checked without the network is checked
	// first.
	regURL, err := callRegistryURL(cmd, f)
	if err != nil {
		return err
	}
	md, err := parseHeaders(f.headers)
	if err != nil {
		return usagef("%v%s", err, helpHint(cmd))
	}
	sel, err := parseSelector(f.selector)
	if err != nil {
		return usagef("%v%s", err, helpHint(cmd))
	}
	if f.timeout < 0 {
		return usagef("--timeout must not be negative%s", helpHint(cmd))
	}
	serviceName, methodName, err := parseMethod(args[0])
	if err != nil {
		return usagef("%v", err)
	}
	key := registry.ServiceKey{Service: serviceName, Version: f.version, Group: f.group}
	if err := key.Validate(); err != nil {
		return usagef("%v", err)
	}

	ctx := cmd.Context()

	// The descriptors come from the files of --proto, compiled before
	// anything touches the network, or else from the gRPC reflection of
	// the provider, once the registry has named it.
	var (
		method   protoreflect.MethodDescriptor
		resolver messageResolver
		req      *dynamicpb.Message // of a unary or server-streaming call
		lines    *lineSource        // of a client- or bidi-streaming call
	)
	// prepare finds the method in the descriptors and reads its requests.
	prepare := func(src descSource, types messageResolver) (err error) {
		if method, err = findMethod(src, serviceName, methodName); err != nil {
			return err
		}
		resolver = types
		req, lines, err = readRequests(cmd, args[1:], method, resolver)
		return err
	}
	defer func() {
		if lines != nil && lines.closer != nil {
			lines.closer.Close()
		}
	}()
	if len(f.protos) > 0 {
		res, err := gen.Compile(ctx, gen.Config{
			ImportPaths: splitImportPaths(f.importPaths),
			Warn:        func(string) {}, // unused imports are not the caller's business
		}, f.protos)
		if err != nil {
			return err
		}
		if err := prepare(compiledSource(res), res.Linked.AsResolver()); err != nil {
			return err
		}
	}

	// A stream has no deadline unless --timeout is given; finding its
	// provider (and reading its descriptors) still has one: setupCtx.
	setupCtx := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		setupCtx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	reg, err := openRegistry(setupCtx, regURL, f.timeout)
	if err != nil {
		return err
	}
	defer reg.Close()
	cli, err := storks.NewClient(
		storks.WithRegistry(reg),
		storks.WithLogger(slog.New(slog.DiscardHandler)),
		// A one-shot call is not a consumer an operator wants listed;
		// the rules still apply to it.
		storks.WithoutConsumerRecord(),
	)
	if err != nil {
		return err
	}
	defer cli.Close()
	ref, err := cli.Refer(setupCtx, serviceName,
		storks.WithVersion(f.version), storks.WithGroup(f.group),
		storks.WithBalancer(sel), storks.WithRemote())
	if err != nil {
		return callError(err, key, f)
	}
	if method == nil {
		src, files, err := reflectService(setupCtx, ref, reg, key, f)
		if err != nil {
			return err
		}
		if err := prepare(src, dynamicpb.NewTypes(files)); err != nil {
			return err
		}
	}
	streaming := method.IsStreamingClient() || method.IsStreamingServer()
	if f.timeout > 0 && (!streaming || cmd.Flags().Changed("timeout")) {
		ctx = setupCtx
	}
	full := "/" + serviceName + "/" + methodName
	var opts []storks.CallOption
	if len(md) > 0 {
		opts = append(opts, storks.WithCallMetadata(md))
	}
	if streaming {
		sc := &streamCall{
			method: method,
			full:   full,
			out:    cmd.OutOrStdout(),
			errOut: cmd.ErrOrStderr(),
			marshal: protojson.MarshalOptions{
				EmitUnpopulated: f.emitDefaults,
				Resolver:        resolver,
			},
			verbose: f.verbose,
		}
		var src requestSource = &oneRequest{m: req}
		if lines != nil {
			src = lines
		}
		if err := sc.run(ctx, setupCtx, ref, src, opts); err != nil {
			var re *storks.Error
			if errors.As(err, &re) {
				return callError(err, key, f)
			}
			return err
		}
		return nil
	}
	reply := dynamicpb.NewMessage(method.Output())
	if err := ref.Invoke(ctx, full, req, reply, opts...); err != nil {
		return callError(err, key, f)
	}
	b, err := protojson.MarshalOptions{
		EmitUnpopulated: f.emitDefaults,
		Resolver:        resolver,
	}.Marshal(reply)
	if err != nil {
		return fmt.Errorf("printing the reply as JSON: %s", trimProto(err))
	}
	// protojson varies its whitespace on purpose; indent it ourselves, so
	// that the output is stable.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("printing the reply as JSON: %w", err)
	}
	b = out.Bytes()
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
	return err
}

// trimProto returns the message of a protobuf error without its "proto:"
// prefix (which protojson writes with a varying space).
func trimProto(err error) string {
	return strings.TrimSpace(strings.TrimPrefix(err.Error(), "proto:"))
}

// callRegistryURL returns the registry URL of --registry or --addr.
func callRegistryURL(cmd *cobra.Command, f callFlags) (string, error) {
	regSet := cmd.Flags().Changed("registry")
	switch {
	case f.addr != "" && regSet:
		return "", usagef("give either --registry or --addr, not both%s", helpHint(cmd))
	case f.addr != "":
		// --addr wins over $STORKS_REGISTRY.
		if err := registry.ValidateAddr(f.addr); err != nil {
			return "", usagef("--addr: %s", strings.TrimPrefix(err.Error(), "registry: "))
		}
		return "direct://" + f.addr, nil
	case f.registry != "":
		return f.registry, nil
	}
	return "", usagef("no provider to call: give --registry URL (or set $STORKS_REGISTRY) or --addr HOST:PORT%s", helpHint(cmd))
}

// callError renders a failed call as "call failed: Code: message".
func callError(err error, key registry.ServiceKey, f callFlags) error {
	var re *storks.Error
	if !errors.As(err, &re) {
		return fmt.Errorf("call failed: %s: %v", storks.CodeOf(err), err)
	}
	text, others := otherKeys(re.Message, key)
	msg := fmt.Sprintf("call failed: %s: %s", re.Code, text)
	switch {
	case len(others) > 0:
		msg += "; pass " + keyFlags(key, others)
	case errors.Is(err, storks.ErrNoProvider) && f.addr == "":
		msg += fmt.Sprintf(" (is a provider of %s running? see storks registry ls %s)", key, key.Service)
	}
	return errors.New(msg)
}

// otherKeys returns the keys of key's service other than key that the
// message of a failed call names: those a provider exports (its "is not
// exported" error ends with "; it exports KEY, ...") or those the registry
// has (a "no provider" error says "; the registry has KEY with N
// providers, ...; refer with OPTIONS"). It also returns the message without
// the runtime's advice to programs (the options to refer with), for which
// keyFlags gives the flags.
func otherKeys(msg string, key registry.ServiceKey) (string, []registry.ServiceKey) {
	var list string
	if _, after, ok := strings.Cut(msg, "; it exports "); ok {
		list = after
	} else if _, after, ok := strings.Cut(msg, "; the registry has "); ok {
		list, _, _ = strings.Cut(after, "; refer with ")
	}
	var keys []registry.ServiceKey
	for _, part := range strings.Split(list, ", ") {
		s, _, _ := strings.Cut(part, " ") // "KEY with N providers"
		var k registry.ServiceKey
		if g, rest, ok := strings.Cut(s, "/"); ok {
			k.Group, s = g, rest
		}
		k.Service, k.Version, _ = strings.Cut(s, ":")
		if k.Service == key.Service && k != key {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		msg, _, _ = strings.Cut(msg, "; refer with ")
	}
	return msg, keys
}

// keyFlags returns the --version and --group flags that name the keys
// instead of want: "--version v1", or "--version v1, or --version v2
// --group blue".
func keyFlags(want registry.ServiceKey, keys []registry.ServiceKey) string {
	var alts []string
	for _, k := range keys {
		var flags []string
		if k.Version != want.Version {
			flags = append(flags, "--version "+shellWord(k.Version))
		}
		if k.Group != want.Group {
			flags = append(flags, "--group "+shellWord(k.Group))
		}
		alts = append(alts, strings.Join(flags, " "))
	}
	return strings.Join(alts, ", or ")
}

// shellWord quotes s for a POSIX shell if it is empty or holds a character
// the shell would interpret (a version or group holds no whitespace).
func shellWord(s string) string {
	if s == "" || strings.ContainsAny(s, "'\"$`\\!*?[]{}()<>|&;~#") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// parseMethod splits "package.Service/Method" or "/package.Service/Method".
func parseMethod(s string) (service, method string, err error) {
	t := strings.TrimPrefix(s, "/")
	i := strings.LastIndexByte(t, '/')
	if i <= 0 || i == len(t)-1 || strings.Count(t, "/") != 1 {
		return "", "", fmt.Errorf("method %q is not package.Service/Method (or /package.Service/Method)", s)
	}
	return t[:i], t[i+1:], nil
}

// parseHeaders turns -H key=value flags into call metadata.
func parseHeaders(hs []string) (storks.Metadata, error) {
	md := make(storks.Metadata, len(hs))
	for _, h := range hs {
		k, v, ok := strings.Cut(h, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("-H %q is not key=value", h)
		}
		md[strings.TrimSpace(k)] = v
	}
	return md, nil
}

// parseSelector returns the balancer named by --selector.
func parseSelector(s string) (storks.BalancerFactory, error) {
	switch strings.ToLower(s) {
	case "round-robin", "roundrobin", "rr":
		return storks.RoundRobin(), nil
	case "random":
		return storks.Random(), nil
	case "least-loaded", "leastloaded", "p2c":
		return storks.LeastLoaded(), nil
	case "weighted-round-robin", "weightedroundrobin", "wrr":
		return storks.WeightedRoundRobin(), nil
	case "weighted-random", "weightedrandom":
		return storks.WeightedRandom(), nil
	}
	return nil, fmt.Errorf("--selector %q is not one of %s", s, balancerNames)
}

// balancerNames lists the balancers --selector names.
const balancerNames = "round-robin, random, least-loaded, weighted-round-robin or weighted-random"

// readRequest returns the request JSON of the argument: the JSON itself,
// "-" for standard input or "@FILE".
func readRequest(cmd *cobra.Command, arg string) ([]byte, error) {
	switch {
	case arg == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("reading the request from standard input: %w", err)
		}
		return b, nil
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("reading the request from %s: %w", arg[1:], err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

// openLines returns the source of the requests of a client- or
// bidi-streaming call: standard input when arg is left out or is "-", the
// file of "@FILE", or else the lines of arg itself.
func openLines(cmd *cobra.Command, arg []string, desc protoreflect.MessageDescriptor, unmarshal protojson.UnmarshalOptions) (*lineSource, error) {
	s := &lineSource{desc: desc, unmarshal: unmarshal}
	switch {
	case len(arg) == 0 || arg[0] == "-":
		s.r, s.name = bufio.NewReader(cmd.InOrStdin()), "standard input"
	case strings.HasPrefix(arg[0], "@"):
		name := arg[0][1:]
		fh, err := os.Open(name)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("reading the requests from %s: %w", name, err)
		}
		s.r, s.closer, s.name = bufio.NewReader(fh), fh, name
	default:
		s.r, s.name = bufio.NewReader(strings.NewReader(arg[0])), "the JSON argument"
	}
	return s, nil
}

// readRequests reads the request of a unary or server-streaming method
// from its argument (arg: none or one), or opens the source of the
// requests of a client- or bidi-streaming one.
func readRequests(cmd *cobra.Command, arg []string, method protoreflect.MethodDescriptor, resolver messageResolver) (*dynamicpb.Message, *lineSource, error) {
	unmarshal := protojson.UnmarshalOptions{Resolver: resolver}
	if method.IsStreamingClient() {
		lines, err := openLines(cmd, arg, method.Input(), unmarshal)
		return nil, lines, err
	}
	data := []byte("{}")
	if len(arg) == 1 {
		var err error
		if data, err = readRequest(cmd, arg[0]); err != nil {
			return nil, nil, err
		}
	}
	req := dynamicpb.NewMessage(method.Input())
	if err := unmarshal.Unmarshal(data, req); err != nil {
		return nil, nil, fmt.Errorf("request JSON for %s: %s", method.Input().FullName(), trimProto(err))
	}
	return req, nil, nil
}

// messageResolver finds the types of Any fields and extensions, for
// protojson.
type messageResolver interface {
	protoregistry.MessageTypeResolver
	protoregistry.ExtensionTypeResolver
}

// descSource is where the descriptors of a call or a description come
// from: the files of --proto, or the reflection of a server.
type descSource struct {
	resolver interface {
		FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
	}
	services []string // those it declares or serves, sorted
	where    string   // the files, or the server's address
	verb     string   // what where does with services: "declare" or "serve"
}

// compiledSource is the source of the files compiled from --proto: what
// they declare and import.
func compiledSource(res *gen.Result) descSource {
	var services []string
	for _, fd := range res.Linked {
		for i := 0; i < fd.Services().Len(); i++ {
			services = append(services, string(fd.Services().Get(i).FullName()))
		}
	}
	slices.Sort(services)
	return descSource{
		resolver: res.Linked.AsResolver(),
		services: services,
		where:    strings.Join(res.Files, ", "),
		verb:     "declare",
	}
}

// findMethod looks the method up in the descriptors of src.
func findMethod(src descSource, serviceName, methodName string) (protoreflect.MethodDescriptor, error) {
	d, err := src.resolver.FindDescriptorByName(protoreflect.FullName(serviceName))
	if err != nil {
		return nil, unknownService(serviceName, src)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service%s", serviceName, serviceHint(src))
	}
	md := sd.Methods().ByName(protoreflect.Name(methodName))
	if md == nil {
		var names []string
		for i := 0; i < sd.Methods().Len(); i++ {
			names = append(names, string(sd.Methods().Get(i).Name()))
		}
		return nil, fmt.Errorf("service %s has no method %q (it has %s)", serviceName, methodName, strings.Join(names, ", "))
	}
	return md, nil
}

func unknownService(name string, src descSource) error { return unknownName("service", name, src) }

// unknownName is the error for a service or symbol (kind) that src does
// not have: for a name without its package, it says which ones were meant.
func unknownName(kind, name string, src descSource) error {
	var matches []string
	for _, s := range src.services {
		if strings.HasSuffix(s, "."+name) {
			matches = append(matches, s)
		}
	}
	if len(matches) > 0 {
		return fmt.Errorf("unknown %s %q (did you mean %s?)", kind, name, strings.Join(matches, " or "))
	}
	return fmt.Errorf("unknown %s %q: %s does not %s it%s", kind, name, src.where, src.verb, serviceHint(src))
}

func serviceHint(src descSource) string {
	if len(src.services) == 0 {
		return " (and " + src.verb + "s no service)"
	}
	return " (services: " + strings.Join(src.services, ", ") + ")"
}

// reflectService reads the descriptors of the service of key, and of
// everything it uses, from the gRPC reflection of the provider the
// registry lists first for it.
func reflectService(ctx context.Context, ref *storks.Reference, reg registry.Registry, key registry.ServiceKey, f callFlags) (descSource, *protoregistry.Files, error) {
	providers := ref.Providers()
	if len(providers) == 0 {
		return descSource{}, nil, noProviderToReflect(ctx, reg, key, f)
	}
	addr := providers[0].Addr
	rf, err := openReflection(ctx, addr, f.timeout)
	if err != nil {
		return descSource{}, nil, err
	}
	defer rf.Close()
	src := descSource{services: rf.services, where: addr, verb: "serve"}
	if !slices.Contains(rf.services, key.Service) {
		return descSource{}, nil, unknownService(key.Service, src)
	}
	if err := rf.fileOf(key.Service); err != nil {
		if errors.Is(err, errSymbolNotFound) {
			err = fmt.Errorf("%s serves %s, but its reflection has no descriptor of it; give --proto FILE.proto", addr, key.Service)
		}
		return descSource{}, nil, err
	}
	files, err := rf.registry()
	if err != nil {
		return descSource{}, nil, err
	}
	src.resolver = files
	return src, files, nil
}

// noProviderToReflect is the error of a call without --proto that finds no
// provider to read the reflection of. Like a failed call's, it names the
// other versions and groups of the service that a registry that lists them
// has.
func noProviderToReflect(ctx context.Context, reg registry.Registry, key registry.ServiceKey, f callFlags) error {
	msg := fmt.Sprintf("call failed: Unavailable: no provider for %s to read its gRPC reflection from", key)
	var others []registry.ServiceKey
	if l, ok := reg.(registry.Lister); ok {
		if keys, err := l.Services(ctx); err == nil {
			for _, k := range keys {
				if k.Service == key.Service && k != key {
					others = append(others, k)
				}
			}
		}
	}
	switch {
	case len(others) > 0:
		msg += "; pass " + keyFlags(key, others)
	case f.addr == "":
		msg += fmt.Sprintf(" (is a provider of %s running? see storks registry ls %s)", key, key.Service)
	}
	return errors.New(msg)
}

// openRegistry opens the registry of rawURL, bounded by ctx, whose deadline
// comes from a --timeout of timeout.
func openRegistry(ctx context.Context, rawURL string, timeout time.Duration) (registry.Registry, error) {
	reg, err := registry.Open(ctx, rawURL)
	if err != nil {
		var ie *registry.InputError
		if errors.As(err, &ie) && ie.Field == "URL scheme" && strings.Contains(ie.Reason, "not registered") {
			// The adapter's hint (an import to add) is for programs, not
			// for users of this one.
			return nil, fmt.Errorf("registry: URL scheme %q is not supported by this storks binary (supported: %s)",
				ie.Value, strings.Join(registry.Schemes(), ", "))
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "registry") {
			msg = "registry: " + msg
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			msg += fmt.Sprintf(" (no answer within --timeout %v)", timeout)
		}
		return nil, errors.New(msg)
	}
	return reg, nil
}
