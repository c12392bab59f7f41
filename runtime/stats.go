package runtime

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The stats seam: one StatsHandler per side that sees every call and every
// stream from its beginning to its end, in the style of grpc-go's
// stats.Handler. A Server given one (WithStatsHandler) reports every request
// it reads, including those it refuses before any interceptor runs (server
// shutting down, service not exported, unknown method, over a limit,
// undecodable payload), and every gRPC call served on its port. A Client
// given one reports every call and stream made through its references, and
// every attempt of a call with the provider address chosen for it.
//
// A call served in-process (a Reference made without WithRemote to an
// export of the same process, local.go) is reported by the client's
// handler only, with no attempt: it never reaches the server's transport.
//
// Without a handler nothing is reported and nothing is spent: the call
// paths test one nil field (TestStatsNoHandlerAllocs).
//
// WithObserver (health.go) stays beside it: it reports what the client's
// resilience machinery does to provider addresses (ejections, probes,
// readmissions), which are not calls, and its attempt events are the
// attempts a StatsHandler sees as CallAttempt and CallAttemptEnd. A
// StatsHandler is the seam for instrumentation (observability/otelstorks);
// an observer is for logs and tests of the resilience policies.

// StatsHandler sees the calls and streams of a Server or a Client.
//
// For each call or stream, TagCall is called first, once; the context it
// returns is the context of every later event of that call, and on the
// client the context the call is made with, so the metadata a handler
// attaches with NewOutgoingContext is sent with the call (how trace
// context crosses processes). Then HandleCall receives CallBegin, the
// call's other events, and last CallEnd, exactly once. Events of a unary
// call come from one goroutine at a time, in order. The payload events of
// a stream come from the goroutines that send and receive on it, which
// may run concurrently, but never before CallBegin; CallEnd comes after
// the stream's handler returned (server) or its status arrived (client).
//
// Both methods are called synchronously on the call path: they must be
// fast, must not block, and must be safe for concurrent use by many calls.
// They must not keep the *CallInfo after CallEnd, nor modify it.
type StatsHandler interface {
	TagCall(ctx context.Context, info *CallInfo) context.Context
	HandleCall(ctx context.Context, ev CallEvent)
}

// The protocols a CallInfo names.
const (
	ProtocolStorks = "storks" // Storks' own framing
	ProtocolGRPC   = "grpc"   // a gRPC client on a Storks server's port (grpc.go)
)

// CallInfo describes one call or stream.
type CallInfo struct {
	// FullMethod is "/package.Service/Method".
	FullMethod string
	// Key is the service key called: the service with its version and
	// group. On a server it is the key the request asked for, also when
	// no such export exists.
	Key ServiceKey
	// Client is true on the calling side.
	Client bool
	// Stream is true for a stream, false for a unary call.
	Stream bool
	// Protocol is ProtocolStorks or ProtocolGRPC (server side).
	Protocol string
	// Peer is the remote address of the caller (server side); on a client
	// the provider's address is the Addr of each attempt event.
	Peer string
}

// CallEventKind says what a CallEvent reports.
type CallEventKind uint8

// The events of a call.
const (
	// CallBegin: the call started (server: its request was read).
	CallBegin CallEventKind = iota + 1
	// CallAttempt: a client attempt of the call on Addr begins; Attempt
	// is its number, from 1.
	CallAttempt
	// CallAttemptEnd: the attempt on Addr ended with Err (nil: success),
	// after Duration.
	CallAttemptEnd
	// CallInPayload: a message was received, Size bytes on the wire.
	CallInPayload
	// CallOutPayload: a message was sent, Size bytes on the wire.
	CallOutPayload
	// CallEnd: the call ended with Err and Code, Duration after CallBegin.
	CallEnd
)

