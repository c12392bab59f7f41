package mdns

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/storks-rpc/storks/registry"
)

// offlineRegistry is a registry that sends nowhere and runs no goroutine
// of its own, with one announced instance and one watcher, for feeding
// packets to handle directly.
func offlineRegistry(t testing.TB) *Registry {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &transport{conn: c, pc: ipv4.NewPacketConn(c), ifset: map[int]bool{}, port: Port}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{domain: "local.", ttl: DefaultTTL, tr: tr, ctx: ctx, cancel: cancel, tag: "00000000",
		entries: map[entryKey]*entry{}, cache: newCache(), watchers: map[*watcher]struct{}{},
		browses: map[string]*browse{}, sent: map[string]time.Time{}, asked: map[string]time.Time{}}
	in := registry.Instance{Key: registry.ServiceKey{Service: "fuzz.S"}, ID: "a", Addr: "127.0.0.1:1"}
	raw, _ := encodeTXT(in)
	e := &entry{in: in, label: "a", n: 1, hostTag: r.tag, ip: net.IPv4(127, 0, 0, 1).To4(), port: 1, state: announced, ready: make(chan struct{})}
	for _, s := range raw {
		e.txt = append(e.txt, escapeTXT(s))
	}
	r.setNames(e)
	r.entries[entryKey{in.Key, in.ID}] = e
	w := &watcher{Feed: registry.NewFeed(context.Background()), key: in.Key}
	w.b = r.browseLocked(typeName(in.Key, r.domain))
	w.b.started = time.Time{}
	r.watchers[w] = struct{}{}
	t.Cleanup(func() {
		r.cancel()
		r.wg.Wait()
		c.Close()
	})
	return r
}

// seeds are packets a hostile or broken network may send.
func seeds(t testing.TB) [][]byte {
	r := offlineRegistry(t)
	e := r.entries[entryKey{registry.ServiceKey{Service: "fuzz.S"}, "a"}]
	ann, _ := r.announceMsgLocked(e).Pack()
	probe, _ := r.probeMsgLocked(e).Pack()
	q := new(dns.Msg)
	q.SetQuestion(e.stype, dns.TypePTR)
	query, _ := q.Pack()
	// Wrong class (CHAOS) for every record.
	wc := r.announceMsgLocked(e)
	for _, rr := range wc.Answer {
		rr.Header().Class = dns.ClassCHAOS
	}
	wrongClass, _ := wc.Pack()
	// A TXT record whose string length runs past the end of the packet.
	over := append([]byte(nil), ann...)
	over = append(over, 0xff, 'x')
	// A name that is a compression pointer to itself.
	loop := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(loop[2:], 0x8400) // response, authoritative
	binary.BigEndian.PutUint16(loop[6:], 1)      // one answer
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 120, 0, 4, 127, 0, 0, 1)
	// Goodbyes with an empty TXT record.
	gb := response(&dns.TXT{Hdr: hdr(e.name, dns.TypeTXT, true, 0), Txt: nil},
		&dns.PTR{Hdr: hdr(e.stype, dns.TypePTR, false, 0), Ptr: e.name})
	goodbye, _ := gb.Pack()
	return [][]byte{ann, probe, query, wrongClass, over, loop, ann[:len(ann)/2], ann[:13], goodbye, {}, make([]byte, 12), nsecPacket(t)}
}

// nsecPacket is a response whose second record is an NSEC record with an
// empty type bitmap block, as python-zeroconf 0.47 sends: miekg/dns
// rejects the whole message, parseLenient only that record.
func nsecPacket(t testing.TB) []byte {
	m := response(&dns.A{Hdr: hdr("nsec-host.local.", dns.TypeA, true, 120), A: net.IPv4(127, 0, 0, 9)})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(b[6:], 3) // three answers
	// NSEC for the name at offset 12: next name (pointer), window 0 length 0.
	b = append(b, 0xc0, 12, 0, 47, 0x80, 1, 0, 0, 0, 120, 0, 4, 0xc0, 12, 0, 0)
	return append(b, 0xc0, 12, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 127, 0, 0, 10)
}

func TestLenientParse(t *testing.T) {
	b := nsecPacket(t)
	var strict dns.Msg
	if strict.Unpack(b) == nil {
		t.Skip("miekg/dns now accepts the empty NSEC block")
	}
	m, ok := parsePacket(b)
	if !ok || len(m.Answer) != 2 {
		t.Fatalf("parsePacket = %v, %v; want the two A records", m, ok)
	}
}

// FuzzHandlePacket feeds arbitrary packets, from port 5353 and from
// another port, to the packet handling of a registry that has an instance
// and a watcher: nothing may panic.
func FuzzHandlePacket(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	r := offlineRegistry(f)
	mdnsSrc := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: Port}
	legacySrc := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := parsePacket(b)
		if !ok {
			return
		}
		r.handle(m, mdnsSrc)
		r.handle(m, legacySrc)
		r.tick(time.Now())
	})
}

func TestHostilePackets(t *testing.T) {
	r := offlineRegistry(t)
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: Port}
	for i, b := range seeds(t) {
		if m, ok := parsePacket(b); ok {
			r.handle(m, src)
		} else if i < 4 {
			t.Errorf("seed %d: a well-formed packet did not parse", i)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.cache.sets {
		if k.rrtype != dns.TypePTR && k.rrtype != dns.TypeSRV && k.rrtype != dns.TypeTXT && k.rrtype != dns.TypeA {
			t.Errorf("cached a record of type %d", k.rrtype)
		}
	}
	// The entry was not renamed by its own records.
	for _, e := range r.entries {
		if e.n != 1 {
			t.Errorf("own records taken for a conflict: entry renamed %q", e.name)
		}
	}
}
