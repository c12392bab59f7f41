package runtime

import "context"

// NewStream opens a stream for method (see Invoker).
func (r *Reference) NewStream(ctx context.Context, desc *StreamDesc, method string, opts ...CallOption) (ClientStream, error) {
	return nil, Errorf(CodeUnimplemented, "open stream %s: streams are not implemented yet", method)
}
