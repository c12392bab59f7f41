package zookeeper

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/internal/testservers"
	"github.com/storks-rpc/storks/registry"
)

var baseSeq atomic.Uint64

// uniqueBase returns a base path no other test uses.
func uniqueBase(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("/storks-test/%s-%d-%d", name, time.Now().UnixNano(), baseSeq.Add(1))
}

// logRecorder is a slog.Handler that counts records by level and passes
// them to t.Log when STORKS_TEST_LOG is set (to "debug" for everything).
type logRecorder struct {
	t     testing.TB
	level slog.Level
	mu    *sync.Mutex
	recs  *[]slog.Record
	attrs []slog.Attr
}

func newLogRecorder(t testing.TB) *logRecorder {
	level := slog.Level(100) // pass nothing to t.Log
	switch os.Getenv("STORKS_TEST_LOG") {
	case "":
	case "debug":
		level = slog.LevelDebug
	default:
		level = slog.LevelInfo
	}
	return &logRecorder{t: t, level: level, mu: new(sync.Mutex), recs: new([]slog.Record)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	*h.recs = append(*h.recs, r.Clone())
	h.mu.Unlock()
	if r.Level >= h.level {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.t.Log(b.String())
	}
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(c.attrs[:len(c.attrs):len(c.attrs)], attrs...)
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// count returns how many records of at least level were logged, and their
// messages.
func (h *logRecorder) count(level slog.Level) (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var msgs []string
	for _, r := range *h.recs {
		if r.Level >= level {
			msgs = append(msgs, r.Level.String()+" "+r.Message)
		}
	}
	return len(msgs), msgs
}

// testConfig returns a config for srv with short timeouts and retries.
func testConfig(t testing.TB, srv *testservers.ZooKeeper, base string) Config {
	return Config{
		Servers:        []string{srv.Addr()},
		BasePath:       base,
		SessionTimeout: 2 * time.Second,
		DialTimeout:    5 * time.Second,
		Logger:         slog.New(newLogRecorder(t)),
		minRetry:       20 * time.Millisecond,
		maxRetry:       500 * time.Millisecond,
	}
}

// openTest opens a registry on srv that is closed when t ends.
func openTest(t testing.TB, srv *testservers.ZooKeeper, base string, mod func(*Config)) *Registry {
	t.Helper()
	c := testConfig(t, srv, base)
	if mod != nil {
		mod(&c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := New(ctx, c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func inst(key registry.ServiceKey, id string, port int) registry.Instance {
	return registry.Instance{Key: key, ID: id, Addr: "127.0.0.1:" + strconv.Itoa(port)}
}

func mustRegister(t testing.TB, r registry.Registry, ins ...registry.Instance) {
	t.Helper()
	for _, in := range ins {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.Register(ctx, in)
		cancel()
		if err != nil {
			t.Fatalf("Register(%q): %v", in.ID, err)
		}
	}
}

// faultDialer dials the servers for a client and can cut its network: Cut
// closes every connection and makes new dials fail, as if the process had
// died or its host had dropped off the network (the server keeps the
// session until it times out). It also reads the session ID and password
// from each connect response, so a test can expire the session.
type faultDialer struct {
	mu       sync.Mutex
	cut      bool
	conns    map[*sniffConn]struct{}
	sessions map[int64][]byte
}

func newFaultDialer() *faultDialer {
	return &faultDialer{conns: make(map[*sniffConn]struct{}), sessions: make(map[int64][]byte)}
}

func (d *faultDialer) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	d.mu.Lock()
	cut := d.cut
	d.mu.Unlock()
	if cut {
		return nil, errors.New("faultDialer: the network is cut")
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	sc := &sniffConn{Conn: c, d: d}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cut {
		c.Close()
		return nil, errors.New("faultDialer: the network is cut")
	}
	d.conns[sc] = struct{}{}
	return sc, nil
}

// Cut closes every connection and fails every dial until Heal.
func (d *faultDialer) Cut() {
	d.mu.Lock()
	d.cut = true
	conns := d.conns
	d.conns = make(map[*sniffConn]struct{})
	d.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

func (d *faultDialer) Heal() {
	d.mu.Lock()
	d.cut = false
	d.mu.Unlock()
}

// password returns the password of session sid, as last seen.
func (d *faultDialer) password(sid int64) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sessions[sid]
}

// sniffConn records the connect response, the first frame the server sends.
type sniffConn struct {
	net.Conn
	d    *faultDialer
	buf  []byte
	done bool
}

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		// len int32 | protocolVersion int32 | timeOut int32 | sessionId
		// int64 | passwd (len int32, bytes) | readOnly bool
		if len(c.buf) >= 24 {
			pwLen := int(binary.BigEndian.Uint32(c.buf[20:24]))
			if len(c.buf) >= 24+pwLen {
				sid := int64(binary.BigEndian.Uint64(c.buf[12:20]))
				c.d.mu.Lock()
				c.d.sessions[sid] = append([]byte(nil), c.buf[24:24+pwLen]...)
				c.d.mu.Unlock()
				c.done = true
			}
		}
		if len(c.buf) > 256 {
			c.done = true
		}
	}
	return n, err
}

func (c *sniffConn) Close() error {
	c.d.mu.Lock()
	delete(c.d.conns, c)
	c.d.mu.Unlock()
	return c.Conn.Close()
}

// nextWithin calls w.Next with a timeout.
func nextWithin(w registry.Watcher, d time.Duration) ([]registry.Instance, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.Next(ctx)
}

// drain reads w until it delivers nothing for quiet and returns the last
// list delivered, if any.
func drain(w registry.Watcher, quiet time.Duration) (last []registry.Instance, ok bool) {
	for {
		l, err := nextWithin(w, quiet)
		if err != nil {
			return last, ok
		}
		last, ok = l, true
	}
}
