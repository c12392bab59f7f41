package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	greeterSvc = "storks.examples.greeter.v1.Greeter"
	echoSvc    = "storks.examples.echo.v1.Echo"
)

// TestGrpcurlList: reflection lists the provider's services, the health
// service and both reflection services.
func TestGrpcurlList(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "lister")
	r := grpcurl(t, "-plaintext", p.addr, "list").ok(t)
	got := strings.Fields(r.stdout)
	for _, want := range []string{greeterSvc, echoSvc, "grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} {
		if !slices.Contains(got, want) {
			t.Errorf("list does not name %s:\n%s", want, r)
		}
	}
	// And the methods of one service.
	r = grpcurl(t, "-plaintext", p.addr, "list", echoSvc).ok(t)
	got = strings.Fields(r.stdout)
	for _, m := range []string{"Echo", "Now", "Stamp", "Count", "Collect", "Chat"} {
		if !slices.Contains(got, echoSvc+"."+m) {
			t.Errorf("list %s does not name %s:\n%s", echoSvc, m, r)
		}
	}
}

// TestGrpcurlDescribe: reflection serves the service's and its messages'
// descriptors, so grpcurl prints them as proto source.
func TestGrpcurlDescribe(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "describer")
	r := grpcurl(t, "-plaintext", p.addr, "describe", greeterSvc).ok(t)
	for _, re := range []string{
		`(?m)^` + regexp.QuoteMeta(greeterSvc) + ` is a service:`,
		`rpc SayHello \( \.storks\.examples\.greeter\.v1\.HelloRequest \) returns \( \.storks\.examples\.greeter\.v1\.HelloReply \)`,
		`rpc Fail \( \.storks\.examples\.greeter\.v1\.FailRequest \) returns \( \.storks\.examples\.greeter\.v1\.FailReply \)`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("describe output does not match %s:\n%s", re, r)
		}
	}
	// A message from another file (common/v1), reached through Echo's.
	r = grpcurl(t, "-plaintext", p.addr, "describe", "storks.examples.common.v1.Stamped").ok(t)
	for _, want := range []string{".storks.examples.common.v1.Text text = 1;", "string provider = 2;", ".google.protobuf.Timestamp time = 3;"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe Stamped does not show %q:\n%s", want, r)
		}
	}
}

// TestGrpcurlUnary: a unary call with a JSON request returns the handler's
// reply, field by field.
func TestGrpcurlUnary(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "unary-provider")
	r := grpcurl(t, "-plaintext", "-d", `{"name":"grpcurl"}`, p.addr, greeterSvc+"/SayHello").ok(t)
	var reply struct{ Message, Provider string }
	decodeOne(t, r, &reply)
	if reply.Message != "Hello, grpcurl" || reply.Provider != "unary-provider" {
		t.Errorf("reply %+v, want message \"Hello, grpcurl\" from unary-provider:\n%s", reply, r)
	}
	// A method whose types are in other files and the well-known types.
	r = grpcurl(t, "-plaintext", "-d", `{"body":"stamp me"}`, p.addr, echoSvc+"/Stamp").ok(t)
	var stamped struct {
		Text     struct{ Body string }
		Provider string
		Time     time.Time
	}
	decodeOne(t, r, &stamped)
	if stamped.Text.Body != "stamp me" || stamped.Provider != "unary-provider" || time.Since(stamped.Time).Abs() > time.Hour {
		t.Errorf("Stamp reply %+v:\n%s", stamped, r)
	}
}

// TestGrpcurlErrors: a handler's Storks error reaches grpcurl as the gRPC
// status of the same number, with its message.
func TestGrpcurlErrors(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "failer")
	for _, tc := range []struct {
		code    int
		name    string
		message string
	}{
		{5, "NotFound", "no such greeting"},
		{9, "FailedPrecondition", "greeter not ready: try later"},
		{16, "Unauthenticated", "who are you? ünïcödé"},
		{14, "Unavailable", "down for maintenance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := json.Marshal(map[string]any{"code": tc.code, "message": tc.message})
			r := grpcurl(t, "-plaintext", "-d", string(req), p.addr, greeterSvc+"/Fail")
			checkStatus(t, r, tc.code, tc.name, tc.message)
		})
	}
	t.Run("SayHelloWithoutName", func(t *testing.T) {
		r := grpcurl(t, "-plaintext", "-d", `{}`, p.addr, greeterSvc+"/SayHello")
		checkStatus(t, r, 3, "InvalidArgument", "name is required")
	})
}

// TestGrpcurlServerStream: every message of a server stream is printed, in
// order, and the stream ends with OK.
func TestGrpcurlServerStream(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "streamer")
	const n = 25
	r := grpcurl(t, "-plaintext", "-d", fmt.Sprintf(`{"text":"tick","times":%d}`, n), p.addr, echoSvc+"/Count").ok(t)
	var got []string
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for {
		var m struct{ Body string }
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding the stream: %v\n%s", err, r)
		}
		got = append(got, m.Body)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("tick %d", i+1)
	}
	if !slices.Equal(got, want) {
		t.Errorf("stream messages %q, want %q:\n%s", got, want, r)
	}
	// A stream that fails before its first message carries the handler's
	// status.
	r = grpcurl(t, "-plaintext", "-d", `{"text":"x","times":100000}`, p.addr, echoSvc+"/Count")
	checkStatus(t, r, 3, "InvalidArgument", "times is 100000, want 0 to 1000")
}

