package testservers

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ZooKeeperTB is the part of testing.TB that StartZooKeeper uses. *testing.T
// and *testing.B implement it; a program (a demo) can pass its own.
type ZooKeeperTB = TB

// ZooKeeper is a standalone Apache ZooKeeper server run as a child process
// (a JVM) on a free loopback port, with a data directory of its own. Stop,
// Kill and Start restart it on the same directory and port, so clients
// reconnect to the same address and find their data (and, within their
// timeout, their sessions) again. Its methods are safe for concurrent use.
//
// The server comes from Debian's zookeeper package (apt-get install -y
// zookeeper), which puts the jar in /usr/share/java and needs a Java runtime.
// Debian's zkServer.sh is not used: its zkEnv.sh forces the log directory to
// /var/log/zookeeper, enables JMX and gives the server no logging backend,
// so the JVM is started directly with the package's jar (whose manifest
// names its dependencies) plus slf4j-simple, which sends the server log to
// the output file. ZOOKEEPER_CLASSPATH replaces that class path (for an
// upstream tarball: ZOOKEEPER_CLASSPATH='/opt/zookeeper/lib/*'), and
// JAVA_HOME selects the Java runtime.
type ZooKeeper struct {
	dir  string // holds zoo.cfg, data/, and zookeeper.out
	port int
	java string
	cp   string

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has exited
	closed bool
}

const (
	// zooKeeperStartTimeout bounds a (re)start; a JVM on a busy 2-core
	// machine may need several seconds.
	zooKeeperStartTimeout = 60 * time.Second
	// zooKeeperStopTimeout is how long Stop waits for the JVM to exit after
	// SIGTERM before it kills it.
	zooKeeperStopTimeout = 10 * time.Second
)

// zooKeeperInstallHint says how to get a server.
const zooKeeperInstallHint = "install Debian's ZooKeeper and a Java runtime with `apt-get install -y zookeeper` " +
	"(or `make deps-zookeeper`), or point ZOOKEEPER_CLASSPATH at the jars of a ZooKeeper 3.5+ distribution"

// StartZooKeeper starts a ZooKeeper server for t and kills it (and removes
// its directory) when t ends. If the server cannot start, the test fails
// when the environment variable CI is "true" and is skipped otherwise, with
// a message saying what is missing and how to install it.
func StartZooKeeper(t ZooKeeperTB) *ZooKeeper {
	t.Helper()
	s, err := LaunchZooKeeper()
	if err != nil {
		failOrSkip(t, "%v", err)
		return nil
	}
	t.Cleanup(s.Close)
	return s
}

// LaunchZooKeeper starts a ZooKeeper server outside of a test. The caller
// must Close it, which also removes its directory.
func LaunchZooKeeper() (*ZooKeeper, error) {
	java, cp, err := zooKeeperCommand()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "storks-zookeeper-")
	if err != nil {
		return nil, fmt.Errorf("zookeeper: creating a temp directory: %w", err)
	}
	// A port found free may be taken by someone else before the JVM binds
	// it; try a few.
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("zookeeper: finding a free loopback port: %w", err)
		}
		s := &ZooKeeper{dir: dir, port: ports[0], java: java, cp: cp}
		if err = s.writeConfig(); err == nil {
			err = s.Start()
		}
		if err == nil {
			return s, nil
		}
		if attempt < 3 && strings.Contains(err.Error(), "Address already in use") {
			continue
		}
		os.RemoveAll(dir)
		return nil, err
	}
}

// zooKeeperCommand finds the java binary and the server's class path.
func zooKeeperCommand() (java, cp string, err error) {
	java = "java"
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
	}
	java, err = exec.LookPath(java)
	if err != nil {
		return "", "", fmt.Errorf("zookeeper: no Java runtime (%v); %s", err, zooKeeperInstallHint)
	}
	if cp = os.Getenv("ZOOKEEPER_CLASSPATH"); cp != "" {
		return java, cp, nil
	}
	const jar = "/usr/share/java/zookeeper.jar"
	if _, err := os.Stat(jar); err != nil {
		return "", "", fmt.Errorf("zookeeper: the server jar %s is missing (%v); %s", jar, err, zooKeeperInstallHint)
	}
	cp = jar
	// The Debian jar's manifest lists slf4j-api but no logging backend;
	// without one the server prints nothing at all.
	if simple := "/usr/share/java/slf4j-simple.jar"; zkFileExists(simple) {
		cp += string(os.PathListSeparator) + simple
	}
	return java, cp, nil
}

func zkFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (s *ZooKeeper) configPath() string { return filepath.Join(s.dir, "zoo.cfg") }

