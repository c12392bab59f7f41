package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// closedAddr returns a loopback address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestBadInput checks that every kind of bad input makes the binary exit
// non-zero with one line on stderr that says what was wrong.
func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	bad := filepath.Join(tmp, "bad.proto")
	src := "syntax = \"proto3\";\npackage bad;\nmessage M {\n  string x = 1;\n  int32 y = 1;\n}\n"
	if err := os.WriteFile(bad, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(tmp, "out")
	closed := closedAddr(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	call := []string{"call", "--addr", closed, "-I", examplesProto, "--proto", greeterProto}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		// Command lines.
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate" for "storks"`},
		{"misspelt command", []string{"generat"}, 2, `(did you mean "generate"?)`},
		{"unknown subcommand", []string{"registry", "lss"}, 2, `unknown command "lss" for "storks registry"`},
		{"unknown flag", []string{"generate", "--bogus", "x.proto"}, 2, `unknown flag: --bogus (see "storks generate --help")`},
		{"flag without value", []string{"call", "--timeout"}, 2, "flag needs an argument: --timeout"},
		{"bad duration", append(call, "--timeout", "soon", sayHello), 2, `invalid argument "soon" for "--timeout"`},
		{"extra argument", []string{"version", "now"}, 2, `unexpected argument "now": storks version takes none`},

		// generate.
		{"no files", []string{"generate", "--go_out=" + out}, 2, "no .proto files given"},
		{"no output", []string{"generate", "-I", examplesProto, greeterProto}, 2, "nothing to generate"},
		{"missing file", []string{"generate", "-I", examplesProto, "--go_out=" + out, "nosuch.proto"}, 1,
			"nosuch.proto: no such file"},
		{"missing import dir", []string{"generate", "-I", "nodir", "--go_out=" + out, "x.proto"}, 1,
			"import directory nodir does not exist"},
		{"file outside import dirs", []string{"generate", "-I", examplesProto, "--go_out=" + out, bad}, 1,
			"bad.proto is not inside any import directory"},
		{"compile error", []string{"generate", "-I", tmp, "--go_out=" + out, "bad.proto"}, 1,
			bad + ":5:13: message bad.M: fields x and y both have the same tag 1"},
		{"missing import", []string{"generate", "-I", tmp, "--go_out=" + out, writeProto(t, tmp, "imp.proto", "syntax = \"proto3\";\nimport \"nope/nope.proto\";\n")}, 1,
			`imp.proto:2:8: file "nope/nope.proto" not found in the import directories`},
		{"plugin option", []string{"generate", "-I", examplesProto, "--storks_out=" + out, "--storks_opt=bogus", greeterProto}, 1,
			"--storks_out: "},

		// call.
		{"no provider", []string{"call", "-I", examplesProto, "--proto", greeterProto, sayHello}, 2, "no provider to call"},
		{"registry and addr", []string{"call", "--addr", closed, "--registry", "direct://" + closed, "--proto", greeterProto, sayHello}, 2,
			"give either --registry or --addr, not both"},
		{"bad addr", []string{"call", "--addr", "localhost", "--proto", greeterProto, sayHello}, 2, `--addr: address "localhost" is not host:port`},
		{"no proto, nothing listening", []string{"call", "--addr", closed, sayHello}, 1,
			closed + " does not answer gRPC reflection (Unavailable: "},
		{"missing proto", []string{"call", "--addr", closed, "-I", examplesProto, "--proto", "nosuch.proto", sayHello}, 1,
			"nosuch.proto: no such file"},
		{"malformed method", append(call, "SayHello"), 2, `method "SayHello" is not package.Service/Method`},
		{"unknown service", append(call, "nope.Svc/M"), 1, `unknown service "nope.Svc": greeter/v1/greeter.proto does not declare it (services: storks.examples.greeter.v1.Greeter)`},
		{"short service name", append(call, "Greeter/SayHello"), 1, `(did you mean storks.examples.greeter.v1.Greeter?)`},
		{"unknown method", append(call, "storks.examples.greeter.v1.Greeter/Nope"), 1,
			`service storks.examples.greeter.v1.Greeter has no method "Nope" (it has SayHello, Fail)`},
		{"message, not service", append(call, "storks.examples.greeter.v1.HelloRequest/X"), 1, "storks.examples.greeter.v1.HelloRequest is not a service"},
		{"bad JSON", append(call, sayHello, `{"name":`), 1, "request JSON for storks.examples.greeter.v1.HelloRequest: unexpected EOF"},
		{"unknown JSON field", append(call, sayHello, `{"nme":"x"}`), 1, `request JSON for storks.examples.greeter.v1.HelloRequest: (line 1:2): unknown field "nme"`},
		{"wrong JSON type", append(call, sayHello, `{"name":1}`), 1, "request JSON for storks.examples.greeter.v1.HelloRequest: "},
		{"missing request file", append(call, sayHello, "@nosuch.json"), 1, "reading the request from nosuch.json: no such file or directory"},
		{"bad header", append(call, "-H", "novalue", sayHello), 2, `-H "novalue" is not key=value`},
		{"bad selector", append(call, "--selector", "best", sayHello), 2, `--selector "best" is not one of round-robin, random, least-loaded, weighted-round-robin or weighted-random`},
		{"bad version", append(call, "--version", "v 1", sayHello), 2, `registry: version "v 1" contains ' '`},
		{"unreachable provider", append(call, sayHello, `{"name":"x"}`), 1, "call failed: Unavailable: "},

		// Registries.
		// A bare host:port: the advice names the registry its port suggests
		// (the whole line, so nothing such as direct:// follows).
		{"host:port as registry", []string{"registry", "ls", "--registry", "127.0.0.1:2379"}, 1,
			"storks: registry: URL scheme is missing from \"127.0.0.1:2379\", which looks like the address of an etcd server; want etcd://127.0.0.1:2379/storks\n"},
		{"host:port as registry, watch", []string{"registry", "watch", "--registry", "localhost:8500", "a.B"}, 1,
			"which looks like the address of a Consul agent; want consul://localhost:8500\n"},
		{"unknown scheme", []string{"registry", "ls", "--registry", "foo://x", "a.B"}, 1, `URL scheme "foo" is not supported by this storks binary`},
		{"bad etcd URL", []string{"registry", "ls", "--registry", "etcd://127.0.0.1:2379/storks?ttl=soon", "a.B"}, 1, "ttl"},
		// An unreachable registry opens; what fails is the first call,
		// at once for ls, after --timeout for what waits for a list.
		{"unreachable registry", []string{"registry", "ls", "--registry", "etcd://" + closed + "/storks", "--timeout", "1s"}, 1,
			"etcd at " + closed + ": list services: cannot connect: dial tcp " + closed + ": connect: connection refused"},
		{"unreachable registry, call", []string{"call", "--registry", "etcd://" + closed + "/storks", "--timeout", "1s",
			"-I", examplesProto, "--proto", greeterProto, sayHello}, 1,
			"first discovery: context deadline exceeded (no list yet: registry: etcd at " + closed + ": watch storks.examples.greeter.v1.Greeter: cannot connect: dial tcp " + closed + ": connect: connection refused)"},
		{"unreachable registry, watch", []string{"registry", "watch", "--registry", "etcd://" + closed + "/storks", "--timeout", "1s", "a.B"}, 1,
			"etcd at " + closed + ": watch a.B: cannot connect: dial tcp " + closed + ": connect: connection refused) (no answer within --timeout 1s)"},
		{"no registry", []string{"registry", "ls"}, 2, "--registry is required"},
		{"cannot list", []string{"registry", "ls", "--registry", "direct://" + closed}, 1, "this registry cannot list its services"},
		{"bad output", []string{"registry", "ls", "--registry", "direct://" + closed, "-o", "yaml", "a.B"}, 2, `--output "yaml" is not table or json`},
		{"watch without service", []string{"registry", "watch", "--registry", "direct://" + closed}, 2, "missing the SERVICE to watch"},
		{"bad service name", []string{"registry", "watch", "--registry", "direct://" + closed, "a/B"}, 2, `registry: service "a/B" contains '/'`},

		// dev.
		{"dev port in use", []string{"dev", "--listen", busy.Addr().String()}, 1, "address already in use (is another etcd running?"},
		{"dev bad listen", []string{"dev", "--listen", "2379"}, 1, `listen address "2379" is not host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkOneLineError(t, runStorks(t, tc.args...), tc.code, tc.want)
		})
	}
}

// writeProto writes a .proto file into dir and returns its name.
func writeProto(t *testing.T, dir, name, src string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestCompileErrors checks that every error in the sources is reported, one
// line each, with file:line:col.
func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	writeProto(t, dir, "a.proto", "syntax = \"proto3\";\npackage a;\nmessage M {\n  string x = 1\n}\nmessage N {\n  int32 = 2;\n}\n")
	r := runStorks(t, "generate", "-I", dir, "--go_out="+t.TempDir(), "a.proto")
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) < 2 {
		t.Fatalf("want exit 1 and several errors, got %s", r)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "storks: "+filepath.Join(dir, "a.proto")+":") {
			t.Errorf("error line %q does not start with storks: FILE:", l)
		}
	}
}

// TestHelp checks that every command has --help with an example, printed
// on stdout with exit code 0.
func TestHelp(t *testing.T) {
	var paths [][]string
	var visit func(path []string, c *cobra.Command)
	visit = func(path []string, c *cobra.Command) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if !sub.Hidden {
				visit(append(append([]string{}, path...), sub.Name()), sub)
			}
		}
	}
	visit(nil, newRootCmd())
	if len(paths) < 10 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		t.Run(strings.Join(append([]string{"storks"}, p...), " "), func(t *testing.T) {
			r := runStorks(t, append(p, "--help")...)
			mustSucceed(t, r)
			if !strings.Contains(r.stdout, "\nExamples:\n") {
				t.Errorf("no examples in the help:\n%s", r.stdout)
			}
		})
	}
}
