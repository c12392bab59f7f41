package badinput_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	_ "github.com/storks-rpc/storks/registry/all"
	storks "github.com/storks-rpc/storks/runtime"
	"github.com/storks-rpc/storks/runtime/auth"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type echoServer interface {
	Echo(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

type echo struct{}

func (echo) Echo(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return in, nil
}

const service = "badinput.Echo"

func desc() *storks.ServiceDesc {
	return &storks.ServiceDesc{
		ServiceName: service,
		HandlerType: (*echoServer)(nil),
		Methods: []storks.MethodDesc{{
			Name:       "Echo",
			NewRequest: func() any { return new(wrapperspb.StringValue) },
			Handler: func(srv any, ctx context.Context, req any) (any, error) {
				return srv.(echoServer).Echo(ctx, req.(*wrapperspb.StringValue))
			},
		}},
	}
}

// fixedAddrListener is a listener whose address is whatever the test says.
type fixedAddrListener struct {
	net.Listener
	addr string
}

type fakeAddr string

func (a fakeAddr) Network() string         { return "tcp" }
func (a fakeAddr) String() string          { return string(a) }
func (l fixedAddrListener) Addr() net.Addr { return fakeAddr(l.addr) }

// badBalancer's pickers pick no endpoint, or fail with err.
type badBalancer struct{ err error }

func (b badBalancer) Build([]*storks.Endpoint) storks.Picker { return b }

func (b badBalancer) Pick(context.Context, storks.PickInfo) (storks.PickResult, error) {
	return storks.PickResult{}, b.err
}

func bad(err error) storks.BalancerFactory { return func() storks.Balancer { return badBalancer{err} } }

// env is what the cases share: a registry with one provider serving
// badinput.Echo on 127.0.0.1.
type env struct {
	t   *testing.T
	reg registry.Registry
}

func (e *env) listen() net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// serve runs srv on lis, returning Serve's error if it fails at once.
func (e *env) serve(srv *storks.Server, lis net.Listener) error {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Second):
		srv.Close()
		<-done
		return nil
	}
}

func (e *env) refer(copts []storks.ClientOption, ropts ...storks.ReferOption) (*storks.Client, *storks.Reference, error) {
	cli, err := storks.NewClient(append([]storks.ClientOption{storks.WithRegistry(e.reg)}, copts...)...)
	if err != nil {
		return nil, nil, err
	}
	e.t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, service, append([]storks.ReferOption{storks.WithRemote()}, ropts...)...)
	return cli, ref, err
}

func (e *env) call(copts []storks.ClientOption, ropts ...storks.ReferOption) error {
	_, ref, err := e.refer(copts, ropts...)
	if err != nil {
		return err
	}
	return invoke(ref, "/"+service+"/Echo")
}

// callWith makes a call with call options through a reference to the
// provider.
func (e *env) callWith(opts ...storks.CallOption) error {
	_, ref, err := e.refer(nil)
	if err != nil {
		return fmt.Errorf("refer: %w", err)
	}
	return invoke(ref, "/"+service+"/Echo", opts...)
}

func invoke(ref *storks.Reference, method string, opts ...storks.CallOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := ref.Invoke(ctx, method, wrapperspb.String("x"), new(wrapperspb.StringValue), opts...)
	return err
}

// newClient returns NewClient's error, closing the client if there is one.
func newClient(opts ...storks.ClientOption) error {
	cli, err := storks.NewClient(opts...)
	if cli != nil {
		cli.Close()
	}
	return err
}

// failedOpen is what `reg, _ := registry.Open(ctx, url)` gives when Open
// fails.
func failedOpen() registry.Registry {
	reg, _ := registry.Open(context.Background(), "nope://127.0.0.1:1")
	return reg
}

func openURL(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, url)
	if r != nil {
		r.Close()
	}
	return err
}

func export(d *storks.ServiceDesc, impl any, opts ...storks.ExportOption) error {
	srv := storks.NewServer()
	defer srv.Close()
	_, err := srv.Export(d, impl, opts...)
	return err
}

func serveWith(e *env, opts ...storks.ServerOption) error {
	return e.serve(storks.NewServer(opts...), e.listen())
}