// TestGrpcurlHealth: grpc.health.v1 answers for each exported service and
// for the server as a whole (""), and NotFound for other names.
func TestGrpcurlHealth(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "healthy")
	for _, svc := range []string{"", greeterSvc, echoSvc} {
		req, _ := json.Marshal(map[string]string{"service": svc})
		r := grpcurl(t, "-plaintext", "-d", string(req), p.addr, "grpc.health.v1.Health/Check").ok(t)
		var resp struct{ Status string }
		decodeOne(t, r, &resp)
		if resp.Status != "SERVING" {
			t.Errorf("health of %q is %q, want SERVING:\n%s", svc, resp.Status, r)
		}
	}
	r := grpcurl(t, "-plaintext", "-d", `{"service":"no.such.Service"}`, p.addr, "grpc.health.v1.Health/Check")
	checkStatus(t, r, 5, "NotFound", "")
}

// TestGrpcurlTLS: behind -tls-cert/-tls-key, grpcurl reaches the provider
// with TLS, verifying its certificate against the CA file (not -insecure).
func TestGrpcurlTLS(t *testing.T) {
	needGrpcurl(t)
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	p := startProvider(t, "tls-provider", "-tls-cert", cert, "-tls-key", key)

	r := grpcurl(t, "-cacert", cert, p.addr, "list").ok(t)
	for _, want := range []string{greeterSvc, echoSvc} {
		if !slices.Contains(strings.Fields(r.stdout), want) {
			t.Errorf("list over TLS does not name %s:\n%s", want, r)
		}
	}
	r = grpcurl(t, "-cacert", cert, "-d", `{"name":"tls"}`, p.addr, greeterSvc+"/SayHello").ok(t)
	var reply struct{ Message, Provider string }
	decodeOne(t, r, &reply)
	if reply.Message != "Hello, tls" || reply.Provider != "tls-provider" {
		t.Errorf("reply over TLS %+v:\n%s", reply, r)
	}
	// The certificate is really checked: without the CA file grpcurl
	// refuses it.
	r = grpcurl(t, p.addr, "list")
	if r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("grpcurl without -cacert: want a certificate error:\n%s", r)
	}
	// And the provider takes no plaintext.
	r = grpcurl(t, "-plaintext", p.addr, "list")
	if r.code == 0 {
		t.Errorf("grpcurl -plaintext reached the TLS provider:\n%s", r)
	}
}

// TestGrpcurlVersion: a provider exporting version v2 is reached with the
// storks-version metadata; without it, or with another version, the call
// fails Unimplemented, naming the versions the provider has.
func TestGrpcurlVersion(t *testing.T) {
	needGrpcurl(t)
	p := startProvider(t, "v2-provider", "-version", "v2")
	r := grpcurl(t, "-plaintext", "-H", "storks-version: v2", "-d", `{"name":"versioned"}`, p.addr, greeterSvc+"/SayHello").ok(t)
	var reply struct{ Message, Provider string }
	decodeOne(t, r, &reply)
	if reply.Message != "Hello, versioned" || reply.Provider != "v2-provider" {
		t.Errorf("reply %+v:\n%s", reply, r)
	}
	for _, h := range [][]string{nil, {"-H", "storks-version: v3"}} {
		args := append(append([]string{"-plaintext"}, h...), "-d", `{"name":"x"}`, p.addr, greeterSvc+"/SayHello")
		r := grpcurl(t, args...)
		checkStatus(t, r, 12, "Unimplemented", "")
		if msg := statusMessage(r); !strings.Contains(msg, "v2") || !strings.Contains(msg, greeterSvc) {
			t.Errorf("with %q: message %q does not name %s and the version v2 there:\n%s", h, msg, greeterSvc, r)
		}
	}
}

// TestProviderBadTLSFlags: the provider refuses half a TLS setup, and files
// that do not load, naming the flags, before it serves.
func TestProviderBadTLSFlags(t *testing.T) {
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir := t.TempDir()
	junk := dir + "/junk.pem"
	if err := os.WriteFile(junk, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", junk}, "-tls-cert needs -tls-key"},
		{[]string{"-tls-key", junk}, "-tls-key needs -tls-cert"},
		{[]string{"-tls-cert", junk, "-tls-key", junk}, "-tls-cert " + junk + " -tls-key " + junk + ": tls: "},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, providerBin, append([]string{"-registry", "inproc://", "-listen", "127.0.0.1:0"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "READY") {
			t.Errorf("provider %q: %v, want exit 1 with %q:\n%s", tc.args, err, tc.want, out)
		}
	}
}

// decodeOne decodes grpcurl's single JSON reply into v.
func decodeOne(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("reply is not one JSON object: %v\n%s", err, r)
	}
}

// grpcurl prints a non-OK status as
//
//	ERROR:
//	  Code: NotFound
//	  Message: no such greeting
var (
	codeLine    = regexp.MustCompile(`(?m)^\s*Code: (\S+)$`)
	messageLine = regexp.MustCompile(`(?m)^\s*Message: (.*)$`)
)

func statusMessage(r result) string {
	if m := messageLine.FindStringSubmatch(r.stderr); m != nil {
		return m[1]
	}
	return ""
}

// checkStatus fails the test unless grpcurl reported the status code (by
// name and by its exit code, 64+code) and, if message is not "", that
// message.
func checkStatus(t *testing.T, r result, code int, name, message string) {
	t.Helper()
	m := codeLine.FindStringSubmatch(r.stderr)
	if r.code != 64+code || m == nil || m[1] != name {
		t.Errorf("want status %s (exit %d):\n%s", name, 64+code, r)
		return
	}
	if got := statusMessage(r); message != "" && got != message {
		t.Errorf("status message %q, want %q:\n%s", got, message, r)
	}
}
