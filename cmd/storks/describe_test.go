package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// describeProtoDir holds the files of TestDescribeProto, from the module
// root, where the binary runs.
const describeProtoDir = "cmd/storks/testdata"

// describe reads a server's reflection: its services, one in proto syntax,
// a method with its messages, a message, whatever the files of those
// import; with v1 or, from an older server, v1alpha.
func TestDescribeReflection(t *testing.T) {
	addr := startGRPCServer(t, reflectV1)
	alpha := startGRPCServer(t, reflectV1alpha)

	t.Run("services", func(t *testing.T) {
		want := strings.ReplaceAll(gRPCServices(reflectV1), ", ", "\n") + "\n"
		checkStdout(t, runStorks(t, "describe", "--addr", addr), want)
		want = strings.ReplaceAll(gRPCServices(reflectV1alpha), ", ", "\n") + "\n"
		checkStdout(t, runStorks(t, "describe", "--addr", alpha), want)
	})

	echo := `// storks.examples.echo.v1.Echo in echo/v1/echo.proto
service Echo {
  rpc Echo(storks.examples.common.v1.Text) returns (storks.examples.common.v1.Text);
  rpc Now(google.protobuf.Empty) returns (google.protobuf.Timestamp) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  rpc Stamp(storks.examples.common.v1.Text) returns (storks.examples.common.v1.Stamped);
  rpc Count(CountRequest) returns (stream storks.examples.common.v1.Text);
  rpc Collect(stream storks.examples.common.v1.Text) returns (storks.examples.common.v1.Text);
  rpc Chat(stream storks.examples.common.v1.Text) returns (stream storks.examples.common.v1.Text);
}
`
	t.Run("service", func(t *testing.T) {
		checkStdout(t, runStorks(t, "describe", "--addr", addr, echoService), echo)
		checkStdout(t, runStorks(t, "describe", "--addr", alpha, "."+echoService), echo)
	})

	t.Run("method", func(t *testing.T) {
		want := `// storks.examples.echo.v1.Echo.Now in echo/v1/echo.proto
rpc Now(google.protobuf.Empty) returns (google.protobuf.Timestamp) {
  option idempotency_level = NO_SIDE_EFFECTS;
}

// google.protobuf.Empty in google/protobuf/empty.proto
message Empty {}

// google.protobuf.Timestamp in google/protobuf/timestamp.proto
message Timestamp {
  int64 seconds = 1;
  int32 nanos = 2;
}
`
		checkStdout(t, runStorks(t, "describe", "--addr", addr, echoService+"/Now"), want)
		checkStdout(t, runStorks(t, "describe", "--addr", addr, "/"+echoService+"/Now"), want)
		checkStdout(t, runStorks(t, "describe", "--addr", addr, echoService+".Now"), want)

		// A method whose request and response are one message prints it
		// once.
		want = `// storks.examples.echo.v1.Echo.Chat in echo/v1/echo.proto
rpc Chat(stream storks.examples.common.v1.Text) returns (stream storks.examples.common.v1.Text);

// storks.examples.common.v1.Text in common/v1/common.proto
message Text {
  string body = 1;
}
`
		checkStdout(t, runStorks(t, "describe", "--addr", alpha, echoService+"/Chat"), want)
	})

	t.Run("message", func(t *testing.T) {
		// Of a file that echo.proto imports, and that imports another.
		want := `// storks.examples.common.v1.Stamped in common/v1/common.proto
message Stamped {
  Text text = 1;
  string provider = 2;
  google.protobuf.Timestamp time = 3;
}
`
		checkStdout(t, runStorks(t, "describe", "--addr", addr, "storks.examples.common.v1.Stamped"), want)
	})

	t.Run("field", func(t *testing.T) {
		want := `// storks.examples.greeter.v1.HelloRequest in greeter/v1/greeter.proto
message HelloRequest {
  string name = 1;
}
`
		checkStdout(t, runStorks(t, "describe", "--addr", addr, "storks.examples.greeter.v1.HelloRequest.name"), want)
	})
}

