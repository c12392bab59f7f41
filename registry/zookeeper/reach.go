package zookeeper

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/storks-rpc/storks/registry"
)

// How the registry knows that no server can be reached, and says so at once
// instead of after a timeout: the ZooKeeper client connects through
// Registry.dial, which records the result of every attempt to open a TCP
// connection to a server. The client tries the servers in turn, and waits a
// second after each round. While there is no session, a call fails at once
// if the last attempt to connect to every server failed (reachErr); a
// refused connection fails in milliseconds, a host that drops the packets
// within the dial timeout. Otherwise (a connection is open, the session is
// being established) the call waits and retries, as before.

// dialState is what the registry knows of the connections to the servers.
// It is guarded by Registry.diagMu.
type dialState struct {
	n       int              // the number of server addresses (Len of the host provider)
	last    map[string]error // the last dial error of each address; nil: it connected
	changed chan struct{}    // closed and replaced when last or rejected changes
	// rejected is set when a server answered in another protocol than
	// ZooKeeper's.
	rejected error
	// detail is the last thing known after a connection was opened (no
	// session yet, or why the client gave up on it), for messages.
	detail string
}

// noteLocked records that the state changed; diagMu is held.
func (d *dialState) noteLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// reachErr returns a *registry.UnreachableError if the registry has no session and
// the last attempt to connect to every server failed, and nil otherwise.
func (r *Registry) reachErr() error {
	if _, err := r.session(); err == nil {
		return nil
	}
	r.diagMu.Lock()
	defer r.diagMu.Unlock()
	if r.dials.n == 0 || len(r.dials.last) < r.dials.n {
		return nil // not every address was tried yet
	}
	addrs := slices.Sorted(maps.Keys(r.dials.last))
	errs := make([]error, 0, len(addrs))
	for _, a := range addrs {
		err := r.dials.last[a]
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return &registry.UnreachableError{Errs: errs}
}

// hostProvider is the client's DNSHostProvider, which resolves the server
// names once, when the client is made, and lists every address it found;
// it tells the registry how many there are.
type hostProvider struct {
	*zk.DNSHostProvider
	r *Registry
}

func (h hostProvider) Init(servers []string) error {
	if err := h.DNSHostProvider.Init(servers); err != nil {
		return err
	}
	h.r.diagMu.Lock()
	h.r.dials.n = h.DNSHostProvider.Len()
	h.r.diagMu.Unlock()
	return nil
}

// dialChanged returns a channel that is closed when a dial ends or a server
// is found to speak another protocol.
func (r *Registry) dialChanged() <-chan struct{} {
	r.diagMu.Lock()
	defer r.diagMu.Unlock()
	return r.dials.changed
}

// rejectedErr returns the error of a server that answered in another
// protocol, or nil.
func (r *Registry) rejectedErr() error {
	r.diagMu.Lock()
	defer r.diagMu.Unlock()
	return r.dials.rejected
}

// maxConnectAnswer bounds the length that the first answer of a server may
// announce. The answer to a connect request is about 40 bytes; the client
// would allocate whatever the first four bytes say (1.2 GB for "HTTP").
const maxConnectAnswer = 64 << 10

// sniff checks the first four bytes a server sent on a new connection,
// which are the length of its answer to the connect request, and returns an
// error saying what the server speaks if they cannot be that.
func sniff(addr string, b []byte) error {
	if n := binary.BigEndian.Uint32(b); n <= maxConnectAnswer {
		return nil
	}
	what := fmt.Sprintf("an answer that starts with %q", b)
	switch {
	case string(b) == "HTTP":
		what = "HTTP"
	case (b[0] == 0x15 || b[0] == 0x16) && b[1] == 0x03:
		what = "TLS (use the server's plain client port)"
	}
	return fmt.Errorf("%s does not speak ZooKeeper's protocol: it sent %s; is it the client port of a ZooKeeper server (usually 2181)?", addr, what)
}

// trackedConn is a connection to a server that shutdown closes, so that no
// client goroutine stays blocked on a server that does not answer. It
// checks the first bytes the server sends (see sniff).
type trackedConn struct {
	net.Conn
	r       *Registry
	addr    string
	checked bool   // the first four bytes were checked; only the client's reader uses it
	pending []byte // the bytes read to check them, not returned yet
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if !c.checked {
		c.checked = true
		var b [4]byte
		if _, err := io.ReadFull(c.Conn, b[:]); err != nil {
			return 0, err
		}
		if err := sniff(c.addr, b[:]); err != nil {
			c.r.diagMu.Lock()
			c.r.dials.rejected = err
			c.r.dials.noteLocked()
			c.r.diagMu.Unlock()
			return 0, err
		}
		c.pending = b[:]
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *trackedConn) Close() error {
	c.r.netMu.Lock()
	delete(c.r.netConns, c)
	c.r.netMu.Unlock()
	return c.Conn.Close()
}

// dial opens a connection through the configured Dialer, tracks it so that
// it is closed when no longer used, and records the outcome.
func (r *Registry) dial(network, address string, timeout time.Duration) (net.Conn, error) {
	// The client dials only when it is done with its previous connection,
	// which it does not always close (not after a session expiry).
	r.closeConns()
	c, err := r.cfg.Dialer(network, address, timeout)
	r.diagMu.Lock()
	r.dials.last[address] = err
	if err == nil {
		r.dials.detail = "connected to " + address + " but no session was established (is it a ZooKeeper server, and serving?)"
	}
	r.dials.noteLocked()
	r.diagMu.Unlock()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, r: r, addr: address}
	r.netMu.Lock()
	r.netConns[tc] = struct{}{}
	r.netMu.Unlock()
	return tc, nil
}
