package runtime

import (
	"context"
	"maps"
)

// BindService returns the Invoker a generated client makes its calls
// through: inv, bound to desc, the ServiceDesc of the client's service.
// Every generated New<Svc>Client calls it, so users rarely need to; a
// hand-written client of a hand-written ServiceDesc may call it likewise.
//
// For a *Reference (or an Invoker BindService returned for one) it returns
// an Invoker whose calls know which methods of desc are idempotent
// (MethodDesc.Idempotent, which generated code sets from the proto's
// idempotency_level), so that the reference's fail mode may retry them
// after they may have run (see FailMode). Nothing else learns it: calls
// made through the reference itself, or through another binding, do not.
// WithIdempotentMethods on the reference and WithIdempotent on a call still
// apply, as overrides. The binding costs nothing per call. If desc's
// service is not the reference's, every call through the returned Invoker
// fails with a CodeInvalidArgument *Error naming both.
//
// Any other Invoker (a fake in a test, say) is returned unchanged, as is
// inv when desc is nil.
func BindService(inv Invoker, desc *ServiceDesc) Invoker {
	if desc == nil {
		return inv
	}
	switch v := inv.(type) {
	case *Reference:
		if v != nil {
			return v.bind(desc)
		}
	case *boundReference:
		return v.r.bind(desc)
	}
	return inv
}

// boundReference is a Reference bound to the ServiceDesc of its service
// (BindService).
type boundReference struct {
	r *Reference
	// idempotent is the reference's idempotentMethods with the full names
	// of desc's idempotent methods added: what idempotent consults for
	// calls through the binding.
	idempotent map[string]bool
	// invoker is the reference's call with this binding, the UnaryInvoker
	// client interceptors are given.
	invoker UnaryInvoker
}

// bind returns r bound to desc.
func (r *Reference) bind(desc *ServiceDesc) Invoker {
	if desc.ServiceName != r.key.Service {
		return mismatchedService{client: desc.ServiceName, ref: r.key.Service}
	}
	var idem map[string]bool
	for _, md := range desc.Methods {
		if !md.Idempotent {
			continue
		}
		if idem == nil {
			idem = make(map[string]bool, len(r.idempotentMethods)+len(desc.Methods))
			maps.Copy(idem, r.idempotentMethods)
		}
		idem[r.prefix+md.Name] = true
	}
	if idem == nil {
		idem = r.idempotentMethods
	}
	b := &boundReference{r: r, idempotent: idem}
	b.invoker = func(ctx context.Context, method string, req, reply any) error {
		return r.call(ctx, method, req, reply, nil, b)
	}
	return b
}

// Invoke is Reference.Invoke, with the idempotent methods of the bound
// service.
func (b *boundReference) Invoke(ctx context.Context, method string, req, reply any, opts ...CallOption) error {
	return b.r.invokeWith(ctx, method, req, reply, opts, b)
}

// mismatchedService is what BindService returns for a reference to another
// service than the descriptor's: every call fails.
type mismatchedService struct{ client, ref string }

func (m mismatchedService) Invoke(_ context.Context, method string, _, _ any, _ ...CallOption) error {
	return Errorf(CodeInvalidArgument, "call %s: the client is for service %s, but its Invoker is a reference to service %s", method, m.client, m.ref)
}

// NewStream is Reference.NewStream.
func (b *boundReference) NewStream(ctx context.Context, desc *StreamDesc, method string, opts ...CallOption) (ClientStream, error) {
	return b.r.NewStream(ctx, desc, method, opts...)
}

func (m mismatchedService) NewStream(_ context.Context, _ *StreamDesc, method string, _ ...CallOption) (ClientStream, error) {
	return nil, Errorf(CodeInvalidArgument, "open stream %s: the client is for service %s, but its Invoker is a reference to service %s", method, m.client, m.ref)
}