func (k CallEventKind) String() string {
	switch k {
	case CallBegin:
		return "begin"
	case CallAttempt:
		return "attempt"
	case CallAttemptEnd:
		return "attempt-end"
	case CallInPayload:
		return "in-payload"
	case CallOutPayload:
		return "out-payload"
	case CallEnd:
		return "end"
	}
	return "CallEventKind(" + strconv.Itoa(int(k)) + ")"
}

// CallEvent is one event of a call, given to StatsHandler.HandleCall.
type CallEvent struct {
	Kind CallEventKind
	Info *CallInfo
	// Time is when the event happened.
	Time time.Time
	// Addr is the provider address of a client's attempt (CallAttempt,
	// CallAttemptEnd; on CallEnd, the address of the last attempt, "" if
	// none was made).
	Addr string
	// Attempt is the attempt's number, from 1; on CallEnd the number of
	// attempts made.
	Attempt int
	// Size is a payload's size in bytes as encoded (the message, without
	// the frame).
	Size int
	// Err is the attempt's or the call's error, nil on success.
	Err error
	// Code is CodeOf(Err) on CallEnd and CallAttemptEnd: OK on success.
	Code Code
	// Duration is the time since CallBegin (CallEnd) or since the
	// attempt began (CallAttemptEnd).
	Duration time.Duration
	// Rejected is true on a server's CallEnd for a request refused before
	// any interceptor or handler ran: shutting down, not exported,
	// unknown method, over a limit, undecodable payload.
	Rejected bool
}

type statsOption struct{ h StatsHandler }

func (o statsOption) applyServer(c *serverConfig) { c.stats = o.h }

func (o statsOption) applyClient(c *clientConfig) { c.stats = o.h }

// WithStatsHandler installs h as the server's or the client's stats
// handler (see StatsHandler); the last one given wins. A nil handler is an
// error. observability/otelstorks provides one for OpenTelemetry.
func WithStatsHandler(h StatsHandler) Option {
	if isNilValue(h) {
		return reject("WithStatsHandler", "handler is nil")
	}
	return statsOption{h}
}

// callStats is the state of one call's stats on its side: zero (h nil)
// when the side has no handler, and then every method does nothing.
type callStats struct {
	h     StatsHandler
	ctx   context.Context
	info  *CallInfo
	start time.Time
	ended uint32 // atomic: end reports once
}

// beginStats tags a call with h and reports CallBegin. It returns the
// context to make the call with.
func beginStats(ctx context.Context, h StatsHandler, info *CallInfo) (context.Context, callStats) {
	ctx = h.TagCall(ctx, info)
	now := time.Now()
	h.HandleCall(ctx, CallEvent{Kind: CallBegin, Info: info, Time: now})
	return ctx, callStats{h: h, ctx: ctx, info: info, start: now}
}

// payload reports a message of size bytes received (in) or sent.
func (cs *callStats) payload(in bool, size int) {
	if cs.h == nil {
		return
	}
	k := CallOutPayload
	if in {
		k = CallInPayload
	}
	cs.h.HandleCall(cs.ctx, CallEvent{Kind: k, Info: cs.info, Time: time.Now(), Size: size})
}

// end reports CallEnd with err.
func (cs *callStats) end(err error, rejected bool, attempts int, addr string) {
	if cs.h == nil || !atomic.CompareAndSwapUint32(&cs.ended, 0, 1) {
		return
	}
	now := time.Now()
	cs.h.HandleCall(cs.ctx, CallEvent{Kind: CallEnd, Info: cs.info, Time: now, Err: err, Code: CodeOf(err),
		Duration: now.Sub(cs.start), Rejected: rejected, Attempt: attempts, Addr: addr})
}

// rejectStats reports a request that s refused before running anything:
// CallBegin and at once CallEnd with e. key and method are as read from
// the request.
func (s *Server) rejectStats(ctx context.Context, sc *serverConn, key, method []byte, stream bool, e *Error) {
	h := s.cfg.stats
	info := &CallInfo{Key: parseKey(string(key)), Stream: stream, Protocol: ProtocolStorks, Peer: sc.remote()}
	info.FullMethod = "/" + info.Key.Service + "/" + string(method)
	_, cs := beginStats(ctx, h, info)
	cs.end(e, true, 0, "")
}

