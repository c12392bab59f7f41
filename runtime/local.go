package runtime

import (
	"context"
	"sync"
	"sync/atomic"
)

// In-process calls: calls to a service exported in the same process. This
// comment is the one place that describes them (the package doc's
// "In-process calls" points here). The shortcut is Dubbo's injvm, the
// "local export" of Storks' design, and is on by default.
//
// Every active export of every Server in the process is also entered in a
// process-wide table, keyed by its canonical service key (addLocal, from
// Server.activate; removeLocal, from Unexport, Shutdown and Close). A call
// through a Reference not made WithRemote looks its key up there first,
// while there is any entry at all (localCount), and when the key is
// exported here (the first export entered, if several servers export it)
// runs the handler directly through the exporting server's interceptors:
// no connection, no encoding, no balancer, no fail mode, no TLS, and the
// provider list from the registry is not consulted. Client interceptors and
// the default deadline still apply: they run before Reference.call. The
// call's outgoing metadata is the handler's incoming metadata.
//
// Caller and handler share no message, as if the call had crossed the
// network. The handler gets a copy of the request: a new request from the
// method's MethodDesc.NewRequest, into which a protobuf request is merged
// (proto.Merge, so a deep copy, as proto.Clone makes) and any other request
// is copied by a round trip through the client's codec. The handler's
// response is copied into the caller's reply the same way (copyMessage:
// proto.Reset and proto.Merge, or the codec). So a handler may modify its
// request, or return a message it keeps (a cache entry) and modify it
// later, without the caller ever seeing it.
//
// A reference made WithLocalZeroCopy skips the request's copy: the handler
// gets the caller's request object itself, and must neither modify nor
// retain it (nor may the caller modify it until the call returns). The
// reply is copied all the same, since Invoke fills the caller's reply.
//
// The shortcut shows itself: Refer logs, at Info, that the new reference's
// calls go to an export in this process; a reference whose calls start
// going to one later (the export was made after Refer) logs it once, at
// Debug; and Reference.InProcess reports whether calls made now would.

// localCount is the number of in-process exports; while it is zero a call
// skips the local lookup entirely.
var localCount atomic.Int32

// The in-process export table, for local calls.
var local struct {
	mu sync.RWMutex
	m  map[string][]*export
}

func addLocal(e *export) {
	local.mu.Lock()
	defer local.mu.Unlock()
	if local.m == nil {
		local.m = make(map[string][]*export)
	}
	local.m[e.keyStr] = append(local.m[e.keyStr], e)
	localCount.Add(1)
}

func removeLocal(e *export) {
	local.mu.Lock()
	defer local.mu.Unlock()
	list := local.m[e.keyStr]
	for i, x := range list {
		if x == e {
			list = append(list[:i:i], list[i+1:]...)
			localCount.Add(-1)
			break
		}
	}
	if len(list) == 0 {
		delete(local.m, e.keyStr)
	} else {
		local.m[e.keyStr] = list
	}
}

func lookupLocal(key string) *export {
	local.mu.RLock()
	defer local.mu.RUnlock()
	if list := local.m[key]; len(list) > 0 {
		return list[0]
	}
	return nil
}

// invokeLocal runs a call of r against an export in this process: no
// network, and no encoding unless a message is not a protobuf message. The
// server's interceptors run as for a remote call. The handler gets a copy of
// req unless r was made WithLocalZeroCopy, and the response is copied into
// reply; see the comment at the top of this file.
func (e *export) invokeLocal(ctx context.Context, r *Reference, method, short string, req, reply any) error {
	m := e.methods[short]
	if m == nil {
		return Errorf(CodeUnimplemented, "unknown method %s for service %s", short, e.keyStr)
	}
	if ctx.Err() != nil {
		return ctxError(ctx, "call "+method)
	}
	codec := r.cl.cfg.codec
	in := req
	if !r.zeroCopy {
		in = m.desc.NewRequest()
		if err := copyMessage(codec, in, req); err != nil {
			return Errorf(CodeInternal, "call %s: copy the request for the handler: %v", method, err)
		}
	}
	s := e.server
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	s.noteServed()
	hctx := ctx
	if md := OutgoingMetadata(ctx); md != nil {
		hctx = newIncomingContext(ctx, md)
	}
	resp, err := s.call(hctx, m, in)
	if err != nil {
		return toError(err)
	}
	if ctx.Err() != nil {
		return ctxError(ctx, "call "+method)
	}
	if err := copyMessage(codec, reply, resp); err != nil {
		return Errorf(CodeInternal, "call %s: copy the response into the reply: %v", method, err)
	}
	return nil
}

// WithRemote makes a reference always go over the network, even when the same
// process exports the service key (see the package doc, In-process calls).
func WithRemote() ReferOption {
	return referFunc(func(c *referConfig) { c.remote = true })
}

// WithLocalZeroCopy makes a reference's in-process calls (see the package
// doc, In-process calls) pass the caller's request object itself to the
// handler, instead of a copy: the handler must then neither modify nor
// retain its request, and the caller must not modify it until the call
// returns. The response is still copied into the caller's reply. It saves a
// copy of every request for services whose handlers are known to treat
// requests as read-only; calls that go over the network are unaffected.
func WithLocalZeroCopy() ReferOption {
	return referFunc(func(c *referConfig) { c.localZeroCopy = true })
}

// InProcess reports whether a call made through the reference now would go
// to an export of its service key in this process rather than over the
// network (see the package doc, In-process calls). It is false for a
// reference made WithRemote.
func (r *Reference) InProcess() bool {
	return !r.remote && localCount.Load() > 0 && lookupLocal(r.keyStr) != nil
}

// noteLocal logs, once per reference, that its calls go to an in-process
// export: at Info when Refer finds one (atRefer), at Debug when a call
// finds one later.
func (r *Reference) noteLocal(atRefer bool) {
	if r.localNoted.Swap(true) {
		return
	}
	msg := "storks: calls to " + r.keyStr + " go to the export in this process, not the network; WithRemote() sends them over the network"
	if atRefer {
		r.cl.cfg.logger.Info(msg, "service", r.keyStr)
	} else {
		r.cl.cfg.logger.Debug(msg, "service", r.keyStr)
	}
}
