package runtime

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/peer"
	grpcstats "google.golang.org/grpc/stats"
)

// grpcStats adapts a Server's StatsHandler to the embedded grpc-go server
// (grpc.go): every gRPC call on the Storks port, including those grpc-go
// or the bridge refuses (unknown service or method, undecodable payload,
// over a limit), is reported as a call of ProtocolGRPC.
type grpcStats struct{ h StatsHandler }

// grpcCall is one gRPC call's stats, carried in its context.
type grpcCall struct {
	cs  callStats
	ran atomic.Bool // a Storks handler began: see markRan
}

type grpcCallKey struct{}

func (g grpcStats) TagRPC(ctx context.Context, ti *grpcstats.RPCTagInfo) context.Context {
	info := &CallInfo{FullMethod: ti.FullMethodName, Protocol: ProtocolGRPC}
	service, _, _ := strings.Cut(strings.TrimPrefix(ti.FullMethodName, "/"), "/")
	info.Key = ServiceKey{Service: service, Version: lastValue(ctx, MetadataVersion), Group: lastValue(ctx, MetadataGroup)}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		info.Peer = p.Addr.String()
	}
	gc := &grpcCall{cs: callStats{h: g.h, info: info}}
	ctx = g.h.TagCall(ctx, info)
	gc.cs.ctx = ctx
	return context.WithValue(ctx, grpcCallKey{}, gc)
}

func (g grpcStats) HandleRPC(ctx context.Context, s grpcstats.RPCStats) {
	gc, _ := ctx.Value(grpcCallKey{}).(*grpcCall)
	if gc == nil {
		return
	}
	cs := &gc.cs
	switch s := s.(type) {
	case *grpcstats.Begin:
		cs.info.Stream = s.IsClientStream || s.IsServerStream
		cs.start = s.BeginTime
		if cs.start.IsZero() {
			cs.start = time.Now()
		}
		cs.h.HandleCall(cs.ctx, CallEvent{Kind: CallBegin, Info: cs.info, Time: cs.start})
	case *grpcstats.InPayload:
		cs.payload(true, wireSize(s.WireLength, s.Length))
	case *grpcstats.OutPayload:
		cs.payload(false, wireSize(s.WireLength, s.Length))
	case *grpcstats.End:
		err := fromStatus(s.Error)
		cs.end(err, err != nil && !gc.ran.Load(), 0, "")
	}
}

func wireSize(wire, length int) int {
	if wire > 0 {
		return wire
	}
	return length
}

func (grpcStats) TagConn(ctx context.Context, _ *grpcstats.ConnTagInfo) context.Context { return ctx }

func (grpcStats) HandleConn(context.Context, grpcstats.ConnStats) {}

// markRan records that a gRPC call reached a Storks handler's
// interceptors: its failure, if any, is not a rejection.
func markRan(ctx context.Context) {
	if gc, _ := ctx.Value(grpcCallKey{}).(*grpcCall); gc != nil {
		gc.ran.Store(true)
	}
}