// describe with --proto prints what the files declare, comments included,
// and needs no server.
func TestDescribeProto(t *testing.T) {
	things := []string{"describe", "-I", describeProtoDir, "--proto", "describe/v1/things.proto"}
	args := func(more ...string) []string { return append(things[:len(things):len(things)], more...) }

	checkStdout(t, runStorks(t, args()...), "storks.test.describe.v1.Things\n")

	t.Run("service", func(t *testing.T) {
		want := `// storks.test.describe.v1.Things in describe/v1/things.proto
// Things keeps things.
service Things {
  option deprecated = true;

  // Get returns one thing.
  rpc Get(GetRequest) returns (Thing) {
    option idempotency_level = NO_SIDE_EFFECTS;
  }
  rpc Watch(GetRequest) returns (stream Thing); // Watch follows a thing.
  rpc Put(stream Thing) returns (Empty);
  rpc Sync(stream Thing) returns (stream Thing) {
    option deprecated = true;
  }
}
`
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Things")...), want)
	})

	thing := `// storks.test.describe.v1.Thing in describe/v1/things.proto
// A Thing is a thing.
message Thing {
  reserved 4, 8 to 10, 100 to max;
  reserved "old", "older";

  // Its ID.
  string id = 1;
  optional int32 size = 2;
  repeated string tags = 3 [deprecated = true];
  map<string, Part> parts = 5;
  google.protobuf.Timestamp created = 6;
  Kind kind = 7;

  // Not a Thing.Part, which its name would mean here.
  storks.test.describe.v1.Part loose = 13;

  // Where it is.
  oneof place {
    string shelf = 11;
    Part.Box box = 12;
  }

  // A Part of a thing.
  message Part {
    string name = 1;

    message Box {
      int32 n = 1;
    }
  }

  enum Kind {
    option allow_alias = true;
    reserved 5, 10 to max;
    reserved "GONE";

    KIND_UNSPECIFIED = 0;
    KIND_BIG = 1;
    KIND_LARGE = 1 [deprecated = true];
  }
}
`
	t.Run("message", func(t *testing.T) {
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Thing")...), thing)
		// A oneof is shown by its message.
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Thing.place")...), thing)
	})

	t.Run("method", func(t *testing.T) {
		want := `// storks.test.describe.v1.Things.Sync in describe/v1/things.proto
rpc Sync(stream Thing) returns (stream Thing) {
  option deprecated = true;
}

` + thing
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Things/Sync")...), want)
	})

	t.Run("enum", func(t *testing.T) {
		want := `// storks.test.describe.v1.Thing.Kind in describe/v1/things.proto
enum Kind {
  option allow_alias = true;
  reserved 5, 10 to max;
  reserved "GONE";

  KIND_UNSPECIFIED = 0;
  KIND_BIG = 1;
  KIND_LARGE = 1 [deprecated = true];
}
`
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Thing.Kind")...), want)
		checkStdout(t, runStorks(t, args("storks.test.describe.v1.Thing.KIND_BIG")...), want)
	})

	t.Run("proto2", func(t *testing.T) {
		legacy := []string{"describe", "-I", describeProtoDir, "--proto", "describe/v1/legacy.proto"}
		// A file without services lists none.
		checkStdout(t, runStorks(t, legacy...), "")
		want := `// storks.test.describe.v1.Legacy in describe/v1/legacy.proto
message Legacy {
  extensions 100 to 199, 1000 to max;

  required string name = 1;
  optional int32 count = 2 [default = -3];
  optional string text = 3 [default = "a \"b\""];
  optional double ratio = 4 [default = inf];
  optional Color color = 5 [default = GREEN];
  repeated int64 ids = 6 [packed = true];

  enum Color {
    RED = 0;
    GREEN = 1;
  }
}
`
		checkStdout(t, runStorks(t, append(legacy, "storks.test.describe.v1.Legacy")...), want)
		want = `// storks.test.describe.v1.note in describe/v1/legacy.proto
extend Legacy {
  optional string note = 100;
}
`
		checkStdout(t, runStorks(t, append(legacy, "storks.test.describe.v1.note")...), want)
	})
}

// With --registry, describe reads the reflection of the first provider
// listed for the service of the symbol.
func TestDescribeRegistry(t *testing.T) {
	addr := startGRPCServer(t, reflectV1)
	u, reg := newInproc(t)
	mustRegister(t, reg,
		inst(greeterService, "v1", "", "g1", addr, nil),
		inst(greeterService, "v1", "", "g2", closedAddr(t), nil),
	)
	ctx := context.Background()
	want := `// storks.examples.greeter.v1.Greeter.Fail in greeter/v1/greeter.proto
rpc Fail(FailRequest) returns (FailReply);

// storks.examples.greeter.v1.FailRequest in greeter/v1/greeter.proto
message FailRequest {
  uint32 code = 1;
  string message = 2;
}

// storks.examples.greeter.v1.FailReply in greeter/v1/greeter.proto
message FailReply {}
`
	checkStdout(t, runInProcess(ctx, "describe", "--registry", u, "--version", "v1", greeterService+"/Fail"), want)
	r := runInProcess(ctx, "describe", "--registry", u, "--version", "v1", greeterService)
	mustSucceed(t, r)
	if !strings.HasPrefix(r.stdout, "// "+greeterService+" in greeter/v1/greeter.proto\nservice Greeter {\n") {
		t.Errorf("stdout:\n%s", r.stdout)
	}

	r = runInProcess(ctx, "describe", "--registry", u, greeterService+"/Fail")
	checkOneLineError(t, r, 1, "storks: the registry has no provider for "+greeterService+".Fail or "+greeterService+
		" to read gRPC reflection from (name a service or one of its methods; see storks registry ls)\n")
}

