package grpcgo

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The request metadata storks-version and storks-group pick the export a
// gRPC call reaches: a provider that exports only version v2 (or only
// group blue) serves calls that name it, unary and streaming, and fails
// the others, those naming no version (group) included, with an
// Unimplemented error that names the service.
func TestVersionAndGroupMetadata(t *testing.T) {
	cases := []struct {
		flag, key, value, wrong string
	}{
		{"-version", "storks-version", "v2", "v3"},
		{"-group", "storks-group", "blue", "green"},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			p := startProvider(t, "inproc://", "exported-"+tc.value, tc.flag, tc.value)
			cc := dial(t, p.addr)
			g, e := greeterv1.NewGreeterClient(cc), echov1.NewEchoClient(cc)
			with := func(kv ...string) context.Context {
				return metadata.AppendToOutgoingContext(timeout(t, 10*time.Second), kv...)
			}

			r, err := g.SayHello(with(tc.key, tc.value), &greeterv1.HelloRequest{Name: "v"})
			if err != nil {
				t.Fatalf("SayHello with %s: %s: %v", tc.key, tc.value, err)
			}
			if r.GetProvider() != p.name {
				t.Errorf("SayHello with %s: %s answered by %q, want %q", tc.key, tc.value, r.GetProvider(), p.name)
			}
			s, err := e.Count(with(tc.key, tc.value), &echov1.CountRequest{Text: "v", Times: 3})
			if err != nil {
				t.Fatalf("Count with %s: %s: %v", tc.key, tc.value, err)
			}
			n := 0
			for {
				_, err := s.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("Count with %s: %s: %v", tc.key, tc.value, err)
				}
				n++
			}
			if n != 3 {
				t.Errorf("Count(3) with %s: %s gave %d messages", tc.key, tc.value, n)
			}

			for _, ctx := range []struct {
				what string
				ctx  context.Context
			}{
				{"without " + tc.key, with()},
				{"with " + tc.key + ": " + tc.wrong, with(tc.key, tc.wrong)},
			} {
				_, err := g.SayHello(ctx.ctx, &greeterv1.HelloRequest{Name: "v"})
				st := status.Convert(err)
				if st.Code() != codes.Unimplemented {
					t.Errorf("SayHello %s: %v, want code Unimplemented", ctx.what, err)
					continue
				}
				if !strings.Contains(st.Message(), greeterv1.Greeter_ServiceDesc.ServiceName) {
					t.Errorf("SayHello %s: message %q does not name the service %s", ctx.what, st.Message(), greeterv1.Greeter_ServiceDesc.ServiceName)
				}
				t.Logf("SayHello %s: %v", ctx.what, err)
			}
		})
	}
}
