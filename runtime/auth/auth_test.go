package auth_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const secret = "s3cret-token-0123456789"

type whoServer interface {
	Who(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type who struct{ calls atomic.Int64 }

type principalKey struct{}

func (w *who) Who(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	w.calls.Add(1)
	if p, ok := ctx.Value(principalKey{}).(string); ok {
		return wrapperspb.String("hello " + p), nil
	}
	return wrapperspb.String("hello"), nil
}

var whoDesc = storks.ServiceDesc{
	ServiceName: "authtest.Who",
	HandlerType: (*whoServer)(nil),
	Methods: []storks.MethodDesc{{
		Name:       "Who",
		NewRequest: func() any { return new(wrapperspb.StringValue) },
		Handler: func(srv any, ctx context.Context, req any) (any, error) {
			return srv.(whoServer).Who(ctx, req.(*wrapperspb.StringValue))
		},
	}},
}

const whoMethod = "/authtest.Who/Who"

var setups atomic.Int64

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// setup serves the Who service behind the server interceptor and returns a
// reference made with copts, remote or local.
func setup(t *testing.T, logs *syncBuffer, sopts []auth.ServerOption, remote bool, copts ...storks.ClientOption) (*who, *storks.Reference) {
	t.Helper()
	check, err := auth.NewServerInterceptor(sopts...)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.NewInproc()
	t.Cleanup(func() { reg.Close() })
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithServerInterceptor(check), storks.WithLogger(logger), storks.WithShutdownWait(0))
	impl := &who{}
	// Each setup has its own version: local calls go to the first export
	// of a key in the process.
	version := fmt.Sprint("v", setups.Add(1))
	if _, err := srv.Export(&whoDesc, impl, storks.WithVersion(version)); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(reg), storks.WithLogger(logger)}, copts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ropts := []storks.ReferOption{storks.WithVersion(version)}
	if remote {
		ropts = append(ropts, storks.WithRemote())
	}
	ref, err := cli.Refer(context.Background(), "authtest.Who", ropts...)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ref.Providers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no provider")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return impl, ref
}

