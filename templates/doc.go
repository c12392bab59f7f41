// Package templates holds the shapes of the Go code Storks generates for
// protobuf services, written as jennifer (github.com/dave/jennifer/jen)
// builders, and the one place where generated identifiers are named.
//
// The package is driven by a protogen.Plugin, so the same code serves both
// protoc-gen-storks (run by protoc) and any tool that compiles .proto files
// in-process and builds a protogen.Plugin itself: both produce byte-identical
// output for the same descriptors. [PluginOptions] and [GeneratePlugin] are
// the whole of protoc-gen-storks, for both to call.
//
// For every .proto file with at least one service, [Generate] writes
// <name>.storks.go next to protoc-gen-go's <name>.pb.go, in the same Go
// package. Per service it contains:
//
//   - <Svc>_ServiceName and <Svc>_<Method>_FullMethodName constants;
//   - the <Svc>Client interface and New<Svc>Client, which wraps a
//     storks.Invoker bound to <Svc>_ServiceDesc (storks.BindService), and
//     whose unary methods allocate their reply and have Invoke fill it;
//   - the <Svc>Server interface, Unimplemented<Svc>Server (to be embedded by
//     value), Unsafe<Svc>Server and Register<Svc>Server;
//   - <Svc>_ServiceDesc, a storks.ServiceDesc with reflection-free handlers:
//     a MethodDesc per unary method, a StreamDesc per streaming one.
//
// Streaming methods have grpc-go's shapes, with the runtime's generic
// stream types. On the client, a server-streaming method sends its request
// and returns a storks.ServerStreamingClient[Res]; client- and
// bidi-streaming methods return a storks.ClientStreamingClient[Req, Res]
// or a storks.BidiStreamingClient[Req, Res] to send on. Each opens its
// stream with Invoker.NewStream and its StreamDesc. On the server, the
// method gets the request (server-streaming only) and a
// storks.ServerStreamingServer[Res], ClientStreamingServer[Req, Res] or
// BidiStreamingServer[Req, Res]. For code written for grpc-go, the stream
// types also get protoc-gen-go-grpc's names, as type aliases:
// <Svc>_<Method>Client and <Svc>_<Method>Server.
//
// Every identifier comes from [Names], which appends "_" to any name already
// taken in the Go package (by protoc-gen-go or by an earlier Storks
// service), so the output always compiles next to the .pb.go files; a
// stream type alias whose name is taken is omitted instead, since only its
// own name makes it useful. Each rename and each omitted alias is reported
// as a [Diagnostic], which the generator returns and its callers print as
// warnings.
package templates
