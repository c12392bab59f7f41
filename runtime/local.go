package runtime

import (
	"context"
	"sync"
	"sync/atomic"
)

// Calls to a service exported in the same process.
//
// Every active export of every Server in the process is also entered in a
// process-wide table, keyed by its canonical service key (addLocal, from
// Server.activate; removeLocal, from Unexport, Shutdown and Close). A call
// through a Reference not made WithRemote looks its key up there first,
// while there is any entry at all (localCount), and when the key is
// exported here (the first export entered, if several servers export it)
// runs the handler directly through the exporting server's interceptors:
// no connection, no encoding, no selector, no fail mode, no TLS, and the
// provider list from the registry is not consulted. Client interceptors and
// the default deadline still apply: they run before Reference.call.

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

// invokeLocal runs a call against an export in this process: no network, no
// serialization. The server's interceptors run as for a remote call. The
// handler's response is copied into reply with codec (copyMessage).
func (e *export) invokeLocal(ctx context.Context, method, short string, req, reply any, codec Codec) error {
	m := e.methods[short]
	if m == nil {
		return Errorf(CodeUnimplemented, "unknown method %s for service %s", short, e.keyStr)
	}
	if ctx.Err() != nil {
		return ctxError(ctx, "call "+method)
	}
	s := e.server
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	hctx := ctx
	if md := OutgoingMetadata(ctx); md != nil {
		hctx = newIncomingContext(ctx, md)
	}
	resp, err := s.call(hctx, m, req)
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
// process exports the service key.
func WithRemote() ReferOption {
	return referFunc(func(c *referConfig) { c.remote = true })
}
