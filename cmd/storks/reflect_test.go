package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	// The descriptors of the example services, in protoregistry.GlobalFiles,
	// are what the gRPC test servers' reflection serves.
	_ "github.com/storks-rpc/storks/examples/gen/echo/v1"
	_ "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

const echoService = "storks.examples.echo.v1.Echo"

// checkStdout checks that r succeeded and printed want.
func checkStdout(t *testing.T, r result, want string) {
	t.Helper()
	mustSucceed(t, r)
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// reflectionMode is which reflection services a gRPC test server has.
type reflectionMode int

const (
	reflectV1      reflectionMode = iota // v1 and v1alpha, as reflection.Register
	reflectV1alpha                       // v1alpha only, as older servers
	reflectNone                          // none
)

// startGRPCServer serves, with plain grpc-go on 127.0.0.1, the example
// greeter and echo services (names only: their handlers are never called,
// and reflection describes them from protoregistry.GlobalFiles) and the
// standard health service, and returns its address.
func startGRPCServer(t *testing.T, mode reflectionMode) string {
	t.Helper()
	gs := grpc.NewServer()
	type anyServer interface{}
	for _, name := range []string{greeterService, echoService} {
		gs.RegisterService(&grpc.ServiceDesc{ServiceName: name, HandlerType: (*anyServer)(nil)}, struct{}{})
	}
	healthpb.RegisterHealthServer(gs, health.NewServer())
	switch mode {
	case reflectV1:
		reflection.Register(gs)
	case reflectV1alpha:
		rpbalpha.RegisterServerReflectionServer(gs, reflection.NewServer(reflection.ServerOptions{Services: gs}))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { gs.Serve(lis); close(done) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return lis.Addr().String()
}

// startSilentServer accepts connections on 127.0.0.1 and never says
// anything on them, until the test ends; it returns its address.
func startSilentServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { lis.Close(); <-done })
	return lis.Addr().String()
}

// startClosingServer accepts connections on 127.0.0.1 and closes them at
// once, as a server that does not speak gRPC may; it returns its address.
func startClosingServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { lis.Close(); <-done })
	return lis.Addr().String()
}

// gRPCServices is what the reflection of startGRPCServer lists.
func gRPCServices(mode reflectionMode) string {
	s := "grpc.health.v1.Health, "
	switch mode {
	case reflectV1:
		s += "grpc.reflection.v1.ServerReflection, grpc.reflection.v1alpha.ServerReflection, "
	case reflectV1alpha:
		s += "grpc.reflection.v1alpha.ServerReflection, "
	}
	return s + "storks.examples.echo.v1.Echo, " + greeterService
}

// Without --proto, call reads the method's messages from the target's
// gRPC reflection, and says clearly when it cannot. The call itself is
// made over Storks, which a plain gRPC server does not answer: these
// tests stop before it, at what reflection decides.
func TestCallReflectionErrors(t *testing.T) {
	addr := startGRPCServer(t, reflectV1)
	alpha := startGRPCServer(t, reflectV1alpha)
	none := startGRPCServer(t, reflectNone)
	closed := closedAddr(t)
	closing := startClosingServer(t)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown service", []string{"--addr", addr, "nope.Svc/M"},
			`storks: unknown service "nope.Svc": ` + addr + " does not serve it (services: " + gRPCServices(reflectV1) + ")\n"},
		{"short service name", []string{"--addr", addr, "Greeter/SayHello"},
			"storks: unknown service \"Greeter\" (did you mean " + greeterService + "?)\n"},
		{"unknown method", []string{"--addr", addr, greeterService + "/Nope"},
			`storks: service ` + greeterService + ` has no method "Nope" (it has SayHello, Fail)` + "\n"},
		// The request is checked against the reflected message.
		{"unknown JSON field", []string{"--addr", addr, sayHello, `{"nme":"x"}`},
			`storks: request JSON for storks.examples.greeter.v1.HelloRequest: (line 1:2): unknown field "nme"` + "\n"},
		{"v1alpha only, unknown JSON field", []string{"--addr", alpha, "storks.examples.echo.v1.Echo/Stamp", `{"bdy":"x"}`},
			`storks: request JSON for storks.examples.common.v1.Text: (line 1:2): unknown field "bdy"` + "\n"},
		{"no reflection", []string{"--addr", none, sayHello},
			"storks: " + none + " answers gRPC but not its reflection (grpc.reflection.v1 and v1alpha are unimplemented); give --proto FILE.proto\n"},
		{"nothing listening", []string{"--addr", closed, sayHello},
			"storks: " + closed + " does not answer gRPC reflection (Unavailable: "},
		{"not gRPC", []string{"--addr", closing, sayHello},
			"storks: " + closing + " does not answer gRPC reflection (Unavailable: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runStorks(t, append([]string{"call"}, tc.args...)...)
			checkOneLineError(t, r, 1, tc.want)
			if !strings.HasSuffix(r.stderr, "; give --proto FILE.proto\n") && strings.Contains(tc.want, "gRPC reflection") {
				t.Errorf("stderr does not end with the advice to give --proto:\n%s", r.stderr)
			}
		})
	}

	t.Run("silent server", func(t *testing.T) {
		silent := startSilentServer(t)
		start := time.Now()
		r := runStorks(t, "call", "--addr", silent, "--timeout", "1s", sayHello)
		checkOneLineError(t, r, 1, "storks: "+silent+" does not answer gRPC reflection (no answer within --timeout 1s); give --proto FILE.proto\n")
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("gave up after %v, want about 1s", d)
		}
	})
}

