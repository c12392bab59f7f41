package testservers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ConsulTB is the part of testing.TB that StartConsul uses. *testing.T and
// *testing.B implement it; a program (a demo) can pass its own.
type ConsulTB interface {
	TB
	TempDir() string
}

// Consul is a real Consul agent ("consul agent -dev": a single server with
// its state in memory) running as a child process on free loopback ports,
// with every other listener (DNS, gRPC) turned off. Stop and Start restart
// it on the same ports; because a dev agent keeps its state in memory, a
// restart loses every registration, which is exactly an agent that
// restarted and lost its state. Its methods are safe for concurrent use.
//
// The consul binary is found, in this order, from the environment variable
// CONSUL_BIN, from the tools module of this repository (tools/go.mod
// declares "tool github.com/hashicorp/consul"; "go tool -n consul" prints
// the path of the cached build, building it first if needed), or on PATH.
type Consul struct {
	bin     string
	logPath string
	opts    ConsulOptions
	// Ports: HTTP API, server RPC, serf LAN and serf WAN.
	httpPort, serverPort, lanPort, wanPort int

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has been waited for
	closed bool
}

// consulStartTimeout bounds how long a start may take (HTTP API up and a
// leader elected) before it is reported as a failure.
const consulStartTimeout = 60 * time.Second

// consulStopTimeout is how long Stop waits after SIGTERM before it kills.
const consulStopTimeout = 15 * time.Second

// StartConsul starts a Consul dev agent for t and kills it when t ends. If
// the consul binary cannot be found, the test fails when the environment
// variable CI is "true" and is skipped otherwise, with a message saying how
// to build it; if the agent is found but does not start, the test fails,
// showing the end of the agent's log.
func StartConsul(t ConsulTB) *Consul {
	t.Helper()
	return StartConsulWith(t, ConsulOptions{})
}

// ConsulOptions configures an agent started with StartConsulWith. The zero
// value is the agent of StartConsul.
type ConsulOptions struct {
	// ManagementToken, when not empty, enables Consul's ACL system with
	// default policy "deny" and this secret (a UUID) as the initial
	// management token, which the agent also uses for its own requests.
	// Every request then needs a token that allows it; CreateToken makes
	// tokens with narrower policies. The agent keeps no state across a
	// restart, but the management token is configured again.
	ManagementToken string
}

// StartConsulWith is StartConsul with options, such as ACLs.
func StartConsulWith(t ConsulTB, opts ConsulOptions) *Consul {
	t.Helper()
	bin, err := consulBinary()
	if err != nil {
		failOrSkip(t, "%v", err)
		return nil
	}
	var s *Consul
	// A port that was free when it was picked may have been taken since
	// (serf also needs it for UDP); try a few sets of ports.
	for attempt := 1; ; attempt++ {
		s, err = newConsul(bin, t.TempDir())
		if err == nil {
			s.opts = opts
			err = s.Start()
		}
		if err == nil {
			break
		}
		if attempt == 3 || !errors.Is(err, errConsulExited) {
			t.Fatalf("%v", err)
			return nil
		}
		t.Logf("consul agent did not start (attempt %d), retrying on other ports: %v", attempt, err)
	}
	t.Cleanup(s.Close)
	return s
}

// LaunchConsul starts a Consul dev agent outside of a test, writing its log
// to a file in dir. The caller must Close it.
func LaunchConsul(dir string) (*Consul, error) {
	bin, err := consulBinary()
	if err != nil {
		return nil, err
	}
	s, err := newConsul(bin, dir)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

func newConsul(bin, dir string) (*Consul, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, fmt.Errorf("consul agent: finding free loopback ports: %w", err)
	}
	return &Consul{
		bin:        bin,
		logPath:    filepath.Join(dir, fmt.Sprintf("consul-%d.log", ports[0])),
		httpPort:   ports[0],
		serverPort: ports[1],
		lanPort:    ports[2],
		wanPort:    ports[3],
	}, nil
}

var (
	consulBinOnce sync.Once
	consulBinPath string
	consulBinErr  error
)

// consulBinary finds the consul binary once per process; see [Consul].
func consulBinary() (string, error) {
	consulBinOnce.Do(func() { consulBinPath, consulBinErr = findConsulBinary() })
	return consulBinPath, consulBinErr
}

const consulInstallHelp = "build it with \"cd tools && go build -o ../bin/consul github.com/hashicorp/consul\" " +
	"and set CONSUL_BIN=$PWD/../bin/consul, or warm the Go build cache with \"cd tools && go tool -n consul\" " +
	"(tools/go.mod declares tool github.com/hashicorp/consul v1.20.1; Consul is not packaged by Debian)"