// serverStats begins the stats of a request for m (or stream method sm)
// read on sc. ctx is the request's context.
func (s *Server) serverStats(ctx context.Context, sc *serverConn, fullMethod string, key ServiceKey, stream bool) (context.Context, callStats) {
	info := &CallInfo{FullMethod: fullMethod, Key: key, Stream: stream, Protocol: ProtocolStorks, Peer: sc.remote()}
	return beginStats(ctx, s.cfg.stats, info)
}

// remote is the connection's remote address as a string.
func (sc *serverConn) remote() string { return sc.peerAddr }

// attemptStats is the stats of one client call or stream: its CallInfo,
// its callStats and what it records of its attempts for CallEnd, in one
// allocation. It is also the call's context (the handler's, with itself
// as the value of attemptStatsKey), which saves another. A Failbackup
// call's two legs make attempts concurrently: mu guards n and addr.
type attemptStats struct {
	context.Context // what the handler's TagCall returned
	info            CallInfo
	cs              callStats
	mu              sync.Mutex
	n               int    // attempts begun
	addr            string // the provider of the last attempt begun
}

type attemptStatsKey struct{}

func (as *attemptStats) Value(key any) any {
	if key == (attemptStatsKey{}) {
		return as
	}
	return as.Context.Value(key)
}

// beginClient begins the stats of a call (or stream) of method through r
// and returns them; they are the context to make the call with.
func (r *Reference) beginClient(ctx context.Context, method string, stream bool) *attemptStats {
	h := r.cl.cfg.stats
	as := &attemptStats{info: CallInfo{FullMethod: method, Key: r.key, Client: true, Stream: stream, Protocol: ProtocolStorks}}
	as.Context = h.TagCall(ctx, &as.info)
	now := time.Now()
	as.cs = callStats{h: h, ctx: as, info: &as.info, start: now}
	h.HandleCall(as, CallEvent{Kind: CallBegin, Info: &as.info, Time: now})
	return as
}

// end reports the end of the call with err.
func (as *attemptStats) end(err error) {
	as.mu.Lock()
	n, addr := as.n, as.addr
	as.mu.Unlock()
	as.cs.end(err, false, n, addr)
}

// attemptBegin reports an attempt of a call on addr, if the call has
// stats, and returns its number within the call.
func attemptBegin(ctx context.Context, addr string) (*attemptStats, int, time.Time) {
	as, _ := ctx.Value(attemptStatsKey{}).(*attemptStats)
	if as == nil {
		return nil, 0, time.Time{}
	}
	as.mu.Lock()
	as.n++
	n := as.n
	as.addr = addr
	as.mu.Unlock()
	now := time.Now()
	as.cs.h.HandleCall(as, CallEvent{Kind: CallAttempt, Info: &as.info, Time: now, Addr: addr, Attempt: n})
	return as, n, now
}

// attemptEnd reports the end of the attempt attemptBegin began.
func (as *attemptStats) attemptEnd(start time.Time, addr string, n int, err error) {
	now := time.Now()
	as.cs.h.HandleCall(as, CallEvent{Kind: CallAttemptEnd, Info: &as.info, Time: now, Addr: addr, Attempt: n,
		Err: err, Code: CodeOf(err), Duration: now.Sub(start)})
}

// streamStats returns the stats of the stream being opened with ctx, nil
// if it has none.
func streamStats(ctx context.Context) *attemptStats {
	as, _ := ctx.Value(attemptStatsKey{}).(*attemptStats)
	return as
}

// clientPayload reports a message of size bytes sent or received by a
// call made with ctx, if the call has stats.
func clientPayload(ctx context.Context, in bool, size int) {
	if as, _ := ctx.Value(attemptStatsKey{}).(*attemptStats); as != nil {
		as.cs.payload(in, size)
	}
}
