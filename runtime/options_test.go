package runtime_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// nilRegistry is a registry type whose nil pointer is a non-nil
// registry.Registry, as a constructor returning *T and an error gives.
type nilRegistry struct{ registry.Registry }

var (
	nilServerInterceptor storks.UnaryServerInterceptor
	nilClientInterceptor storks.UnaryClientInterceptor
	okServerInterceptor  = func(ctx context.Context, req any, _ *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
		return h(ctx, req)
	}
	okClientInterceptor = func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
		return inv(ctx, method, req, reply)
	}
)

// certConfig is a server TLS config with a certificate (which is never
// used: only the option is checked).
func certConfig() *tls.Config { return &tls.Config{Certificates: make([]tls.Certificate, 1)} }

// wantOptionError checks that err is a CodeInvalidArgument *Error whose
// message starts with want.
func wantOptionError(t *testing.T, err error, want string) {
	t.Helper()
	var e *storks.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *storks.Error starting %q", err, err, want)
	}
	if e.Code != storks.CodeInvalidArgument || !strings.HasPrefix(e.Message, want) {
		t.Fatalf("err = %v, want InvalidArgument starting %q", err, want)
	}
}

// Every option of every constructor and call is checked: a bad value is a
// CodeInvalidArgument *Error whose message starts with the option's name,
// returned by NewServer's Export and Serve, NewClient, Export, Refer or the
// call, and nothing panics.
func TestOptionsAreChecked(t *testing.T) {
	reg := newRegistry(t)
	serve := func(opts ...storks.ServerOption) func() error {
		return func() error {
			srv := storks.NewServer(opts...)
			defer srv.Close()
			_, exportErr := srv.Export(&echoDesc, &echoImpl{})
			serveErr := srv.Serve(listen(t))
			if fmt.Sprint(exportErr) != fmt.Sprint(serveErr) {
				return fmt.Errorf("Export returned %v, Serve %v", exportErr, serveErr)
			}
			return serveErr
		}
	}
	client := func(opts ...storks.ClientOption) func() error {
		return func() error {
			cli, err := storks.NewClient(opts...)
			if cli != nil {
				cli.Close()
				if err != nil {
					return fmt.Errorf("NewClient returned a client and %w", err)
				}
			}
			return err
		}
	}
	export := func(opts ...storks.ExportOption) func() error {
		return func() error {
			srv := storks.NewServer()
			defer srv.Close()
			_, err := srv.Export(&echoDesc, &echoImpl{}, opts...)
			return err
		}
	}
	cli := newClient(t, storks.WithRegistry(reg))
	refer := func(opts ...storks.ReferOption) func() error {
		return func() error {
			ref, err := cli.Refer(context.Background(), echoService, opts...)
			if ref != nil {
				ref.Close()
			}
			return err
		}
	}
	ref, err := cli.Refer(context.Background(), echoService, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	call := func(opts ...storks.CallOption) func() error {
		return func() error {
			err := ref.Invoke(context.Background(), echoMethod, wrapperspb.String("x"), new(wrapperspb.StringValue), opts...)
			return err
		}
	}
	tooMany := make(storks.Metadata, 1025)
	for i := range 1025 {
		tooMany[fmt.Sprint(i)] = "v"
	}

	cases := []struct {
		name string
		err  func() error
		want string // the start of the error's message
	}{
		{"server: nil option", serve(nil), "NewServer: option 0 is nil"},
		{"server: nil codec", serve(storks.WithCodec(nil)), "WithCodec: codec is nil"},
		{"server: nil logger", serve(storks.WithLogger(nil)), "WithLogger: logger is nil"},
		{"server: nil registry", serve(storks.WithRegistry(nil)), "WithRegistry: registry is nil"},
		{"server: typed nil registry", serve(storks.WithRegistry((*nilRegistry)(nil))), "WithRegistry: registry is nil"},
		{"server: nil interceptor", serve(storks.WithServerInterceptor(okServerInterceptor, nilServerInterceptor)), "WithServerInterceptor: interceptor 1 is nil"},
		{"server: negative shutdown wait", serve(storks.WithShutdownWait(-time.Second)), "WithShutdownWait: shutdown wait -1s must not be negative"},
		{"server: negative max message size", serve(storks.WithMaxMessageSize(-1)), "WithMaxMessageSize: max message size -1 must not be negative"},
		{"server: advertise port 0", serve(storks.WithAdvertiseAddr("127.0.0.1:0")), `WithAdvertiseAddr: address "127.0.0.1:0" port must be 1-65535`},
		{"server: advertise without port", serve(storks.WithAdvertiseAddr("10.0.0.1")), `WithAdvertiseAddr: address "10.0.0.1" is not host:port`},
		{"server: empty advertise address", serve(storks.WithAdvertiseAddr("")), "WithAdvertiseAddr: address is not host:port"},
		{"server: unspecified advertise host", serve(storks.WithAdvertiseAddr("0.0.0.0:7000")), `WithAdvertiseAddr: address "0.0.0.0:7000" has an unspecified host`},
		{"server: nil TLS config", serve(storks.WithTLSConfig(nil)), "WithTLSConfig: the *tls.Config is nil"},
		{"server: TLS without certificate", serve(storks.WithTLSConfig(&tls.Config{})), "WithTLSConfig: the server's tls.Config has no certificate"},
		{"server: TLS versions", serve(storks.WithTLSConfig(&tls.Config{Certificates: certConfig().Certificates, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12})), "WithTLSConfig: MinVersion TLS 1.3 is above MaxVersion TLS 1.2"},
		{"server: negative frame timeout", serve(storks.WithFrameTimeout(-time.Second)), "WithFrameTimeout: frame timeout -1s must not be negative"},
		{"server: negative idle timeout", serve(storks.WithIdleTimeout(-time.Second)), "WithIdleTimeout: idle timeout -1s must not be negative"},
		{"server: negative request cap", serve(storks.WithMaxConcurrentRequests(-1)), "WithMaxConcurrentRequests: limit -1 must not be negative"},
		{"server: first bad option wins", serve(storks.WithShutdownWait(-1), storks.WithCodec(nil)), "WithShutdownWait:"},

		{"client: nil option", client(storks.WithDialTimeout(time.Second), nil), "NewClient: option 1 is nil"},
		{"client: nil codec", client(storks.WithCodec(nil)), "WithCodec: codec is nil"},
		{"client: nil logger", client(storks.WithLogger(nil)), "WithLogger: logger is nil"},
		{"client: nil registry", client(storks.WithRegistry(nil)), "WithRegistry: registry is nil"},
		{"client: nil interceptor", client(storks.WithClientInterceptor(okClientInterceptor, okClientInterceptor, nilClientInterceptor)), "WithClientInterceptor: interceptor 2 is nil"},
		{"client: negative dial timeout", client(storks.WithDialTimeout(-time.Second)), "WithDialTimeout: must be positive (got -1s)"},
		{"client: zero dial timeout", client(storks.WithDialTimeout(0)), "WithDialTimeout: must be positive (got 0s)"},
		{"client: negative max message size", client(storks.WithMaxMessageSize(-5)), "WithMaxMessageSize: max message size -5 must not be negative"},
		{"client: nil TLS config", client(storks.WithTLSConfig(nil)), "WithTLSConfig: the *tls.Config is nil"},
		{"client: negative base backoff", client(storks.WithEjection(storks.EjectionPolicy{BaseBackoff: -1})), "WithEjection: BaseBackoff -1ns must not be negative"},
		{"client: negative max backoff", client(storks.WithEjection(storks.EjectionPolicy{MaxBackoff: -time.Second})), "WithEjection: MaxBackoff -1s must not be negative"},
		{"client: negative probe timeout", client(storks.WithEjection(storks.EjectionPolicy{ProbeTimeout: -time.Second})), "WithEjection: ProbeTimeout -1s must not be negative"},
		{"client: ejected percent over 100", client(storks.WithEjection(storks.EjectionPolicy{MaxEjectedPercent: 101})), "WithEjection: MaxEjectedPercent 101 must be 0-100"},
		{"client: negative ejected percent", client(storks.WithEjection(storks.EjectionPolicy{MaxEjectedPercent: -1})), "WithEjection: MaxEjectedPercent -1 must be 0-100"},
		{"client: max backoff under base", client(storks.WithEjection(storks.EjectionPolicy{BaseBackoff: time.Second, MaxBackoff: time.Millisecond})), "WithEjection: MaxBackoff 1ms is shorter than BaseBackoff 1s"},
		{"client: max backoff under default base", client(storks.WithEjection(storks.EjectionPolicy{MaxBackoff: time.Millisecond})), "WithEjection: MaxBackoff 1ms is shorter than BaseBackoff 500ms (the default)"},
		{"client: nil observer", client(storks.WithObserver(nil)), "WithObserver: observer is nil"},
		{"client: negative default timeout", client(storks.WithDefaultTimeout(-time.Second)), "WithDefaultTimeout: timeout -1s must not be negative"},
		{"client: negative failover", client(storks.Failover(-1)), "Failover: retries -1 must not be negative"},
		{"client: negative failtry", client(storks.Failtry(-2)), "Failtry: retries -2 must not be negative"},
		{"client: zero failbackup", client(storks.Failbackup(0)), "Failbackup: delay must be positive (got 0s)"},

		{"export: nil option", export(nil), "Export: option 0 is nil"},
		{"export: negative weight", export(storks.WithWeight(-1)), "WithWeight: weight -1 must not be negative"},
		{"export: empty metadata key", export(storks.WithMetadata(map[string]string{"": "x"})), "WithMetadata: a key is empty"},
		{"export: negative delay", export(storks.WithDelay(-time.Second)), "WithDelay: delay -1s must not be negative"},
		{"export: bad version", export(storks.WithVersion("v/1")), `WithVersion: version "v/1" contains '/'`},
		{"export: bad group", export(storks.WithGroup("a b")), `WithGroup: group "a b" contains ' '`},
		{"export: long version", export(storks.WithVersion(strings.Repeat("v", 256))), "WithVersion: version"},

		{"refer: nil option", refer(nil), "Refer: option 0 is nil"},
		{"refer: nil balancer", refer(storks.WithBalancer(nil)), "WithBalancer: balancer factory is nil"},
		{"refer: nil balancer made", refer(storks.WithBalancer(func() storks.Balancer { return nil })), "WithBalancer: the factory returned a nil balancer"},
		{"refer: nil registry", refer(storks.WithRegistry(nil)), "WithRegistry: registry is nil"},
		{"refer: empty idempotent method", refer(storks.WithIdempotentMethods("Echo", "")), "WithIdempotentMethods: method 1 is empty"},
		{"refer: idempotent method with a slash", refer(storks.WithIdempotentMethods("test.Echo/Echo")), `WithIdempotentMethods: method "test.Echo/Echo" is neither`},
		{"refer: idempotent full name without method", refer(storks.WithIdempotentMethods("/test.Echo")), `WithIdempotentMethods: method "/test.Echo" is not`},
		{"refer: idempotent method of another service", refer(storks.WithIdempotentMethods("/other.Svc/Echo")), `WithIdempotentMethods: method "/other.Svc/Echo" is not a method of test.Echo`},
		{"refer: negative default timeout", refer(storks.WithDefaultTimeout(-1)), "WithDefaultTimeout: timeout -1ns must not be negative"},
		{"refer: negative failover", refer(storks.Failover(-3)), "Failover: retries -3 must not be negative"},
		{"refer: negative failbackup", refer(storks.Failbackup(-time.Second)), "Failbackup: delay must be positive (got -1s)"},
		{"refer: bad version", refer(storks.WithVersion("a:b")), `WithVersion: version "a:b" contains ':'`},

		{"call: nil option", call(storks.WithIdempotent(), nil), "Invoke: call option 1 is nil"},
		{"call: empty metadata key", call(storks.WithCallMetadata(storks.Metadata{"": "v"})), "WithCallMetadata: a key is empty"},
		{"call: too much metadata", call(storks.WithCallMetadata(tooMany)), "WithCallMetadata: 1025 pairs are more than a request may carry (1024)"},
		{"call: zero failbackup", call(storks.Failbackup(0)), "Failbackup: delay must be positive (got 0s)"},
		{"call: negative failtry", call(storks.Failtry(-1)), "Failtry: retries -1 must not be negative"},
	}
	if math.MaxInt > math.MaxUint32 {
		cases = append(cases, struct {
			name string
			err  func() error
			want string
		}{"client: max message size over 4 GiB", client(storks.WithMaxMessageSize(1 << 32)), "WithMaxMessageSize: max message size 4294967296 is more than a frame can carry (4294967295)"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				err = c.err()
			}()
			wantOptionError(t, err, c.want)
		})
	}
}