func findConsulBinary() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if err := consulExecutable(p); err != nil {
			return "", fmt.Errorf("consul binary: CONSUL_BIN=%s: %v; unset it to use the tools module, or %s", p, err, consulInstallHelp)
		}
		return p, nil
	}
	var reasons []string
	if root, err := consulRepoRoot(); err != nil {
		reasons = append(reasons, err.Error())
	} else if p, err := consulFromTools(filepath.Join(root, "tools")); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		return p, nil
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p, nil
	}
	reasons = append(reasons, "no consul on PATH")
	return "", fmt.Errorf("consul binary not found (%s); %s", strings.Join(reasons, "; "), consulInstallHelp)
}

func consulExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errors.New("is not an executable file")
	}
	return nil
}

// consulRepoRoot returns the directory of the go.mod of module
// github.com/storks-rpc/storks, walking up from the working directory (the
// package directory under go test).
func consulRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && consulModuleLine(data) == "github.com/storks-rpc/storks" {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the repository root (go.mod of github.com/storks-rpc/storks) is not above the working directory")
		}
		dir = parent
	}
}

func consulModuleLine(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// consulFromTools asks the go command for the path of the consul tool of
// the tools module, which builds it into the build cache if needed. The
// binary is then run directly, so that stopping it stops Consul itself and
// not a "go tool" parent.
func consulFromTools(toolsDir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		// go test puts $GOROOT/bin on PATH; this is for a test binary run
		// without it, on the machine that built it.
		//lint:ignore SA1019 a test binary runs where it was built, so its build-time GOROOT is still right.
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// Building Consul from a cold cache takes minutes on a small machine.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "tool", "-n", "consul")
	cmd.Dir = toolsDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("\"go tool -n consul\" in %s failed: %v: %s", toolsDir, err, strings.TrimSpace(stderr.String()))
	}
	p := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(p, '\n'); i >= 0 {
		p = strings.TrimSpace(p[i+1:])
	}
	if err := consulExecutable(p); err != nil {
		return "", fmt.Errorf("\"go tool -n consul\" in %s printed %q: %v", toolsDir, p, err)
	}
	return p, nil
}

// errConsulExited marks a start that failed because the agent exited (for
// example because a port was taken).
var errConsulExited = errors.New("consul agent exited")

// Start starts the agent again after Stop or Kill, on the same ports, and
// waits until its HTTP API answers and it has elected itself leader. The
// restarted agent has none of the old state. Starting a running agent does
// nothing.
func (s *Consul) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("consul agent: Start after Close")
	}
	if s.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("consul agent: opening its log file: %w", err)
	}
	fmt.Fprintf(logf, "\n==== storks testservers: starting %s at %s ====\n", s.bin, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin, "agent", "-dev",
		"-node", "storks-test-"+strconv.Itoa(s.httpPort),
		"-bind", "127.0.0.1",
		"-client", "127.0.0.1",
		"-http-port", strconv.Itoa(s.httpPort),
		"-dns-port", "-1",
		"-grpc-port", "-1",
		"-grpc-tls-port", "-1",
		"-server-port", strconv.Itoa(s.serverPort),
		"-serf-lan-port", strconv.Itoa(s.lanPort),
		"-serf-wan-port", strconv.Itoa(s.wanPort),
		"-log-level", "info",
		"-hcl", "disable_update_check = true",
	)
	if tok := s.opts.ManagementToken; tok != "" {
		cmd.Args = append(cmd.Args, "-hcl", fmt.Sprintf(
			"acl { enabled = true\n default_policy = \"deny\"\n enable_token_persistence = false\n tokens { initial_management = %q\n agent = %q } }",
			tok, tok))
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = consulEnv()
	cmd.SysProcAttr = consulSysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("consul agent: starting %s: %w", s.bin, err)
	}
	logf.Close() // the child has its own descriptor
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	if err := s.waitReady(exited); err != nil {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("consul agent on %s: %w\n---- last lines of %s ----\n%s", s.Addr(), err, s.logPath, s.LogTail(40))
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// consulEnv is the agent's environment without the CONSUL_* variables a
// developer may have set for a real cluster.
func consulEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls /v1/status/leader until it names a leader.
func (s *Consul) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(consulStartTimeout)
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errConsulExited
		case <-time.After(50 * time.Millisecond):
		}
		leader, err := consulLeader(client, s.Addr())
		if err != nil {
			last = err.Error()
			continue
		}
		if leader == "" {
			last = "no leader yet"
			continue
		}
		if s.opts.ManagementToken != "" {
			// The leader creates the management token shortly after
			// its election.
			if err := consulTokenReady(client, s.Addr(), s.opts.ManagementToken); err != nil {
				last = err.Error()
				continue
			}
		}
		return nil
	}
	return fmt.Errorf("not ready within %v (%s)", consulStartTimeout, last)
}

