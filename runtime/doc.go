// Package runtime is what generated Storks code calls into: the wire framing,
// the server that exports service implementations, and the client whose
// references discover providers in a registry and pick one per call.
//
// The package lives in the runtime/ directory, so its declared name is
// runtime, but programs import it as storks, to avoid a clash with Go's own
// runtime package; generated code and every example do so:
//
//	import storks "github.com/storks-rpc/storks/runtime"
//
// A provider exports and serves:
//
//	srv := storks.NewServer(storks.WithRegistry(reg))
//	if _, err := greeterv1.RegisterGreeterServer(srv, &greeter{}); err != nil { ... }
//	lis, _ := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(lis)
//	defer srv.Shutdown(ctx)
//
// A consumer refers and calls:
//
//	cli, err := storks.NewClient(storks.WithRegistry(reg))
//	if err != nil { ... }
//	ref, _ := cli.Refer(ctx, greeterv1.Greeter_ServiceName)
//	greeter := greeterv1.NewGreeterClient(ref)
//	reply, err := greeter.SayHello(ctx, &greeterv1.HelloRequest{Name: "storks"})
//
// Neither side needs the registry to start. Serve registers every export,
// and a registration that fails is logged and retried in the background,
// with backoff, while the server takes calls; Exporter.State says where an
// export stands, and WithRegistrationRequired makes Serve fail instead. A
// consumer that refers WithWaitForProvider gets its reference at once, and
// its calls wait, within their deadline, for a provider to appear instead
// of failing at once with ErrNoProvider:
//
//	ref, _ := cli.Refer(ctx, greeterv1.Greeter_ServiceName, runtime.WithWaitForProvider())
//
// A call that finds no provider says which versions and groups of the
// service the registry does have, if any.
//
// Many concurrent calls share one TCP connection per provider and are matched
// by request ID; the format is described in docs/protocol.md.
//
// # Balancing
//
// A reference picks the provider of each call with a Balancer (WithBalancer;
// RoundRobin by default; Random, WeightedRoundRobin, WeightedRandom,
// LeastLoaded, ConsistentHash built in, with WithWarmUp for the weighted
// ones). Build makes a Picker once per change of the live provider list;
// Pick chooses per attempt and may return a Done that learns how the
// attempt ended. Endpoints carry the registry entry (weight, metadata,
// RegisteredAt, PublishedLoad) and the runtime's lock-free counters per
// address (InFlight, Latency, ErrorRate). A provider publishes its load in
// its registry entries with WithLoadReport. balancer.go describes the seam.
//
// # Governance
//
// Every reference registers a consumer record under its service's consumer
// key (registry.ConsumerKey; WithoutConsumerRecord turns it off,
// WithApplication names it) and, when its registry stores rules
// (registry.RuleStore: etcd, Consul, ZooKeeper, inproc), follows the
// service's rule document (package registry/rule, written with `storks
// rule` or `storks provider disable`). Overrides rebuild the provider list
// the balancer sees, exactly as a registry change does: disabled providers
// are left out, weights and routing tags replaced; a call in flight keeps
// the list it started with. The rules' timeout and fail mode replace the
// code's defaults (WithDefaultTimeout, the reference's FailMode) per method,
// while options given to a call still win. Calls carrying a tag
// (NewTagContext) go to providers with that tag (their metadata "tag" or a
// rule's); untagged calls stay off tagged providers unless the rule allows
// it. A malformed document is logged and ignored, keeping the last good
// rules; a deleted one reverts everything; WithoutRules ignores them all.
//
// # In-process calls
//
// A reference calls an export of its service key in the same process
// directly, without the network, unless the reference was made WithRemote
// (this is Dubbo's injvm). The server's interceptors still run; the handler
// gets a copy of the request (the caller's own object if the reference was
// made WithLocalZeroCopy) and the caller's reply is filled with a copy of
// the response, so caller and handler share no message. Refer logs, at
// Info, when a new reference's calls will go in-process, and
// Reference.InProcess reports it. The comment at the top of local.go
// describes the shortcut in full.
//
// # gRPC clients
//
// A Server answers gRPC clients (grpc-go, grpcurl, Java, Python, Node,
// Kubernetes gRPC probes) on the same port as Storks clients, unless it is
// made WithoutGRPC. A connection that starts with the HTTP/2 preface
// (after the TLS handshake, if the server has WithTLSConfig; the server
// then offers ALPN "h2") is handed to an embedded google.golang.org/grpc
// server; Storks clients keep the Storks protocol. The same handlers serve
// both: a gRPC call runs through the server's interceptors, with the
// caller's metadata (FromIncomingContext; transport headers left out),
// deadline and limits, and its error goes back with the same code (the
// codes are numbered as gRPC's) and message. A gRPC call is routed to the
// export of its service with the version and group named by the request
// metadata MetadataVersion ("storks-version") and MetadataGroup
// ("storks-group"); without them, to the export with neither, else it
// fails with Unimplemented naming the versions and groups there are.
//
// The gRPC side also serves grpc-go's standard grpc.health.v1.Health, per
// proto service name and "" for the server: SERVING while an export of the
// service takes calls and is registered (or the server has no registry),
// NOT_SERVING from the start of Shutdown; and server reflection, v1 and
// v1alpha, listing the exported services, so grpcurl and `storks describe`
// need no .proto files. Shutdown drains gRPC connections with grpc-go's
// GracefulStop within its own drain. Every export's registry entry has
// MetadataProtocols ("protocols"): "storks,grpc", or "storks".
//
// # Observability
//
// WithStatsHandler gives a Server or a Client a StatsHandler that sees every
// call and stream from begin to end, the requests a server refuses before
// any interceptor and every attempt of a client call with its provider
// (stats.go); the packages under observability/ build OpenTelemetry traces
// and metrics, Prometheus and readiness probes on it. Server.Registrations,
// Client.ProviderState and the registry checks (state.go) say whether each
// export is registered and what each reference knows of its providers.
//
// Concurrency: Server, Client and Reference are safe for concurrent use.
// Close stops every goroutine they started.
package runtime