// The values options document as meaning "the default" or "none" are
// accepted.
func TestOptionBoundaryValuesAreAccepted(t *testing.T) {
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithMaxMessageSize(0), storks.WithShutdownWait(0), storks.WithFrameTimeout(0),
		storks.WithIdleTimeout(0), storks.WithMaxConcurrentRequests(0), storks.WithServerInterceptor(), storks.WithRegistry(reg),
		storks.WithTLSConfig(certConfig()))
	defer srv.Close()
	if _, err := srv.Export(&echoDesc, &echoImpl{}, storks.WithWeight(0), storks.WithDelay(0), storks.WithMetadata(nil), storks.WithVersion(""), storks.WithGroup("")); err != nil {
		t.Fatal(err)
	}
	cli := newClient(t, storks.WithRegistry(reg), storks.WithMaxMessageSize(0), storks.WithDefaultTimeout(0), storks.Failover(0),
		storks.WithClientInterceptor(), storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: -1, MaxEjectedPercent: 100}),
		storks.WithEjection(storks.EjectionPolicy{BaseBackoff: 10 * time.Second}), storks.WithoutEjection(), storks.Failtry(0))
	ref, err := cli.Refer(context.Background(), echoService, storks.WithRemote(), storks.WithIdempotentMethods("Echo", echoMethod), storks.WithDefaultTimeout(0),
		storks.Failbackup(time.Nanosecond), storks.FailMode{})
	if err != nil {
		t.Fatal(err)
	}
	// The reference has no provider: the call gets past its options.
	_, err = callEcho(context.Background(), ref, "x", storks.WithCallMetadata(nil), storks.Failfast(), storks.WithIdempotent())
	wantCode(t, err, storks.CodeUnavailable, "no provider")
}