// OutputPath returns the file that collects the server's output across
// restarts.
func (s *ZooKeeper) OutputPath() string { return filepath.Join(s.dir, "zookeeper.out") }

func (s *ZooKeeper) writeConfig() error {
	// tickTime=500 allows session timeouts from 1s (2 ticks) up to
	// maxSessionTimeout, so tests can use short ones. forceSync=no: the
	// data only has to survive the JVM, not the machine.
	cfg := fmt.Sprintf(`tickTime=500
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
minSessionTimeout=1000
maxSessionTimeout=20000
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat,cons,dump
forceSync=no
preAllocSize=4096
`, filepath.Join(s.dir, "data"), s.port)
	return os.WriteFile(s.configPath(), []byte(cfg), 0o644)
}

// Start starts the server (again after Stop or Kill) on the same directory
// and port and waits until it serves clients. Starting a running server does
// nothing.
func (s *ZooKeeper) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("zookeeper: Start after Close")
	}
	if s.cmd != nil {
		return nil
	}
	out, err := os.OpenFile(s.OutputPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("zookeeper: opening the output file: %w", err)
	}
	fmt.Fprintf(out, "==== storks testservers: starting ZooKeeper on 127.0.0.1:%d at %s ====\n", s.port, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.java,
		"-Xms32m", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Djava.net.preferIPv4Stack=true",
		"-Dzookeeper.log.dir="+s.dir,
		"-Dzookeeper.admin.enableServer=false",
		"-Dorg.slf4j.simpleLogger.showDateTime=true",
		"-cp", s.cp,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", s.configPath())
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = zooKeeperProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("zookeeper: starting %s: %w; %s", s.java, err, zooKeeperInstallHint)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	ctx, cancel := context.WithTimeout(context.Background(), zooKeeperStartTimeout)
	defer cancel()
	for {
		mode, err := s.fourLetter(ctx, "srvr")
		if err == nil && strings.Contains(mode, "Mode: standalone") {
			return nil
		}
		select {
		case <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("zookeeper: the server on 127.0.0.1:%d exited while starting (%s); its output:\n%s",
				s.port, cmd.ProcessState, s.outputTail(40))
		case <-ctx.Done():
			s.killLocked()
			return fmt.Errorf("zookeeper: the server on 127.0.0.1:%d did not answer srvr within %v (last: %v); its output:\n%s",
				s.port, zooKeeperStartTimeout, err, s.outputTail(40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fourLetter sends a four-letter command and returns the answer.
func (s *ZooKeeper) fourLetter(ctx context.Context, cmd string) (string, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		err = nil
	}
	return string(b), err
}

// FourLetter sends a four-letter admin command (srvr, ruok, stat, cons,
// dump) to the server and returns its answer.
func (s *ZooKeeper) FourLetter(ctx context.Context, cmd string) (string, error) {
	return s.fourLetter(ctx, cmd)
}

// outputTail returns the last n lines of the output file.
func (s *ZooKeeper) outputTail(n int) string {
	b, err := os.ReadFile(s.OutputPath())
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// OutputTail returns the last n lines the server printed, for failure
// messages.
func (s *ZooKeeper) OutputTail(n int) string { return s.outputTail(n) }

// Stop stops the server gracefully (SIGTERM, then SIGKILL after 10s),
// keeping its data for Start. Clients see their connections close; their
// sessions survive a restart that is shorter than their timeout. Stopping a
// stopped server does nothing.
func (s *ZooKeeper) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	zooKeeperSignal(s.cmd, false)
	select {
	case <-s.exited:
		s.cmd, s.exited = nil, nil
	case <-time.After(zooKeeperStopTimeout):
		s.killLocked()
	}
}

// Kill kills the server (SIGKILL to its whole process group), keeping its
// data for Start.
func (s *ZooKeeper) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *ZooKeeper) killLocked() {
	if s.cmd == nil {
		return
	}
	zooKeeperSignal(s.cmd, true)
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// Close kills the server for good and removes its directory.
func (s *ZooKeeper) Close() {
	s.Kill()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		os.RemoveAll(s.dir)
	}
}

// Running reports whether the server process is running.
func (s *ZooKeeper) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Addr returns the client address, "127.0.0.1:port". It does not change
// across restarts.
func (s *ZooKeeper) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Endpoint is Addr, for symmetry with the other test servers.
func (s *ZooKeeper) Endpoint() string { return s.Addr() }

// URL returns the Storks registry URL of this server with the given base
// path and optional query, for example URL("/storks?session-timeout=2s")
// returns "zookeeper://127.0.0.1:port/storks?session-timeout=2s". The
// ZooKeeper adapter (github.com/storks-rpc/storks/registry/zookeeper) must
// be imported for registry.Open to accept it.
func (s *ZooKeeper) URL(base string) string {
	return "zookeeper://" + s.Addr() + base
}

// ZooKeeperRegistryURL starts a ZooKeeper server for t (see StartZooKeeper)
// and returns a registry URL for it with a base path of its own and the
// given session timeout (10s if zero): the one-liner for tests that run
// providers and consumers against a real ZooKeeper. The test must import
// github.com/storks-rpc/storks/registry/zookeeper.
func ZooKeeperRegistryURL(t ZooKeeperTB, sessionTimeout time.Duration) string {
	t.Helper()
	s := StartZooKeeper(t)
	if s == nil {
		return ""
	}
	if sessionTimeout <= 0 {
		sessionTimeout = 10 * time.Second
	}
	return s.URL(fmt.Sprintf("/storks-test-%d?session-timeout=%s", time.Now().UnixNano(), sessionTimeout))
}

// ExpireSession ends the session with the given ID and password the way a
// session ends for good on a real ensemble: it opens a second connection
// that attaches to the session (as a client moving to another server does)
// and closes the session there. The server deletes the session's ephemeral
// nodes, and the client that owned it is told that its session expired when
// it next talks to the server; that is the standard way to force a session
// expiry in tests. It returns an error if the server does not know the
// session (already expired, or a wrong password).
func (s *ZooKeeper) ExpireSession(ctx context.Context, sessionID int64, passwd []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return fmt.Errorf("zookeeper: expire session 0x%x: %w", sessionID, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	// ConnectRequest: protocolVersion int32, lastZxidSeen int64, timeOut
	// int32, sessionId int64, passwd buffer, readOnly bool.
	var req bytes.Buffer
	be := func(v any) { zkWriteBE(&req, v) }
	be(int32(0))
	be(int64(0))
	be(int32(2000))
	be(sessionID)
	be(int32(len(passwd)))
	req.Write(passwd)
	req.WriteByte(0)
	if err := zkWriteFrame(c, req.Bytes()); err != nil {
		return fmt.Errorf("zookeeper: expire session 0x%x: sending connect: %w", sessionID, err)
	}
	resp, err := zkReadFrame(c)
	if err != nil {
		return fmt.Errorf("zookeeper: expire session 0x%x: reading the connect response: %w", sessionID, err)
	}
	// ConnectResponse: protocolVersion int32, timeOut int32, sessionId int64, ...
	if len(resp) < 16 {
		return fmt.Errorf("zookeeper: expire session 0x%x: short connect response (%d bytes)", sessionID, len(resp))
	}
	if got := int64(zkBEUint64(resp[8:16])); got != sessionID {
		return fmt.Errorf("zookeeper: expire session 0x%x: the server did not attach to it (answered session 0x%x: expired already, or a wrong password)", sessionID, got)
	}
	// RequestHeader{xid, type=closeSession(-11)}.
	var cl bytes.Buffer
	zkWriteBE(&cl, int32(1))
	zkWriteBE(&cl, int32(-11))
	if err := zkWriteFrame(c, cl.Bytes()); err != nil {
		return fmt.Errorf("zookeeper: expire session 0x%x: sending close: %w", sessionID, err)
	}
	// ReplyHeader{xid int32, zxid int64, err int32}.
	r, err := zkReadFrame(c)
	if err != nil {
		return fmt.Errorf("zookeeper: expire session 0x%x: reading the close response: %w", sessionID, err)
	}
	if len(r) >= 16 {
		if code := int32(zkBEUint32(r[12:16])); code != 0 {
			return fmt.Errorf("zookeeper: expire session 0x%x: close answered error code %d", sessionID, code)
		}
	}
	return nil
}

func zkWriteBE(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case int32:
		u := uint32(x)
		b.Write([]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
	case int64:
		u := uint64(x)
		b.Write([]byte{byte(u >> 56), byte(u >> 48), byte(u >> 40), byte(u >> 32), byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
	default:
		panic(fmt.Sprintf("zkWriteBE: %T", v))
	}
}

func zkBEUint32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func zkBEUint64(b []byte) uint64 {
	return uint64(zkBEUint32(b[:4]))<<32 | uint64(zkBEUint32(b[4:8]))
}

func zkWriteFrame(w io.Writer, body []byte) error {
	var b bytes.Buffer
	zkWriteBE(&b, int32(len(body)))
	b.Write(body)
	_, err := w.Write(b.Bytes())
	return err
}

func zkReadFrame(r io.Reader) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := zkBEUint32(h[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}
