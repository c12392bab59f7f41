package runtime

import (
	"context"

	"github.com/storks-rpc/storks/registry"
)

// SupportPackageIsVersion1 is referenced by generated code to make sure it is
// compiled against a runtime that supports it. Generated code that needs a
// newer runtime references a newer constant and so fails to compile against
// this one, instead of failing at run time.
const SupportPackageIsVersion1 = true

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
	// Idempotent marks methods that may safely be retried.
	Idempotent bool
}

// Invoker is the client side every generated client calls into. A
// *Reference is an Invoker bound to one service key.
//
// Invoke calls method, the full method name "/package.Service/Method", with
// req. For a remote call the response is decoded into reply, which is then
// returned; a local (in-process) call may return a different value of the
// same type. Invoke is safe for concurrent use.
type Invoker interface {
	Invoke(ctx context.Context, method string, req, reply any, opts ...CallOption) (any, error)
}

// ServiceRegistrar exports services. A *Server is a ServiceRegistrar.
type ServiceRegistrar interface {
	Export(desc *ServiceDesc, impl any, opts ...ExportOption) (*Exporter, error)
}

// ServiceKey is registry.ServiceKey, repeated here for convenience.
type ServiceKey = registry.ServiceKey

// SupportPackageIsVersion2 is referenced by generated code that calls
// RegisterMethods. Code generated for version 1 still compiles; its
// services' idempotent methods are simply not known to clients unless
// WithIdempotentMethods names them.
const SupportPackageIsVersion2 = true