// A bad call option fails the call before client interceptors run and
// before anything is sent.
func TestBadCallOptionStopsTheCall(t *testing.T) {
	reg := newRegistry(t)
	impl := &echoImpl{name: "p"}
	startProvider(t, reg, impl, nil)
	ran := false
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithClientInterceptor(func(ctx context.Context, method string, req, reply any, inv storks.UnaryInvoker) error {
		ran = true
		return inv(ctx, method, req, reply)
	})})
	_, err := callEcho(context.Background(), ref, "x", storks.WithCallMetadata(storks.Metadata{"": "v"}))
	wantOptionError(t, err, "WithCallMetadata: a key is empty")
	if ran {
		t.Error("the client interceptor ran")
	}
	if got, err := callEcho(context.Background(), ref, "x", storks.WithCallMetadata(storks.Metadata{"k": "v"})); err != nil || got != "p:x" {
		t.Fatalf("good call: %q, %v", got, err)
	}
}

// Options copy what they are given: changing it afterwards has no effect.
func TestOptionsCopyTheirArguments(t *testing.T) {
	reg := newRegistry(t)
	md := map[string]string{"zone": "a"}
	srv := storks.NewServer(storks.WithRegistry(reg))
	defer srv.Close()
	opt := storks.WithMetadata(md)
	md[""] = "late"
	ex, err := srv.Export(&echoDesc, &echoImpl{}, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got := ex.Instance().Metadata; len(got) != 2 || got["zone"] != "a" || got[storks.MetadataProtocols] == "" {
		t.Fatalf("metadata = %v, want zone=a and protocols", got)
	}
}