func TestBadInputIsRejectedNamingTheField(t *testing.T) {
	reg := registry.NewInproc()
	defer reg.Close()
	e := &env{t: t, reg: reg}
	provider := storks.NewServer(storks.WithRegistry(reg))
	ex, err := provider.Export(desc(), echo{})
	if err != nil {
		t.Fatal(err)
	}
	lis := e.listen()
	go provider.Serve(lis)
	defer provider.Close()
	for ex.State() != storks.ExportRegistered { // Serve registers in the background
		time.Sleep(time.Millisecond)
	}

	var nilImpl *echo
	inst := func(f func(*registry.Instance)) registry.Instance {
		in := registry.Instance{Key: registry.ServiceKey{Service: service}, ID: "id", Addr: "127.0.0.1:1"}
		f(&in)
		return in
	}
	register := func(in registry.Instance) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return reg.Register(ctx, in)
	}

	cases := []struct {
		name string
		err  func() error
		want []string // every one must appear in the error
	}{
		// Export.
		{"export: nil descriptor", func() error { return export(nil, echo{}) }, []string{"service descriptor is nil"}},
		{"export: nil implementation", func() error { return export(desc(), nil) }, []string{"implementation is nil"}},
		{"export: typed nil implementation", func() error { return export(desc(), nilImpl) }, []string{"implementation is a nil *badinput_test.echo"}},
		{"export: wrong implementation", func() error { return export(desc(), struct{}{}) }, []string{"does not implement badinput_test.echoServer"}},
		{"export: empty service name", func() error { d := desc(); d.ServiceName = ""; return export(d, echo{}) }, []string{"service must not be empty"}},
		{"export: service name with a space", func() error { d := desc(); d.ServiceName = "a b"; return export(d, echo{}) }, []string{"service", "contains ' '"}},
		{"export: version with '/'", func() error { return export(desc(), echo{}, storks.WithVersion("v/1")) }, []string{"version", "contains '/'"}},
		{"export: group with ':'", func() error { return export(desc(), echo{}, storks.WithGroup("g:1")) }, []string{"group", "contains ':'"}},
		{"export: version of 300 bytes", func() error { return export(desc(), echo{}, storks.WithVersion(strings.Repeat("v", 300))) }, []string{"version", "longer than 255 bytes"}},
		{"export: negative weight", func() error { return export(desc(), echo{}, storks.WithWeight(-1)) }, []string{"WithWeight: weight -1 must not be negative"}},
		{"export: negative delay", func() error { return export(desc(), echo{}, storks.WithDelay(-time.Second)) }, []string{"WithDelay: delay -1s must not be negative"}},
		{"export: empty metadata key", func() error { return export(desc(), echo{}, storks.WithMetadata(map[string]string{"": "x"})) }, []string{"WithMetadata: a key is empty"}},
		{"export: nil option", func() error { return export(desc(), echo{}, nil) }, []string{"Export: option 0 is nil"}},
		{"export: method without a name", func() error {
			d := desc()
			d.Methods[0].Name = ""
			return export(d, echo{})
		}, []string{"method 0", "needs a name"}},
		{"export: method without a handler", func() error {
			d := desc()
			d.Methods[0].Handler = nil
			return export(d, echo{})
		}, []string{`method 0 ("Echo")`, "a handler"}},
		{"export: method listed twice", func() error {
			d := desc()
			d.Methods = append(d.Methods, d.Methods[0])
			return export(d, echo{})
		}, []string{"method Echo is listed twice"}},
		{"export: duplicate export", func() error {
			srv := storks.NewServer()
			defer srv.Close()
			if _, err := srv.Export(desc(), echo{}); err != nil {
				return fmt.Errorf("first export: %w", err)
			}
			_, err := srv.Export(desc(), echo{})
			return err
		}, []string{"service key is already exported"}},
		{"export: after Close", func() error {
			srv := storks.NewServer()
			srv.Close()
			_, err := srv.Export(desc(), echo{})
			return err
		}, []string{"server is shut down"}},

		// Serve and server options.
		{"server: advertised port 0", func() error { return serveWith(e, storks.WithAdvertiseAddr("127.0.0.1:0")) }, []string{"WithAdvertiseAddr", "port must be 1-65535"}},
		{"server: advertised address without port", func() error { return serveWith(e, storks.WithAdvertiseAddr("127.0.0.1")) }, []string{"WithAdvertiseAddr", "is not host:port"}},
		{"server: empty advertised address", func() error { return serveWith(e, storks.WithAdvertiseAddr("")) }, []string{"WithAdvertiseAddr", "is not host:port"}},
		{"server: advertised address 0.0.0.0", func() error { return serveWith(e, storks.WithAdvertiseAddr("0.0.0.0:7000")) }, []string{"WithAdvertiseAddr", "unspecified host"}},
		{"serve: listener on port 0", func() error {
			return e.serve(storks.NewServer(), fixedAddrListener{e.listen(), "127.0.0.1:0"})
		}, []string{"listener address", "has port 0; set WithAdvertiseAddr"}},
		{"serve: nil listener", func() error { return storks.NewServer().Serve(nil) }, []string{"listener is nil"}},
		{"serve: after Close", func() error {
			srv := storks.NewServer()
			srv.Close()
			return srv.Serve(e.listen())
		}, []string{"server is shut down"}},
		{"server: negative max message size", func() error { return serveWith(e, storks.WithMaxMessageSize(-1)) }, []string{"WithMaxMessageSize", "-1 must not be negative"}},
		{"server: negative frame timeout", func() error { return serveWith(e, storks.WithFrameTimeout(-time.Second)) }, []string{"WithFrameTimeout", "must not be negative"}},
		{"server: negative idle timeout", func() error { return serveWith(e, storks.WithIdleTimeout(-time.Minute)) }, []string{"WithIdleTimeout", "must not be negative"}},
		{"server: negative request cap", func() error { return serveWith(e, storks.WithMaxConcurrentRequests(-1)) }, []string{"WithMaxConcurrentRequests", "must not be negative"}},
		{"server: negative shutdown wait", func() error { return serveWith(e, storks.WithShutdownWait(-time.Second)) }, []string{"WithShutdownWait", "must not be negative"}},
		{"server: nil codec", func() error { return serveWith(e, storks.WithCodec(nil)) }, []string{"WithCodec: codec is nil"}},
		{"server: nil interceptor, export", func() error {
			srv := storks.NewServer(storks.WithServerInterceptor(nil))
			defer srv.Close()
			_, err := srv.Export(desc(), echo{})
			return err
		}, []string{"WithServerInterceptor: interceptor 0 is nil"}},
		{"server: nil TLS config", func() error { return serveWith(e, storks.WithTLSConfig(nil)) }, []string{"WithTLSConfig", "nil"}},
		{"server: TLS config without a certificate", func() error { return serveWith(e, storks.WithTLSConfig(&tls.Config{})) }, []string{"WithTLSConfig", "no certificate"}},
		{"server: TLS MinVersion above MaxVersion", func() error {
			return serveWith(e, storks.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}))
		}, []string{"WithTLSConfig: MinVersion TLS 1.3 is above MaxVersion TLS 1.2"}},
		{"server: nil option", func() error { return serveWith(e, nil) }, []string{"NewServer: option 0 is nil"}},
		{"server: nil logger", func() error { return serveWith(e, storks.WithLogger(nil)) }, []string{"WithLogger: logger is nil"}},
		{"server: nil registry", func() error { return serveWith(e, storks.WithRegistry(nil)) }, []string{"WithRegistry: registry is nil"}},
		{"server: registry of a failed Open", func() error { return serveWith(e, storks.WithRegistry(failedOpen())) }, []string{"WithRegistry: registry is nil"}},
		{"server: typed nil registry", func() error { return serveWith(e, storks.WithRegistry((*registry.Inproc)(nil))) }, []string{"WithRegistry: registry is nil"}},
		{"server: nil interceptor, serve", func() error { return serveWith(e, storks.WithServerInterceptor(nil)) }, []string{"WithServerInterceptor: interceptor 0 is nil"}},

		// Client options: NewClient returns the error.
		{"client: nil option", func() error { return newClient(nil) }, []string{"NewClient: option 0 is nil"}},
		{"client: nil codec", func() error { return newClient(storks.WithCodec(nil)) }, []string{"WithCodec: codec is nil"}},
		{"client: nil logger", func() error { return newClient(storks.WithLogger(nil)) }, []string{"WithLogger: logger is nil"}},
		{"client: nil registry", func() error { return newClient(storks.WithRegistry(nil)) }, []string{"WithRegistry: registry is nil"}},
		{"client: registry of a failed Open", func() error { return newClient(storks.WithRegistry(failedOpen())) }, []string{"WithRegistry: registry is nil"}},
		{"client: nil interceptor", func() error {
			ok := func(ctx context.Context, m string, req, reply any, inv storks.UnaryInvoker) error {
				return inv(ctx, m, req, reply)
			}
			return newClient(storks.WithClientInterceptor(ok, ok, nil))
		}, []string{"WithClientInterceptor: interceptor 2 is nil"}},
		{"client: negative dial timeout", func() error { return newClient(storks.WithDialTimeout(-time.Second)) }, []string{"WithDialTimeout: must be positive (got -1s)"}},
		{"client: zero dial timeout", func() error { return newClient(storks.WithDialTimeout(0)) }, []string{"WithDialTimeout: must be positive (got 0s)"}},
		{"client: negative max message size", func() error { return newClient(storks.WithMaxMessageSize(-1)) }, []string{"WithMaxMessageSize", "-1 must not be negative"}},
		{"client: TLS MinVersion above MaxVersion", func() error {
			return newClient(storks.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}))
		}, []string{"WithTLSConfig: MinVersion TLS 1.3 is above MaxVersion TLS 1.2"}},
		{"client: negative ejection backoff", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{BaseBackoff: -time.Second}))
		}, []string{"WithEjection: BaseBackoff -1s must not be negative"}},
		{"client: negative ejection max backoff", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{MaxBackoff: -time.Second}))
		}, []string{"WithEjection: MaxBackoff -1s must not be negative"}},
		{"client: negative probe timeout", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{ProbeTimeout: -time.Second}))
		}, []string{"WithEjection: ProbeTimeout -1s must not be negative"}},
		{"client: ejection max backoff under base", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{BaseBackoff: time.Second, MaxBackoff: time.Millisecond}))
		}, []string{"WithEjection: MaxBackoff 1ms is shorter than BaseBackoff 1s"}},
		{"client: ejected percent over 100", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{MaxEjectedPercent: 150}))
		}, []string{"WithEjection: MaxEjectedPercent 150 must be 0-100"}},
		{"client: negative ejected percent", func() error {
			return newClient(storks.WithEjection(storks.EjectionPolicy{MaxEjectedPercent: -1}))
		}, []string{"WithEjection: MaxEjectedPercent -1 must be 0-100"}},
		{"client: nil observer", func() error { return newClient(storks.WithObserver(nil)) }, []string{"WithObserver: observer is nil"}},
		{"client: negative default timeout", func() error { return newClient(storks.WithDefaultTimeout(-time.Second)) }, []string{"WithDefaultTimeout", "-1s must not be negative"}},
		{"client: negative Failover", func() error { return newClient(storks.Failover(-1)) }, []string{"Failover: retries -1 must not be negative"}},
		{"client: negative Failtry", func() error { return newClient(storks.Failtry(-1)) }, []string{"Failtry: retries -1 must not be negative"}},
		{"client: zero Failbackup delay", func() error { return newClient(storks.Failbackup(0)) }, []string{"Failbackup: delay must be positive (got 0s)"}},
		{"client: negative Failbackup delay", func() error { return newClient(storks.Failbackup(-time.Second)) }, []string{"Failbackup: delay must be positive (got -1s)"}},

		// Refer and calls.
		{"refer: empty service", func() error {
			cli, err := storks.NewClient(storks.WithRegistry(reg))
			if err != nil {
				return fmt.Errorf("NewClient: %w", err)
			}
			defer cli.Close()
			_, err = cli.Refer(context.Background(), "")
			return err
		}, []string{"service must not be empty"}},
		{"refer: bad version", func() error { _, _, err := e.refer(nil, storks.WithVersion("a b")); return err }, []string{"WithVersion", "version", "contains ' '"}},
		{"refer: no registry", func() error {
			cli, err := storks.NewClient()
			if err != nil {
				return fmt.Errorf("NewClient: %w", err)
			}
			defer cli.Close()
			_, err = cli.Refer(context.Background(), service)
			return err
		}, []string{"no registry; pass WithRegistry"}},
		{"refer: nil registry", func() error { _, _, err := e.refer(nil, storks.WithRegistry(nil)); return err }, []string{"WithRegistry: registry is nil"}},
		{"refer: nil option", func() error { _, _, err := e.refer(nil, nil); return err }, []string{"Refer: option 1 is nil"}},
		{"refer: nil balancer", func() error { _, _, err := e.refer(nil, storks.WithBalancer(nil)); return err }, []string{"WithBalancer: balancer factory is nil"}},
		{"refer: empty idempotent method", func() error { _, _, err := e.refer(nil, storks.WithIdempotentMethods("")); return err }, []string{"WithIdempotentMethods: method 0 is empty"}},
		{"refer: idempotent method with a slash", func() error {
			_, _, err := e.refer(nil, storks.WithIdempotentMethods("badinput.Echo/Echo"))
			return err
		}, []string{"WithIdempotentMethods", `"badinput.Echo/Echo" is neither`}},
		{"refer: idempotent method of another service", func() error {
			_, _, err := e.refer(nil, storks.WithIdempotentMethods("/other.Svc/Echo"))
			return err
		}, []string{"WithIdempotentMethods", `"/other.Svc/Echo" is not a method of badinput.Echo`}},
		{"refer: negative default timeout", func() error { _, _, err := e.refer(nil, storks.WithDefaultTimeout(-1)); return err }, []string{"WithDefaultTimeout", "must not be negative"}},
		{"refer: negative Failover", func() error { _, _, err := e.refer(nil, storks.Failover(-2)); return err }, []string{"Failover: retries -2 must not be negative"}},
		{"refer: zero Failbackup delay", func() error { _, _, err := e.refer(nil, storks.Failbackup(0)); return err }, []string{"Failbackup: delay must be positive"}},
		{"call: nil option", func() error { return e.callWith(nil) }, []string{"Invoke: call option 0 is nil"}},
		{"call: empty metadata key", func() error { return e.callWith(storks.WithCallMetadata(storks.Metadata{"": "v"})) }, []string{"WithCallMetadata: a key is empty"}},
		{"call: too much metadata", func() error {
			md := make(storks.Metadata, 2000)
			for i := range 2000 {
				md[fmt.Sprint("k", i)] = "v"
			}
			return e.callWith(storks.WithCallMetadata(md))
		}, []string{"WithCallMetadata: 2000 pairs are more than a request may carry (1024)"}},
		{"call: zero Failbackup delay", func() error { return e.callWith(storks.Failbackup(0)) }, []string{"Failbackup: delay must be positive (got 0s)"}},
		{"call: negative Failover", func() error { return e.callWith(storks.Failover(-1)) }, []string{"Failover: retries -1 must not be negative"}},
		{"refer: after Close", func() error {
			cli, err := storks.NewClient(storks.WithRegistry(reg))
			if err != nil {
				return fmt.Errorf("NewClient: %w", err)
			}
			cli.Close()
			_, err = cli.Refer(context.Background(), service)
			return err
		}, []string{"client is closed"}},
		{"call: after the client's Close", func() error {
			cli, ref, err := e.refer(nil)
			if err != nil {
				return fmt.Errorf("refer: %w", err)
			}
			cli.Close()
			return invoke(ref, "/"+service+"/Echo")
		}, []string{"closed"}},
		{"call: after the reference's Close", func() error {
			_, ref, err := e.refer(nil)
			if err != nil {
				return fmt.Errorf("refer: %w", err)
			}
			ref.Close()
			return invoke(ref, "/"+service+"/Echo")
		}, []string{"reference is closed"}},
		{"call: method of another service", func() error {
			_, ref, err := e.refer(nil)
			if err != nil {
				return fmt.Errorf("refer: %w", err)
			}
			return invoke(ref, "/other.Svc/Echo")
		}, []string{`method "/other.Svc/Echo" does not belong to service badinput.Echo`}},
		{"call: unknown method", func() error {
			_, ref, err := e.refer(nil)
			if err != nil {
				return fmt.Errorf("refer: %w", err)
			}
			return invoke(ref, "/"+service+"/Nope")
		}, []string{"unknown method Nope"}},
		{"call: balancer picks nothing", func() error { return e.call(nil, storks.WithBalancer(bad(nil))) }, []string{"balancer picked no endpoint of the 1 providers of badinput.Echo"}},
		{"call: balancer fails", func() error {
			return e.call(nil, storks.WithBalancer(bad(storks.Errorf(storks.CodeResourceExhausted, "quota spent"))))
		}, []string{"quota spent"}},
		{"client: nil TLS config", func() error { return e.call([]storks.ClientOption{storks.WithTLSConfig(nil)}) }, []string{"WithTLSConfig: the *tls.Config is nil"}},

		// Registries: instances and URLs of every scheme.
		{"register: empty instance ID", func() error { return register(inst(func(in *registry.Instance) { in.ID = "" })) }, []string{"instance ID must not be empty"}},
		{"register: port 0", func() error { return register(inst(func(in *registry.Instance) { in.Addr = "127.0.0.1:0" })) }, []string{"address", "port must be 1-65535"}},
		{"register: negative weight", func() error { return register(inst(func(in *registry.Instance) { in.Weight = -3 })) }, []string{"weight", "must not be negative"}},
		{"register: empty service", func() error { return register(inst(func(in *registry.Instance) { in.Key.Service = "" })) }, []string{"service must not be empty"}},
		{"watch: empty service", func() error { _, err := reg.Watch(context.Background(), registry.ServiceKey{}); return err }, []string{"service must not be empty"}},
		{"registry URL: empty", func() error { return openURL("") }, []string{"URL is empty"}},
		{"registry URL: unknown scheme", func() error { return openURL("nope://127.0.0.1:1") }, []string{`URL scheme "nope" is not registered`}},
		{"registry URL: host:port without scheme", func() error { return openURL("127.0.0.1:2379") }, []string{"URL scheme", "is missing"}},
		{"registry URL: direct without host", func() error { return openURL("direct://") }, []string{"URL host is missing"}},
		{"registry URL: direct without port", func() error { return openURL("direct://127.0.0.1") }, []string{"URL port is missing"}},
		{"registry URL: direct port 0", func() error { return openURL("direct://127.0.0.1:0") }, []string{`URL port "0"`}},
		{"registry URL: direct port 99999", func() error { return openURL("direct://127.0.0.1:99999") }, []string{`URL port "99999"`}},
		{"registry URL: direct negative weight", func() error { return openURL("direct://127.0.0.1:1?weight=-1") }, []string{"URL query parameter weight", "non-negative"}},
		{"registry URL: static empty entry", func() error { return openURL("static://127.0.0.1:1,,127.0.0.1:2") }, []string{"URL host list", "empty entry"}},
		{"registry URL: inproc bad name", func() error { return openURL("inproc://bad name") }, []string{"URL host", "not a valid inproc registry name"}},
		{"registry URL: etcd without host", func() error { return openURL("etcd://") }, []string{"URL host is missing"}},
		{"registry URL: etcd port 0", func() error { return openURL("etcd://127.0.0.1:0/storks") }, []string{`URL port "0"`}},
		{"registry URL: etcd negative TTL", func() error { return openURL("etcd://127.0.0.1:2379/storks?ttl=-5s") }, []string{"URL query parameter ttl", `"-5s"`}},
		{"registry URL: etcd zero dial timeout", func() error { return openURL("etcd://127.0.0.1:2379/storks?dial-timeout=0s") }, []string{"URL query parameter dial-timeout", "must be positive"}},
		{"registry URL: etcd unknown parameter", func() error { return openURL("etcd://127.0.0.1:2379/storks?bogus=1") }, []string{`URL query parameter "bogus"`}},
		{"registry URL: etcd bad escape", func() error { return openURL("etcd://%zz") }, []string{"URL is malformed"}},
		{"registry URL: consul negative TTL", func() error { return openURL("consul://127.0.0.1:8500?ttl=-1s") }, []string{`URL query parameter "ttl"`, `"-1s"`}},
		{"registry URL: consul negative deregister-after", func() error { return openURL("consul://127.0.0.1:8500?deregister-after=-1m") }, []string{`"deregister-after"`}},
		{"registry URL: consul path", func() error { return openURL("consul://127.0.0.1:8500/path") }, []string{"URL path"}},
		{"registry URL: consul port 0", func() error { return openURL("consul://127.0.0.1:0") }, []string{`URL port "0"`}},
		{"registry URL: zookeeper without host", func() error { return openURL("zookeeper://") }, []string{"URL host is missing"}},
		{"registry URL: zookeeper negative session timeout", func() error { return openURL("zookeeper://127.0.0.1:2181/storks?session-timeout=-1s") }, []string{"URL query parameter session-timeout", `"-1s"`}},
		{"registry URL: zookeeper reserved path", func() error { return openURL("zookeeper://127.0.0.1:2181/zookeeper") }, []string{"URL path", "reserves"}},
		{"registry URL: zookeeper port 99999", func() error { return openURL("zookeeper://127.0.0.1:99999/storks") }, []string{"URL host", "bad port"}},

		// Authentication interceptors.
		{"auth: server without tokens", func() error { _, err := auth.NewServerInterceptor(); return err }, []string{"no tokens and no verifier"}},
		{"auth: empty server token", func() error { _, err := auth.NewServerInterceptor(auth.WithTokens("")); return err }, []string{"WithTokens: a token is empty"}},
		{"auth: empty client token", func() error { _, err := auth.NewClientInterceptor(""); return err }, []string{"token is empty"}},
		{"auth: nil token source", func() error { _, err := auth.NewClientInterceptorFunc(nil); return err }, []string{"token source is nil"}},
	}
	rejected := 0
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
			if c.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error naming %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
			rejected++
		})
	}
	t.Logf("%d bad inputs rejected with an error naming the field, none panicked", rejected)
}