func call(ctx context.Context, ref *storks.Reference, opts ...storks.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := ref.Invoke(ctx, whoMethod, wrapperspb.String("x"), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func clientAuth(t *testing.T, token string) storks.ClientOption {
	t.Helper()
	in, err := auth.NewClientInterceptor(token)
	if err != nil {
		t.Fatal(err)
	}
	return storks.WithClientInterceptor(in)
}

func wantUnauthenticated(t *testing.T, err error, substr string) {
	t.Helper()
	if storks.CodeOf(err) != storks.CodeUnauthenticated || !strings.Contains(err.Error(), substr) {
		t.Fatalf("err = %v, want Unauthenticated containing %q", err, substr)
	}
}

func TestTokens(t *testing.T) {
	for _, remote := range []bool{true, false} {
		name := map[bool]string{true: "remote", false: "local"}[remote]
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			sopts := []auth.ServerOption{auth.WithTokens("other-token", secret)}

			impl, anon := setup(t, &logs, sopts, remote)
			_, err := call(context.Background(), anon)
			wantUnauthenticated(t, err, "missing credentials")
			_, err = call(context.Background(), anon, storks.WithCallMetadata(storks.Metadata{"authorization": "Basic dXNlcjpwdw=="}))
			wantUnauthenticated(t, err, "not a bearer token")
			_, err = call(context.Background(), anon, storks.WithCallMetadata(storks.Metadata{"authorization": "Bearer "}))
			wantUnauthenticated(t, err, "empty")

			_, wrong := setup(t, &logs, sopts, remote, clientAuth(t, "wrong-"+secret))
			_, err = call(context.Background(), wrong)
			wantUnauthenticated(t, err, "invalid bearer token")
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error quotes the token: %v", err)
			}
			if n := impl.calls.Load(); n != 0 {
				t.Fatalf("handler ran %d times for unauthenticated calls", n)
			}

			good, ok := setup(t, &logs, sopts, remote, clientAuth(t, secret))
			if got, err := call(context.Background(), ok); err != nil || got != "hello" {
				t.Fatalf("authenticated call: %q, %v", got, err)
			}
			// The scheme is case-insensitive (RFC 7235); a per-call
			// authorization wins over the interceptor's.
			if _, err := call(context.Background(), ok, storks.WithCallMetadata(storks.Metadata{"authorization": "bearer other-token"})); err != nil {
				t.Fatal(err)
			}
			_, err = call(context.Background(), ok, storks.WithCallMetadata(storks.Metadata{"authorization": "Bearer nope"}))
			wantUnauthenticated(t, err, "invalid bearer token")
			if n := good.calls.Load(); n != 2 {
				t.Fatalf("handler ran %d times, want 2", n)
			}
			if strings.Contains(logs.String(), secret) {
				t.Fatalf("the token was logged:\n%s", logs.String())
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	verify := func(ctx context.Context, token string, info *storks.UnaryServerInfo) (context.Context, error) {
		switch {
		case token == "alice-"+secret:
			return context.WithValue(ctx, principalKey{}, "alice"), nil
		case token == "mallory-"+secret:
			return nil, storks.NewError(storks.CodePermissionDenied, "mallory may not call "+info.FullMethod)
		}
		return nil, errors.New("token " + token + " is unknown") // must not reach the caller
	}
	var logs syncBuffer
	sopts := []auth.ServerOption{auth.WithTokens(secret), auth.WithVerifier(verify)}
	impl, alice := setup(t, &logs, sopts, true, clientAuth(t, "alice-"+secret))
	if got, err := call(context.Background(), alice); err != nil || got != "hello alice" {
		t.Fatalf("alice: %q, %v", got, err)
	}
	_, static := setup(t, &logs, sopts, true, clientAuth(t, secret))
	if got, err := call(context.Background(), static); err != nil || got != "hello" {
		t.Fatalf("static token: %q, %v", got, err)
	}
	_, mallory := setup(t, &logs, sopts, true, clientAuth(t, "mallory-"+secret))
	_, err := call(context.Background(), mallory)
	if storks.CodeOf(err) != storks.CodePermissionDenied {
		t.Fatalf("mallory: %v", err)
	}
	_, eve := setup(t, &logs, sopts, true, clientAuth(t, "eve-"+secret))
	_, err = call(context.Background(), eve)
	wantUnauthenticated(t, err, "invalid bearer token")
	if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
		t.Fatalf("token leaked: %v\n%s", err, logs.String())
	}
	if n := impl.calls.Load(); n != 1 {
		t.Fatalf("alice's server ran %d calls, want 1", n)
	}
}

func TestClientInterceptorFunc(t *testing.T) {
	var n atomic.Int64
	src, err := auth.NewClientInterceptorFunc(func(ctx context.Context) (string, error) {
		switch n.Add(1) {
		case 1:
			return secret, nil
		case 2:
			return "", errors.New("token service down")
		}
		return "", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	impl, ref := setup(t, &logs, []auth.ServerOption{auth.WithTokens(secret)}, true, storks.WithClientInterceptor(src))
	if _, err := call(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	_, err = call(context.Background(), ref)
	wantUnauthenticated(t, err, "no bearer token: token service down")
	_, err = call(context.Background(), ref)
	wantUnauthenticated(t, err, "unusable token: auth: token is empty")
	if c := impl.calls.Load(); c != 1 {
		t.Fatalf("handler ran %d times, want 1", c)
	}
}

func TestConstructorsRejectBadInput(t *testing.T) {
	cases := []struct {
		name string
		err  func() error
		want string
	}{
		{"no tokens", func() error { _, err := auth.NewServerInterceptor(); return err }, "no tokens and no verifier"},
		{"nil tokens", func() error { _, err := auth.NewServerInterceptor(auth.WithTokens()); return err }, "no tokens and no verifier"},
		{"empty token", func() error { _, err := auth.NewServerInterceptor(auth.WithTokens("a", "")); return err }, "WithTokens: a token is empty"},
		{"empty client token", func() error { _, err := auth.NewClientInterceptor(""); return err }, "token is empty"},
		{"line break", func() error { _, err := auth.NewClientInterceptor("a\nb"); return err }, "line break"},
		{"nil source", func() error { _, err := auth.NewClientInterceptorFunc(nil); return err }, "token source is nil"},
	}
	for _, c := range cases {
		err := c.err()
		if storks.CodeOf(err) != storks.CodeInvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want InvalidArgument containing %q", c.name, err, c.want)
		}
	}
}
