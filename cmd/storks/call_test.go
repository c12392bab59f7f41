package main

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/examples/impl"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

const (
	greeterProto   = "greeter/v1/greeter.proto"
	sayHello       = "storks.examples.greeter.v1.Greeter/SayHello"
	greeterService = "storks.examples.greeter.v1.Greeter"
)

// provider is an example provider served in the test process.
type provider struct {
	addr string

	mu       sync.Mutex
	metadata []storks.Metadata // of every call, in order
}

func (p *provider) lastMetadata() storks.Metadata {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.metadata) == 0 {
		return nil
	}
	return p.metadata[len(p.metadata)-1]
}

// startProvider serves the example greeter (named name) and echo services
// on 127.0.0.1, registered in reg (nil: none) with the export options.
func startProvider(t *testing.T, reg registry.Registry, name string, opts ...storks.ExportOption) *provider {
	t.Helper()
	p := &provider{}
	sopts := []storks.ServerOption{
		storks.WithShutdownWait(0),
		storks.WithServerInterceptor(func(ctx context.Context, req any, info *storks.UnaryServerInfo, h storks.UnaryHandler) (any, error) {
			p.mu.Lock()
			p.metadata = append(p.metadata, maps.Clone(storks.FromIncomingContext(ctx)))
			p.mu.Unlock()
			return h(ctx, req)
		}),
	}
	if reg != nil {
		sopts = append(sopts, storks.WithRegistry(reg))
	}
	srv := storks.NewServer(sopts...)
	if _, err := greeterv1.RegisterGreeterServer(srv, &impl.Greeter{Name: name}, opts...); err != nil {
		t.Fatal(err)
	}
	if _, err := echov1.RegisterEchoServer(srv, &impl.Echo{Name: name}, opts...); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return p
}

// decodeJSON decodes the JSON a successful call printed.
func decodeJSON(t *testing.T, r result) map[string]any {
	t.Helper()
	mustSucceed(t, r)
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r)
	}
	return m
}

func TestCall(t *testing.T) {
	p := startProvider(t, nil, "p1")
	base := []string{"call", "--addr", p.addr, "-I", examplesProto, "--proto", greeterProto}

	t.Run("SayHello", func(t *testing.T) {
		r := runStorks(t, append(base, sayHello, `{"name":"x"}`)...)
		got := decodeJSON(t, r)
		want := map[string]any{"message": "Hello, x", "provider": "p1"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("reply %v, want %v", got, want)
		}
		// The reply is indented JSON, two spaces, ending in a newline.
		if r.stdout != "{\n  \"message\": \"Hello, x\",\n  \"provider\": \"p1\"\n}\n" {
			t.Errorf("output not formatted as expected:\n%s", r.stdout)
		}
	})

	t.Run("leading slash, metadata, stdin", func(t *testing.T) {
		args := append(base, "-H", "trace=abc", "-H", "tenant=a=b", "--timeout", "5s", "/"+sayHello, "-")
		got := decodeJSON(t, storksStdin(t, []byte(`{"name": "stdin"}`), args...))
		if got["message"] != "Hello, stdin" {
			t.Errorf("reply %v, want Hello, stdin", got)
		}
		md := p.lastMetadata()
		if md["trace"] != "abc" || md["tenant"] != "a=b" {
			t.Errorf("provider saw metadata %v, want trace=abc and tenant=a=b", md)
		}
	})

	t.Run("no JSON means {}", func(t *testing.T) {
		r := runStorks(t, append(base, sayHello)...)
		// The greeter requires a name.
		checkOneLineError(t, r, 1, "storks: call failed: InvalidArgument: name is required")
	})

	t.Run("emit defaults", func(t *testing.T) {
		r := runStorks(t, append(base, "--emit-defaults", "storks.examples.greeter.v1.Greeter/SayHello", `{"name":"x"}`)...)
		if got := decodeJSON(t, r); got["provider"] != "p1" {
			t.Errorf("reply %v", got)
		}
	})

	t.Run("error code and message", func(t *testing.T) {
		r := runStorks(t, append(base, "storks.examples.greeter.v1.Greeter/Fail", `{"code": 5, "message": "no user \"bob\""}`)...)
		checkOneLineError(t, r, 1, "storks: call failed: NotFound: no user \"bob\"\n")
	})

	t.Run("well-known types", func(t *testing.T) {
		r := runStorks(t, "call", "--addr", p.addr, "-I", examplesProto, "--proto", "echo/v1/echo.proto",
			"storks.examples.echo.v1.Echo/Stamp", `{"body": "hi"}`)
		got := decodeJSON(t, r)
		if got["provider"] != "p1" || !reflect.DeepEqual(got["text"], map[string]any{"body": "hi"}) {
			t.Errorf("reply %v", got)
		}
		if s, ok := got["time"].(string); !ok || len(s) < 20 {
			t.Errorf("time %v is not an RFC 3339 timestamp", got["time"])
		}
	})

	t.Run("static registry", func(t *testing.T) {
		r := runStorks(t, "call", "--registry", "static://"+p.addr+",127.0.0.1:1", "--selector", "random",
			"-I", examplesProto, "--proto", greeterProto, sayHello, `{"name":"y"}`)
		// One of the two addresses refuses connections: either answer is
		// fine, but a reply must be the provider's.
		if r.code == 0 {
			if got := decodeJSON(t, r); got["message"] != "Hello, y" {
				t.Errorf("reply %v", got)
			}
		} else {
			checkOneLineError(t, r, 1, "call failed: Unavailable: ")
		}
	})

	t.Run("registry from environment", func(t *testing.T) {
		cmd := storksCmd(context.Background(), append([]string{"call", "-I", examplesProto, "--proto", greeterProto}, sayHello, `{"name":"env"}`)...)
		cmd.Env = append(cmd.Env, "STORKS_REGISTRY=direct://"+p.addr)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil || got["message"] != "Hello, env" {
			t.Errorf("reply %s (%v)", out, err)
		}
	})

	t.Run("wrong version", func(t *testing.T) {
		r := runStorks(t, append(base, "--version", "v9", sayHello, `{"name":"x"}`)...)
		checkOneLineError(t, r, 1, "call failed: Unimplemented: ")
	})
}

