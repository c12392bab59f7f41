package auth_test

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
)

// watchDesc is a server-streaming service that streams back who the
// caller is, from the stream's context.
var (
	watchRuns atomic.Int64
	watchDesc = storks.ServiceDesc{
		ServiceName: "authtest.Watch",
		Streams: []storks.StreamDesc{{
			StreamName:    "Watch",
			ServerStreams: true,
			Handler: func(_ any, ss storks.ServerStream) error {
				watchRuns.Add(1)
				in := new(wrapperspb.StringValue)
				if err := ss.RecvMsg(in); err != nil {
					return err
				}
				p, _ := ss.Context().Value(principalKey{}).(string)
				return ss.SendMsg(wrapperspb.String("hello " + p))
			},
		}},
	}
)

const watchMethod = "/authtest.Watch/Watch"

// Streams are checked as calls are: a stream without an accepted token
// fails before its handler runs, and a Verifier's context reaches the
// handler's stream.
func TestStreams(t *testing.T) {
	watchRuns.Store(0)
	sic, err := auth.NewStreamServerInterceptor(auth.WithTokens(secret), auth.WithVerifier(func(ctx context.Context, token string, info *storks.UnaryServerInfo) (context.Context, error) {
		if token == "ann-token" && info.FullMethod == watchMethod {
			return context.WithValue(ctx, principalKey{}, "ann"), nil
		}
		return nil, storks.NewError(storks.CodePermissionDenied, "not ann")
	}))
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.NewInproc()
	t.Cleanup(func() { reg.Close() })
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithStreamServerInterceptor(sic), storks.WithShutdownWait(0))
	if _, err := srv.Export(&watchDesc, struct{}{}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })

	open := func(copts ...storks.ClientOption) (string, error) {
		cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(reg)}, copts...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ref, err := cli.Refer(ctx, "authtest.Watch", storks.WithRemote(), storks.WithWaitForProvider())
		if err != nil {
			t.Fatal(err)
		}
		cs, err := ref.NewStream(ctx, &watchDesc.Streams[0], watchMethod)
		if err != nil {
			return "", err
		}
		if err := cs.SendMsg(wrapperspb.String("")); err != nil && err != io.EOF {
			return "", err
		}
		cs.CloseSend()
		out := new(wrapperspb.StringValue)
		if err := cs.RecvMsg(out); err != nil {
			return "", err
		}
		return out.GetValue(), nil
	}
	streamAuth := func(token string) storks.ClientOption {
		ic, err := auth.NewStreamClientInterceptor(token)
		if err != nil {
			t.Fatal(err)
		}
		return storks.WithStreamClientInterceptor(ic)
	}

	_, err = open()
	wantUnauthenticated(t, err, "missing credentials")
	_, err = open(streamAuth("wrong-token"))
	if storks.CodeOf(err) != storks.CodePermissionDenied {
		t.Fatalf("stream with a token the verifier refuses: %v, want PermissionDenied", err)
	}
	if n := watchRuns.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for refused streams", n)
	}
	if got, err := open(streamAuth(secret)); err != nil || got != "hello " {
		t.Fatalf("stream with the token = %q, %v", got, err)
	}
	if got, err := open(streamAuth("ann-token")); err != nil || got != "hello ann" {
		t.Fatalf("stream with ann's token = %q, %v; want the verifier's principal", got, err)
	}

	if _, err := auth.NewStreamServerInterceptor(); err == nil {
		t.Fatal("NewStreamServerInterceptor without tokens or verifier: no error")
	}
	if _, err := auth.NewStreamClientInterceptor(""); err == nil {
		t.Fatal("NewStreamClientInterceptor with an empty token: no error")
	}
}