// With a registry, call reads the reflection of the first provider the
// registry lists for the key, and with none says which keys there are.
func TestCallReflectionRegistry(t *testing.T) {
	addr := startGRPCServer(t, reflectV1)
	u, reg := newInproc(t)
	mustRegister(t, reg,
		inst(greeterService, "v1", "", "g1", addr, nil),
		inst(greeterService, "v2", "blue", "g2", closedAddr(t), nil),
	)
	ctx := context.Background()
	r := runInProcess(ctx, "call", "--registry", u, "--version", "v1", sayHello, `{"nme":"x"}`)
	checkOneLineError(t, r, 1, `storks: request JSON for storks.examples.greeter.v1.HelloRequest: (line 1:2): unknown field "nme"`+"\n")

	r = runInProcess(ctx, "call", "--registry", u, sayHello, `{"name":"x"}`)
	checkOneLineError(t, r, 1, "storks: call failed: Unavailable: no provider for "+greeterService+
		" to read its gRPC reflection from; pass --version v1, or --version v2 --group blue\n")

	r = runInProcess(ctx, "call", "--registry", u, "storks.examples.echo.v1.Echo/Echo")
	checkOneLineError(t, r, 1, "storks: call failed: Unavailable: no provider for storks.examples.echo.v1.Echo"+
		" to read its gRPC reflection from (is a provider of storks.examples.echo.v1.Echo running? see storks registry ls storks.examples.echo.v1.Echo)\n")
}

// Without --proto, call reads the messages from the gRPC reflection of a
// Storks provider, and makes the call over Storks as with --proto: unary,
// well-known types, streams, metadata, version, by address or registry.
func TestCallWithoutProto(t *testing.T) {
	p := startProvider(t, nil, "p1")

	t.Run("unary", func(t *testing.T) {
		r := runStorks(t, "call", "--addr", p.addr, "-H", "trace=abc", sayHello, `{"name":"x"}`)
		checkStdout(t, r, "{\n  \"message\": \"Hello, x\",\n  \"provider\": \"p1\"\n}\n")
		if md := p.lastMetadata(); md["trace"] != "abc" {
			t.Errorf("provider saw metadata %v, want trace=abc", md)
		}
	})

	t.Run("error status", func(t *testing.T) {
		r := runStorks(t, "call", "--addr", p.addr, greeterService+"/Fail", `{"code": 5, "message": "gone"}`)
		checkOneLineError(t, r, 1, "storks: call failed: NotFound: gone\n")
	})

	t.Run("well-known types", func(t *testing.T) {
		got := decodeJSON(t, runStorks(t, "call", "--addr", p.addr, echoService+"/Stamp", `{"body": "hi"}`))
		if got["provider"] != "p1" || got["text"].(map[string]any)["body"] != "hi" {
			t.Errorf("reply %v", got)
		}
		if s, ok := got["time"].(string); !ok || len(s) < 20 {
			t.Errorf("time %v is not an RFC 3339 timestamp", got["time"])
		}
	})

	t.Run("server-streaming", func(t *testing.T) {
		r := runStorks(t, "call", "--addr", p.addr, echoService+"/Count", `{"text": "n", "times": 2}`)
		checkStdout(t, r, `{"body":"n 1"}`+"\n"+`{"body":"n 2"}`+"\n")
	})

	t.Run("client-streaming", func(t *testing.T) {
		r := storksStdin(t, []byte("{\"body\": \"a\"}\n{\"body\": \"b\"}\n"), "call", "--addr", p.addr, echoService+"/Collect")
		checkStdout(t, r, `{"body":"ab"}`+"\n")
	})

	t.Run("registry and version", func(t *testing.T) {
		u, reg := newInproc(t)
		startProvider(t, reg, "v1", storks.WithVersion("v1"))
		waitInstances(t, reg, registry.ServiceKey{Service: greeterService, Version: "v1"}, 1)
		got := decodeJSON(t, runInProcess(context.Background(), "call", "--registry", u, "--version", "v1", sayHello, `{"name":"r"}`))
		if got["message"] != "Hello, r" || got["provider"] != "v1" {
			t.Errorf("reply %v", got)
		}
	})
}
