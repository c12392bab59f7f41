package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// bins builds the demo, provider and consumer once, into a directory that
// serves as the demo's -bin.
var bins = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "storks-demo-test-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(goTool(), "build", "-o", dir+"/", ".", "../provider", "../consumer").CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := bins(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// demoResult is what a run of the demo binary produced.
type demoResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// runDemo runs the demo binary with the programs of binDir.
func runDemo(t *testing.T, binDir string, args ...string) demoResult {
	t.Helper()
	dir, err := bins()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "demo"), append([]string{"-bin", binDir}, args...)...)
	cmd.Env = append(os.Environ(), "REGISTRY=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err = cmd.Run()
	r := demoResult{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(begin)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The demo with its embedded etcd: nine calls, round-robin over the three
// providers, which then stop gracefully.
func TestDemo(t *testing.T) {
	dir, err := bins()
	if err != nil {
		t.Fatal(err)
	}
	r := runDemo(t, dir)
	if r.code != 0 {
		t.Fatalf("demo exited with %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	calls := regexp.MustCompile(`(?m)^consumer +\| call \d: "Hello, storks" from (provider-\d) `).FindAllStringSubmatch(r.stdout, -1)
	seen := map[string]int{}
	for _, c := range calls {
		seen[c[1]]++
	}
	if len(calls) != 9 || seen["provider-1"] != 3 || seen["provider-2"] != 3 || seen["provider-3"] != 3 {
		t.Errorf("want 9 calls, 3 to each provider; got %v in:\n%s", seen, r.stdout)
	}
	governed := regexp.MustCompile(`(?m)^governed +\| call \d: "Hello, storks" from (provider-\d) `).FindAllStringSubmatch(r.stdout, -1)
	gseen := map[string]int{}
	for _, c := range governed {
		gseen[c[1]]++
	}
	if len(governed) != 6 || gseen["provider-2"] != 0 || gseen["provider-1"] != 3 || gseen["provider-3"] != 3 {
		t.Errorf("with provider-2 disabled by a rule: want 6 calls, 3 each to provider-1 and provider-3; got %v in:\n%s", gseen, r.stdout)
	}
	for _, want := range []string{
		"demo: disabling provider-2 with a rule",
		"demo: provider-2 enabled again; no rule is left",
		`| stream Count: "storks 1"`,
		`| stream Count: "storks 3"`,
		`| stream Chat: sent "ping", got "ping"`,
		`| stream Chat: sent "bye", got "bye"`,
		`demo: a grpc-go client on provider-1's port 127.0.0.1:`,
		`: "Hello, grpc-go" from provider-1; health SERVING`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the demo's output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.HasSuffix(r.stdout, "demo: done\n") {
		t.Errorf("stdout does not end with \"demo: done\":\n%s", r.stdout)
	}
}

// `make demo REGISTRY=127.0.0.1:2379` (issue 15): the providers exit at once
// on the URL; the demo says so at once, with the provider's advice, instead
// of waiting 30s for them to become ready.
func TestDemoFailsFastOnABadRegistry(t *testing.T) {
	dir, err := bins()
	if err != nil {
		t.Fatal(err)
	}
	r := runDemo(t, dir, "-registry", "127.0.0.1:2379")
	if r.code != 1 {
		t.Fatalf("demo exited with %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r.took > 10*time.Second {
		t.Errorf("demo took %v to fail, want under 10s", r.took)
	}
	want := regexp.MustCompile(`^demo: provider-\d exited \(exit status 1\) before it was ready; the last lines of its stderr:\n` +
		regexp.QuoteMeta(`    provider: registry: URL scheme is missing from "127.0.0.1:2379", which looks like the address of an etcd server; want etcd://127.0.0.1:2379/storks`+"\n") + `$`)
	if !want.MatchString(r.stderr) {
		t.Errorf("stderr:\n%s\nwant it to match %s", r.stderr, want)
	}
	t.Logf("failed in %v", r.took)
}

// fakeBin writes shell scripts standing for the provider and the consumer
// into a directory for -bin. The provider scripts get the provider's name
// in $name.
func fakeBin(t *testing.T, provider, consumer string) string {
	t.Helper()
	dir := t.TempDir()
	args := "while [ $# -gt 0 ]; do [ \"$1\" = -name ] && name=$2; shift; done\n"
	for file, body := range map[string]string{"provider": args + provider, "consumer": consumer} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A provider that exits is reported at once, with its exit status and the
// last five lines of its stderr, before and after the providers are ready.
func TestDemoProviderExits(t *testing.T) {
	// Like a provider: ready, then serving until SIGTERM, when it exits 0.
	// The trap is set before READY, and the sleep holds none of the
	// script's pipes: a SIGTERM that comes before $pid is set still ends
	// the script, and nothing keeps its output open after it (the demo
	// would wait for that).
	const serve = `trap 'kill $pid 2>/dev/null; exit 0' TERM
echo "READY $name 127.0.0.1:1"
sleep 60 >/dev/null 2>&1 </dev/null & pid=$!
wait
`
	tests := []struct {
		name               string
		provider, consumer string
		want               string
	}{
		{
			"before ready",
			`if [ "$name" = provider-2 ]; then
	for i in 1 2 3 4 5 6 7; do echo "line $i" >&2; done
	echo "not on stderr"
	exit 3
fi
exec sleep 60
`,
			"exec sleep 60\n",
			"demo: provider-2 exited (exit status 3) before it was ready; the last lines of its stderr:\n" +
				"    line 3\n    line 4\n    line 5\n    line 6\n    line 7\n",
		},
		{
			"while the consumer runs",
			`if [ "$name" = provider-3 ]; then echo "READY $name 127.0.0.1:1"; sleep 1; exit 0; fi
` + serve,
			"exec sleep 60\n",
			"demo: provider-3 exited (exit status 0) while the consumer ran; it wrote nothing on stderr\n",
		},
		{
			"consumer fails",
			serve,
			"echo 'consumer: no provider answered' >&2; exit 1\n",
			"demo: consumer exited (exit status 1); the last lines of its stderr:\n    consumer: no provider answered\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Any registry URL: the fake programs ignore it.
			r := runDemo(t, fakeBin(t, tc.provider, tc.consumer), "-registry", "inproc://")
			if r.code != 1 || r.stderr != tc.want {
				t.Errorf("exit code %d, stderr:\n%s\nwant 1 and:\n%s\nstdout:\n%s", r.code, r.stderr, tc.want, r.stdout)
			}
			if r.took > 10*time.Second {
				t.Errorf("demo took %v to fail, want under 10s", r.took)
			}
		})
	}
}