// consulTokenReady checks that the agent accepts token.
func consulTokenReady(client *http.Client, addr, token string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/acl/token/self", nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Consul-Token", token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the management token is not ready: GET /v1/acl/token/self: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func consulLeader(client *http.Client, addr string) (string, error) {
	resp, err := client.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /v1/status/leader: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.Trim(strings.TrimSpace(string(body)), `"`), nil
}

// Stop stops the agent with SIGTERM (SIGKILL if it has not exited within
// 15s) and waits for it to exit. Clients see their connections fail; the
// agent's state is lost. Stopping a stopped agent does nothing.
func (s *Consul) Stop() {
	s.stop(syscall.SIGTERM)
}

// Kill kills the agent with SIGKILL, as a crash would, and waits for it to
// exit.
func (s *Consul) Kill() {
	s.stop(syscall.SIGKILL)
}

func (s *Consul) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(consulStopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// Close kills the agent for good.
func (s *Consul) Close() {
	s.Kill()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// Running reports whether the agent process is running.
func (s *Consul) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Addr returns the address of the agent's HTTP API, "127.0.0.1:port". It
// does not change across Stop and Start.
func (s *Consul) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.httpPort))
}

// Endpoint is Addr, named like the other servers' method.
func (s *Consul) Endpoint() string { return s.Addr() }

// URL returns the Storks registry URL of the agent followed by query, which
// is empty or starts with '?': URL("?ttl=2s") returns
// "consul://127.0.0.1:port?ttl=2s". The Consul adapter
// (github.com/storks-rpc/storks/registry/consul) must be imported for
// registry.Open to accept it.
func (s *Consul) URL(query string) string {
	return "consul://" + s.Addr() + query
}

// ConsulRegistryURL starts a Consul agent for t (see StartConsul) and
// returns a registry URL for it with the given TTL (10s if zero). The test
// must import the Consul adapter, github.com/storks-rpc/storks/registry/consul.
func ConsulRegistryURL(t ConsulTB, ttl time.Duration) string {
	t.Helper()
	s := StartConsul(t)
	if s == nil {
		return ""
	}
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	return s.URL("?ttl=" + ttl.String())
}

// Ping checks that the agent's HTTP API answers and knows a leader within
// timeout.
func (s *Consul) Ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Addr()+"/v1/status/leader", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v1/status/leader: %s", resp.Status)
	}
	if strings.Trim(strings.TrimSpace(string(body)), `"`) == "" {
		return errors.New("no leader")
	}
	return nil
}

// LogPath returns the file the agent writes its log to (every run appends).
func (s *Consul) LogPath() string { return s.logPath }

// LogTail returns the last n lines of the agent's log.
func (s *Consul) LogTail(n int) string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CreateToken creates, with the management token, an ACL policy with the
// given rules (HCL, for example `service_prefix "" { policy = "write" }`)
// and a token that has it, and returns the token's secret. The agent must
// have been started with a ManagementToken.
func (s *Consul) CreateToken(ctx context.Context, rules string) (string, error) {
	if s.opts.ManagementToken == "" {
		return "", errors.New("consul agent: CreateToken needs an agent started with ACLs (ConsulOptions.ManagementToken)")
	}
	name := fmt.Sprintf("storks-test-%d", time.Now().UnixNano())
	if err := s.aclPut(ctx, "/v1/acl/policy", map[string]any{"Name": name, "Rules": rules}, nil); err != nil {
		return "", fmt.Errorf("consul agent: creating policy: %w", err)
	}
	var tok struct{ SecretID string }
	if err := s.aclPut(ctx, "/v1/acl/token", map[string]any{"Policies": []map[string]string{{"Name": name}}}, &tok); err != nil {
		return "", fmt.Errorf("consul agent: creating token: %w", err)
	}
	if tok.SecretID == "" {
		return "", errors.New("consul agent: the new token has no SecretID")
	}
	return tok.SecretID, nil
}

func (s *Consul) aclPut(ctx context.Context, path string, body, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+s.Addr()+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("X-Consul-Token", s.opts.ManagementToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
