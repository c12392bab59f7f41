package runtime

import (
	"context"
	"maps"
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
// server interceptor. The map must not be modified.
func FromIncomingContext(ctx context.Context) Metadata {
	md, _ := ctx.Value(incomingKey{}).(Metadata)
	return md
}

func newIncomingContext(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, incomingKey{}, md)
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
