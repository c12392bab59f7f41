package runtime

import (
	"context"
	"slices"
)

// UnaryHandler runs a decoded request against the implementation.
type UnaryHandler func(ctx context.Context, req any) (any, error)

// UnaryServerInfo describes the call a server interceptor sees.
type UnaryServerInfo struct {
	// Server is the exported implementation.
	Server any
	// FullMethod is "/package.Service/Method".
	FullMethod string
	// Key is the service key the call was addressed to.
	Key ServiceKey
}

// UnaryServerInterceptor wraps the handling of every call on a server,
// remote or local. It must call handler to run the method, or return an error
// instead.
type UnaryServerInterceptor func(ctx context.Context, req any, info *UnaryServerInfo, handler UnaryHandler) (any, error)

// UnaryInvoker performs the call, remote or local, and fills reply with the
// response.
type UnaryInvoker func(ctx context.Context, method string, req, reply any) error

// UnaryClientInterceptor wraps every call made through a Client's references.
// It must call invoker to make the call, or return an error instead. The
// reply it passes to invoker is the one filled: the caller sees its own
// reply, so an interceptor that calls invoker with another value must copy
// what it wants the caller to see into reply.
type UnaryClientInterceptor func(ctx context.Context, method string, req, reply any, invoker UnaryInvoker) error

func chainServer(in []UnaryServerInterceptor) UnaryServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, req any, info *UnaryServerInfo, handler UnaryHandler) (any, error) {
		return in[0](ctx, req, info, serverNext(in, 1, info, handler))
	}
}

func serverNext(in []UnaryServerInterceptor, i int, info *UnaryServerInfo, final UnaryHandler) UnaryHandler {
	if i == len(in) {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return in[i](ctx, req, info, serverNext(in, i+1, info, final))
	}
}

func chainClient(in []UnaryClientInterceptor) UnaryClientInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, method string, req, reply any, invoker UnaryInvoker) error {
		return in[0](ctx, method, req, reply, clientNext(in, 1, invoker))
	}
}

func clientNext(in []UnaryClientInterceptor, i int, final UnaryInvoker) UnaryInvoker {
	if i == len(in) {
		return final
	}
	return func(ctx context.Context, method string, req, reply any) error {
		return in[i](ctx, method, req, reply, clientNext(in, i+1, final))
	}
}

// WithServerInterceptor appends unary server interceptors. The first one is
// the outermost. A nil interceptor is an error naming its index among in,
// from 0.
func WithServerInterceptor(in ...UnaryServerInterceptor) ServerOption {
	for i, f := range in {
		if f == nil {
			return reject("WithServerInterceptor", "interceptor %d is nil", i)
		}
	}
	in = slices.Clone(in)
	return serverFunc(func(c *serverConfig) { c.interceptors = append(c.interceptors, in...) })
}

// WithClientInterceptor appends unary client interceptors. The first one is
// the outermost. A nil interceptor is an error naming its index among in,
// from 0.
func WithClientInterceptor(in ...UnaryClientInterceptor) ClientOption {
	for i, f := range in {
		if f == nil {
			return reject("WithClientInterceptor", "interceptor %d is nil", i)
		}
	}
	in = slices.Clone(in)
	return clientFunc(func(c *clientConfig) { c.interceptors = append(c.interceptors, in...) })
}

// WithStreamServerInterceptor appends stream server interceptors, which
// wrap every stream a server handles, remote or local. The first one is the
// outermost. A nil interceptor is an error naming its index among in, from
// 0.
func WithStreamServerInterceptor(in ...StreamServerInterceptor) ServerOption {
	for i, f := range in {
		if f == nil {
			return reject("WithStreamServerInterceptor", "interceptor %d is nil", i)
		}
	}
	in = slices.Clone(in)
	return serverFunc(func(c *serverConfig) { c.streamServerInterceptors = append(c.streamServerInterceptors, in...) })
}

// WithStreamClientInterceptor appends stream client interceptors, which
// wrap the opening of every stream made through a Client's references. The
// first one is the outermost. A nil interceptor is an error naming its
// index among in, from 0.
func WithStreamClientInterceptor(in ...StreamClientInterceptor) ClientOption {
	for i, f := range in {
		if f == nil {
			return reject("WithStreamClientInterceptor", "interceptor %d is nil", i)
		}
	}
	in = slices.Clone(in)
	return clientFunc(func(c *clientConfig) { c.streamClientInterceptors = append(c.streamClientInterceptors, in...) })
}

func chainStreamServer(in []StreamServerInterceptor) StreamServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(srv any, ss ServerStream, info *StreamServerInfo, handler StreamHandler) error {
		return in[0](srv, ss, info, streamServerNext(in, 1, info, handler))
	}
}

func streamServerNext(in []StreamServerInterceptor, i int, info *StreamServerInfo, final StreamHandler) StreamHandler {
	if i == len(in) {
		return final
	}
	return func(srv any, ss ServerStream) error {
		return in[i](srv, ss, info, streamServerNext(in, i+1, info, final))
	}
}

func chainStreamClient(in []StreamClientInterceptor) StreamClientInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, desc *StreamDesc, method string, streamer Streamer) (ClientStream, error) {
		return in[0](ctx, desc, method, streamClientNext(in, 1, streamer))
	}
}

func streamClientNext(in []StreamClientInterceptor, i int, final Streamer) Streamer {
	if i == len(in) {
		return final
	}
	return func(ctx context.Context, desc *StreamDesc, method string) (ClientStream, error) {
		return in[i](ctx, desc, method, streamClientNext(in, i+1, final))
	}
}
