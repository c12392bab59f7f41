package quickstart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/devetcd"
)

// step is one marked block of the Quick start, in README order.
type step struct {
	kind string // "file" or "sh"
	arg  string // the file's path, or the directory to run in
	body string
	line int // of the marker, for messages
}

var markerRE = regexp.MustCompile(`^<!-- quickstart: (file|sh) (\S+) -->$`)

// parseSteps returns the marked blocks of readme in order.
func parseSteps(t *testing.T, readme string) []step {
	t.Helper()
	lines := strings.Split(readme, "\n")
	var steps []step
	for i := 0; i < len(lines); i++ {
		m := markerRE.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			if strings.Contains(lines[i], "quickstart:") {
				t.Fatalf("README.md:%d: malformed quickstart marker %q", i+1, lines[i])
			}
			continue
		}
		st := step{kind: m[1], arg: m[2], line: i + 1}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		if j == len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[j]), "```") {
			t.Fatalf("README.md:%d: quickstart marker not followed by a fenced block", i+1)
		}
		indent := lines[j][:len(lines[j])-len(strings.TrimLeft(lines[j], " "))]
		var body []string
		for j++; j < len(lines) && strings.TrimSpace(lines[j]) != "```"; j++ {
			body = append(body, strings.TrimPrefix(lines[j], indent))
		}
		if j == len(lines) {
			t.Fatalf("README.md:%d: unterminated fenced block", i+1)
		}
		st.body = strings.Join(body, "\n") + "\n"
		steps = append(steps, st)
		i = j
	}
	return steps
}

func TestQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a fresh module and runs its programs")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	steps := parseSteps(t, string(readme))
	var files, scripts int
	for _, s := range steps {
		if s.kind == "file" {
			files++
		} else {
			scripts++
		}
	}
	// The Quick start has a .proto file, a provider and a consumer, and
	// commands that install the tools, make the module and generate code.
	if files < 3 || scripts < 2 {
		t.Fatalf("README.md's Quick start has %d marked files and %d marked scripts; want at least 3 and 2", files, scripts)
	}

	ws := t.TempDir()
	if err := os.Symlink(repo, filepath.Join(ws, "storks")); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(ws, "bin")
	env := append(os.Environ(),
		"GOBIN="+bin,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"GOFLAGS=-mod=mod",
		"GOWORK=off",
	)
	module := "" // the module's directory, once a step made it
	for _, s := range steps {
		switch s.kind {
		case "file":
			if module == "" {
				t.Fatalf("README.md:%d: a file comes before the commands that make its module", s.line)
			}
			p := filepath.Join(module, filepath.FromSlash(s.arg))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(s.body), 0o644); err != nil {
				t.Fatal(err)
			}
		case "sh":
			dir := filepath.Join(ws, filepath.FromSlash(s.arg))
			var script []string
			for _, l := range strings.Split(s.body, "\n") {
				if strings.HasPrefix(strings.TrimSpace(l), "git clone ") {
					continue // ws/storks links to this checkout instead
				}
				script = append(script, l)
			}
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Join(script, "\n"))
			cmd.Dir = dir
			cmd.Env = env
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("README.md:%d: the commands failed in %s: %v\n%s\n--- output:\n%s", s.line, s.arg, err, s.body, out)
			}
			t.Logf("README.md:%d: ran in %s (%v)", s.line, s.arg, time.Since(start).Round(time.Millisecond))
			if module == "" {
				// The first script that makes a go.mod names the module.
				if m, _ := filepath.Glob(filepath.Join(ws, "*", "go.mod")); len(m) > 0 {
					for _, gm := range m {
						if filepath.Dir(gm) != filepath.Join(ws, "storks") {
							module = filepath.Dir(gm)
						}
					}
				}
			}
		}
	}
	if module == "" {
		t.Fatal("no Quick start command made a module (go mod init)")
	}

	// The programs build, vet clean, and work: a provider and a consumer
	// through a real etcd, as the Quick start says to run them.
	run(t, module, env, "go", "vet", "./...")
	run(t, module, env, "go", "build", "-o", bin+"/", "./provider", "./consumer")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	etcd, err := devetcd.Start(ctx, devetcd.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("start an embedded etcd for the Quick start's programs: %v", err)
	}
	defer etcd.Close()
	penv := append(env, "STORKS_REGISTRY="+etcd.URL())

	provider := exec.Command(filepath.Join(bin, "provider"))
	provider.Dir = module
	provider.Env = penv
	plog := &syncBuffer{}
	provider.Stdout, provider.Stderr = plog, plog
	if err := provider.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- provider.Wait() }()
	defer func() {
		if provider.ProcessState == nil {
			provider.Process.Kill()
		}
	}()

	var reply string
	deadline := time.Now().Add(30 * time.Second)
	for {
		consumer := exec.Command(filepath.Join(bin, "consumer"))
		consumer.Dir = module
		consumer.Env = penv
		out, err := consumer.CombinedOutput()
		if err == nil {
			reply = string(out)
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the provider exited (%v) before the consumer got a reply:\n%s", err, plog.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer got no reply within 30 s; last run: %v\n%s\n--- provider:\n%s", err, out, plog.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("consumer printed: %s", strings.TrimSpace(reply))
	if !strings.Contains(reply, "Hello, storks") {
		t.Fatalf("consumer printed %q, want a greeting containing %q", reply, "Hello, storks")
	}

	// Ctrl-C stops the provider gracefully, with status 0.
	if err := provider.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("provider after SIGINT: %v\n%s", err, plog.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("provider did not stop within 30 s of SIGINT:\n%s", plog.String())
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
