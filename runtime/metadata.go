package runtime

import (
	"context"
	"maps"

	"google.golang.org/grpc/metadata"
)

// Metadata is string key/value data sent with a call and readable by the
// handler, like HTTP headers. Keys are case-sensitive.
type Metadata map[string]string

type outgoingKey struct{}

type incomingKey struct{}

// NewOutgoingContext returns a context whose calls send md. Metadata already
// attached is kept; keys in md win.
func NewOutgoingContext(ctx context.Context, md Metadata) context.Context {
	if old, ok := ctx.Value(outgoingKey{}).(Metadata); ok && len(old) > 0 {
		merged := maps.Clone(old)
		maps.Copy(merged, md)
		md = merged
	}
	return context.WithValue(ctx, outgoingKey{}, md)
}

// OutgoingMetadata returns the metadata attached with NewOutgoingContext. The
// map must not be modified.
func OutgoingMetadata(ctx context.Context) Metadata {
	md, _ := ctx.Value(outgoingKey{}).(Metadata)
	return md
}

// FromIncomingContext returns the metadata the caller sent, in a handler or
// server interceptor. The map must not be modified. For a gRPC call it is
// the request's metadata, the last value of each key (gRPC keys are
// lowercase), without the transport's headers; it is converted on each call of FromIncomingContext,
// so that calls whose handlers never ask pay nothing for it.
func FromIncomingContext(ctx context.Context) Metadata {
	if md, ok := ctx.Value(incomingKey{}).(Metadata); ok {
		return md
	}
	if in, ok := metadata.FromIncomingContext(ctx); ok {
		return fromGRPCMetadata(in)
	}
	return nil
}

// newIncomingContext returns ctx with the metadata md a call arrived with,
// and the routing tag it carries (MetadataTag), if any.
func newIncomingContext(ctx context.Context, md Metadata) context.Context {
	return incomingTag(context.WithValue(ctx, incomingKey{}, md), md)
}

// WithCallMetadata adds metadata to one call, merged over metadata attached to
// the context with NewOutgoingContext. An empty key, or more pairs than a
// request may carry (1024), fails the call with an error naming
// WithCallMetadata.
func WithCallMetadata(md Metadata) CallOption {
	return callFunc(func(c *callConfig) {
		if _, ok := md[""]; ok {
			c.invalid("WithCallMetadata", "a key is empty")
			return
		}
		if len(md) > maxMetadataPairs {
			c.invalid("WithCallMetadata", "%d pairs are more than a request may carry (%d)", len(md), maxMetadataPairs)
			return
		}
		if c.metadata == nil {
			c.metadata = make(Metadata, len(md))
		}
		maps.Copy(c.metadata, md)
	})
}
