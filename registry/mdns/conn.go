package mdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
)

// mdnsGroup is the IPv4 mDNS group, 224.0.0.251.
var mdnsGroup = net.IPv4(224, 0, 0, 251)

// maxPacket is the largest mDNS packet sent: RFC 6762 §17 allows 9000
// bytes. Larger answers are split.
const maxPacket = 9000

// maxRead is the largest packet read (a UDP datagram); reading one more
// byte tells a truncated read apart.
const maxRead = 65535

// transport is the one UDP socket of a registry: bound to 0.0.0.0:port with
// SO_REUSEADDR and SO_REUSEPORT, so that it shares port 5353 with every
// other mDNS program of the host (each receives every multicast packet),
// joined to 224.0.0.251 on each interface used.
type transport struct {
	conn   net.PacketConn
	pc     *ipv4.PacketConn
	ifaces []net.Interface
	ifset  map[int]bool
	port   int

	wmu sync.Mutex // SetMulticastInterface + WriteTo
}

// multicastInterfaces returns the interfaces to use: the one named, or
// every interface that is up and multicast-capable.
func multicastInterfaces(name string) ([]net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("mdns: interface %q: %w", name, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return nil, fmt.Errorf("mdns: interface %q is down", name)
		}
		return []net.Interface{*ifi}, nil
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns: listing interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
			out = append(out, ifi)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("mdns: no interface is up and multicast-capable")
	}
	return out, nil
}

func listen(ifaces []net.Interface, port int) (*transport, error) {
	lc := net.ListenConfig{Control: reuse}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("mdns: listening on UDP port %d: %w", port, err)
	}
	t := &transport{conn: conn, pc: ipv4.NewPacketConn(conn), ifset: make(map[int]bool), port: port}
	// The interface a packet came in on: with IP_MULTICAST_ALL (Linux's
	// default) the socket also gets the group's packets from interfaces
	// that other sockets joined it on.
	_ = t.pc.SetControlMessage(ipv4.FlagInterface, true)
	_ = t.pc.SetMulticastLoopback(true) // other registries on this host
	_ = t.pc.SetMulticastTTL(255)       // RFC 6762 §11
	var errs []error
	for _, ifi := range ifaces {
		if err := t.pc.JoinGroup(&ifi, &net.UDPAddr{IP: mdnsGroup}); err != nil {
			errs = append(errs, fmt.Errorf("interface %s: %w", ifi.Name, err))
			continue
		}
		t.ifaces = append(t.ifaces, ifi)
		t.ifset[ifi.Index] = true
	}
	if len(t.ifaces) == 0 {
		conn.Close()
		err := errors.Join(errs...)
		if len(ifaces) == 1 && ifaces[0].Flags&net.FlagLoopback != 0 && ifaces[0].Flags&net.FlagMulticast == 0 {
			err = fmt.Errorf("%w (the loopback interface has no MULTICAST flag: as root, run ip link set %s multicast on)", err, ifaces[0].Name)
		}
		return nil, fmt.Errorf("mdns: joining 224.0.0.251: %w", err)
	}
	return t, nil
}

// send multicasts b on every interface; it returns the first error only if
// every interface failed.
func (t *transport) send(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	dst := &net.UDPAddr{IP: mdnsGroup, Port: t.port}
	var first error
	ok := false
	for i := range t.ifaces {
		if err := t.pc.SetMulticastInterface(&t.ifaces[i]); err != nil {
			first = cmpErr(first, err)
			continue
		}
		if _, err := t.pc.WriteTo(b, nil, dst); err != nil {
			first = cmpErr(first, err)
			continue
		}
		ok = true
	}
	if ok {
		return nil
	}
	return first
}

// sendTo unicasts b to addr (legacy unicast replies, RFC 6762 §6.7).
func (t *transport) sendTo(b []byte, addr net.Addr) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_, err := t.pc.WriteTo(b, nil, addr)
	return err
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// read returns the next packet that came in on one of the interfaces used.
func (t *transport) read(buf []byte) (int, *net.UDPAddr, int, error) {
	for {
		n, cm, src, err := t.pc.ReadFrom(buf)
		if err != nil {
			return 0, nil, 0, err
		}
		ifindex := 0
		if cm != nil {
			ifindex = cm.IfIndex
			if ifindex != 0 && !t.ifset[ifindex] {
				continue
			}
		}
		ua, _ := src.(*net.UDPAddr)
		if ua == nil {
			continue
		}
		return n, ua, ifindex, nil
	}
}

func (t *transport) close() error { return t.conn.Close() }

// reuse sets SO_REUSEADDR and SO_REUSEPORT (where there is one) on the
// socket, so that every mDNS program of the host can bind port 5353.
func reuse(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = setReuse(fd) })
	if err != nil {
		return err
	}
	return serr
}