// A call for a version or group that no provider has says which exist and
// which flags name them: a provider called by address lists what it
// exports, a registry what it has.
func TestCallNamesTheVersionsThatExist(t *testing.T) {
	p := startProvider(t, nil, "p1", storks.WithVersion("v1"))
	r := runStorks(t, "call", "--addr", p.addr, "-I", examplesProto, "--proto", greeterProto, sayHello, `{"name":"x"}`)
	checkOneLineError(t, r, 1, "storks: call failed: Unimplemented: service "+greeterService+" (no version) is not exported by "+
		p.addr+"; it exports "+greeterService+":v1; pass --version v1\n")

	u, reg := newInproc(t)
	mustRegister(t, reg,
		inst(greeterService, "v1", "", "g1", "10.0.0.1:1", nil),
		inst(greeterService, "v1", "", "g2", "10.0.0.2:1", nil),
		inst(greeterService, "v2", "blue", "g3", "10.0.0.3:1", nil),
		inst("storks.examples.echo.v1.Echo", "", "", "e1", "10.0.0.4:1", nil),
	)
	// In this process, whose working directory is not the module's.
	protos := filepath.Join(moduleRoot, examplesProto)
	r = runInProcess(context.Background(), "call", "--registry", u, "-I", protos, "--proto", greeterProto, sayHello, `{"name":"x"}`)
	checkOneLineError(t, r, 1, "storks: call failed: Unavailable: no provider for "+greeterService+` (version "", group ""); `+
		"the registry has "+greeterService+":v1 with 2 providers, blue/"+greeterService+":v2 with 1 provider; "+
		"pass --version v1, or --version v2 --group blue\n")

	r = runInProcess(context.Background(), "call", "--registry", u, "--version", "v2", "--group", "blue", "-I", protos,
		"--proto", "echo/v1/echo.proto", "storks.examples.echo.v1.Echo/Echo", `{}`)
	checkOneLineError(t, r, 1, "storks: call failed: Unavailable: no provider for blue/storks.examples.echo.v1.Echo:v2 "+
		`(version "v2", group "blue"); the registry has storks.examples.echo.v1.Echo with 1 provider; pass --version '' --group ''`+"\n")
}