// Every way describe can fail says what was wrong in one line.
func TestDescribeErrors(t *testing.T) {
	addr := startGRPCServer(t, reflectV1)
	none := startGRPCServer(t, reflectNone)
	closed := closedAddr(t)
	closing := startClosingServer(t)
	services := " (services: " + gRPCServices(reflectV1) + ")\n"

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nothing to describe", nil, 2, "nothing to describe: give --addr HOST:PORT, --registry URL (or set $STORKS_REGISTRY) or --proto FILE.proto"},
		{"registry and addr", []string{"--addr", addr, "--registry", "direct://" + addr}, 2, "give either --registry or --addr, not both"},
		{"proto and addr", []string{"--addr", addr, "--proto", greeterProto}, 2, "--proto describes the files, not a server"},
		{"registry without symbol", []string{"--registry", "direct://" + addr}, 2, "with --registry, name the SERVICE"},
		{"bad addr", []string{"--addr", "localhost"}, 2, `--addr: address "localhost" is not host:port`},
		{"bad symbol", []string{"--addr", addr, "a b"}, 2, `"a b" is not the full name of a service, method, message or enum`},
		{"two symbols", []string{"--addr", addr, "a.B", "c.D"}, 2, `unexpected argument "c.D": want at most one SYMBOL`},
		{"unknown symbol", []string{"--addr", addr, "nope.Nothing"}, 1, `storks: unknown symbol "nope.Nothing": ` + addr + " does not serve it" + services},
		{"unknown method", []string{"--addr", addr, greeterService + "/Nope"}, 1, `storks: unknown symbol "` + greeterService + `.Nope": ` + addr + " does not serve it" + services},
		{"short name", []string{"--addr", addr, "Greeter"}, 1, `storks: unknown symbol "Greeter" (did you mean ` + greeterService + "?)\n"},
		{"unknown symbol in files", []string{"-I", examplesProto, "--proto", greeterProto, "nope.X"}, 1,
			`storks: unknown symbol "nope.X": greeter/v1/greeter.proto does not declare it (services: ` + greeterService + ")\n"},
		{"no reflection", []string{"--addr", none}, 1,
			"storks: " + none + " answers gRPC but not its reflection (grpc.reflection.v1 and v1alpha are unimplemented); give --proto FILE.proto\n"},
		{"nothing listening", []string{"--addr", closed, echoService}, 1, "storks: " + closed + " does not answer gRPC reflection (Unavailable: "},
		{"not gRPC", []string{"--addr", closing}, 1, "storks: " + closing + " does not answer gRPC reflection (Unavailable: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkOneLineError(t, runStorks(t, append([]string{"describe"}, tc.args...)...), tc.code, tc.want)
		})
	}

	t.Run("silent server", func(t *testing.T) {
		silent := startSilentServer(t)
		start := time.Now()
		r := runStorks(t, "describe", "--addr", silent, "--timeout", "1s")
		checkOneLineError(t, r, 1, "storks: "+silent+" does not answer gRPC reflection (no answer within --timeout 1s); give --proto FILE.proto\n")
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("gave up after %v, want about 1s", d)
		}
	})
}

// describe lists the services of a Storks provider from its gRPC
// reflection.
func TestDescribeStorksProvider(t *testing.T) {
	p := startProvider(t, nil, "p1")
	r := runStorks(t, "describe", "--addr", p.addr)
	mustSucceed(t, r)
	for _, s := range []string{greeterService, echoService} {
		if !strings.Contains("\n"+r.stdout, "\n"+s+"\n") {
			t.Errorf("the services listed do not include %s:\n%s", s, r.stdout)
		}
	}
	want := `// storks.examples.greeter.v1.Greeter.SayHello in greeter/v1/greeter.proto
rpc SayHello(HelloRequest) returns (HelloReply) {
  option idempotency_level = NO_SIDE_EFFECTS;
}
`
	r = runStorks(t, "describe", "--addr", p.addr, sayHello)
	mustSucceed(t, r)
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("stdout:\n%s\nwant it to start with:\n%s", r.stdout, want)
	}
}
