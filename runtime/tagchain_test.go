package runtime_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	storks "github.com/storks-rpc/storks/runtime"
)

// TestTagFollowsTheCallChain: a tagged call to a middle service whose
// handler calls a downstream service with its own context reaches the
// downstream provider with that tag (a canary request stays on canaries
// along the chain), from a Storks client and from a gRPC client; an
// untagged call, or one whose tag is malformed, does not.
func TestTagFollowsTheCallChain(t *testing.T) {
	reg := newRegistry(t)
	// Downstream: p0 untagged, p1 tagged canary.
	providers(t, reg, 2, func(i int) []storks.ExportOption {
		if i == 1 {
			return []storks.ExportOption{storks.WithMetadata(map[string]string{"tag": "canary"})}
		}
		return nil
	})
	_, down := refer(t, reg, nil)
	// Middle: the same echo service at version "mid", which asks
	// downstream and answers with the downstream provider's reply and the
	// tag it saw.
	mid := &echoImpl{name: "mid", hook: func(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		out, err := callEcho(ctx, down, in.GetValue())
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(out + " tag=" + storks.TagFromContext(ctx)), nil
	}}
	msrv, _ := startProvider(t, reg, mid, nil, storks.WithVersion("mid"))
	_, ref := refer(t, reg, nil, storks.WithVersion("mid"))
	ctx := withTimeout(t, 20*time.Second)

	check := func(what string, call func(context.Context) (string, error), ctx context.Context, want string) {
		t.Helper()
		for range 10 {
			got, err := call(ctx)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if !strings.HasPrefix(got, want) {
				t.Fatalf("%s reached %q, want %q", what, got, want)
			}
		}
	}
	storksCall := func(ctx context.Context) (string, error) { return callEcho(ctx, ref, "x") }
	check("a tagged call", storksCall, storks.NewTagContext(ctx, "canary"), "p1:x tag=canary")
	check("an untagged call", storksCall, ctx, "p0:x tag=")
	check("a call whose tag was removed", storksCall, storks.NewTagContext(storks.NewTagContext(ctx, "canary"), ""), "p0:x tag=")
	// A malformed tag sent as metadata is not taken up.
	check("a call with a malformed tag", storksCall, storks.NewOutgoingContext(ctx, storks.Metadata{storks.MetadataTag: "canary!"}), "p0:x tag=")

	cc := dialGRPC(t, msrv.Addr())
	grpcCall := func(ctx context.Context) (string, error) { return grpcEcho(ctx, cc, "x") }
	gctx := metadata.AppendToOutgoingContext(ctx, storks.MetadataVersion, "mid")
	check("a tagged gRPC call", grpcCall, metadata.AppendToOutgoingContext(gctx, storks.MetadataTag, "canary"), "p1:x tag=canary")
	check("an untagged gRPC call", grpcCall, gctx, "p0:x tag=")
}
