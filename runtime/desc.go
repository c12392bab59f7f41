package runtime

import (
	"context"

	"github.com/storks-rpc/storks/registry"
)

// SupportPackageIsVersion3 is referenced by generated code to make sure it is
// compiled against a runtime that supports it. Generated code that needs a
// newer runtime references a newer constant and so fails to compile against
// this one, instead of failing at run time; code generated for an older
// runtime references a constant this one no longer declares, and fails
// likewise. Version 3 is the Invoke that fills the caller's reply.
const SupportPackageIsVersion3 = true

// SupportPackageIsVersion4 is referenced by code generated for streaming
// methods: ServiceDesc.Streams, Invoker.NewStream and the generic stream
// types. Code that references version 3 compiles and works unchanged.
const SupportPackageIsVersion4 = true

// ServiceDesc describes a service for export. Generated code builds one per
// proto service; hand-written services can build their own.
type ServiceDesc struct {
	// ServiceName is the fully qualified proto service name, for example
	// "helloworld.Greeter". It is the Service of the registry key.
	ServiceName string
	// HandlerType is a pointer to the server interface; Export checks that
	// the implementation satisfies it.
	HandlerType any
	// Methods are the unary methods of the service.
	Methods []MethodDesc
	// Streams are the streaming methods of the service.
	Streams []StreamDesc
	// Metadata is the proto file the service was generated from.
	Metadata string
}

// MethodDesc describes one unary method.
type MethodDesc struct {
	// Name is the method's proto name, without the service ("SayHello").
	Name string
	// NewRequest returns a new, empty request message to decode into.
	NewRequest func() any
	// Handler calls the method on srv with a decoded request. It does no
	// decoding and no reflection: generated handlers are a type assertion
	// and a direct method call.
	Handler func(srv any, ctx context.Context, req any) (any, error)
	// Idempotent marks methods that may safely be retried after they may
	// have run. Generated code sets it from the proto's idempotency_level;
	// clients learn it from the ServiceDesc their generated client binds
	// the reference to (BindService).
	Idempotent bool
}

// Invoker is the client side every generated client calls into. A
// *Reference is an Invoker bound to one service key.
//
// Invoke calls method, the full method name "/package.Service/Method", with
// req, and fills reply, which the caller allocates (a pointer to the
// method's response message), with the response: decoded into it for a
// remote call, copied into it for an in-process one (see In-process calls
// in the package doc). After an error, reply's contents are unspecified.
// This is grpc-go's shape: generated clients allocate the reply and return
// it, with no type assertion that a client interceptor could make fail.
// Invoke is safe for concurrent use.
//
// NewStream opens a stream for method, a streaming method described by
// desc, and returns its client side: generated clients wrap it in
// GenericClientStream. It is safe for concurrent use; see ClientStream for
// the stream's own rules.
type Invoker interface {
	Invoke(ctx context.Context, method string, req, reply any, opts ...CallOption) error
	NewStream(ctx context.Context, desc *StreamDesc, method string, opts ...CallOption) (ClientStream, error)
}

// ServiceRegistrar exports services. A *Server is a ServiceRegistrar.
type ServiceRegistrar interface {
	Export(desc *ServiceDesc, impl any, opts ...ExportOption) (*Exporter, error)
}

// ServiceKey is registry.ServiceKey, repeated here for convenience.
type ServiceKey = registry.ServiceKey
