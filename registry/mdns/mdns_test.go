package mdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

// crash stops r the way SIGKILL would: no goodbye, no more answers.
func (r *Registry) crash() {
	r.mu.Lock()
	r.closed = true
	ws := r.watchers
	r.watchers = nil
	r.mu.Unlock()
	r.cancel()
	r.tr.close()
	r.wg.Wait()
	for w := range ws {
		w.End(registry.ErrClosed)
	}
}

func register(t *testing.T, r registry.Registry, in registry.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
}

func watch(t *testing.T, r registry.Registry, key registry.ServiceKey) registry.Watcher {
	t.Helper()
	w, err := r.Watch(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// removalTime registers an instance through prov, waits until the
// consumer's watch has it, calls remove and returns how long the watch
// took to report the instance gone.
func removalTime(t *testing.T, prov, cons registry.Registry, remove func(registry.Instance)) time.Duration {
	t.Helper()
	key := registrytest.UniqueKey(t)
	in := registry.Instance{Key: key, ID: "p1", Addr: "127.0.0.1:7001", Weight: 1}
	w := watch(t, cons, key)
	register(t, prov, in)
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("p1"))
	start := time.Now()
	remove(in)
	registrytest.WaitFor(t, w, 30*time.Second, registrytest.HasIDs())
	return time.Since(start)
}

func TestDeregisterGoneWithinOneSecond(t *testing.T) {
	prov, cons := openLo(t, ""), openLo(t, "")
	d := removalTime(t, prov, cons, func(in registry.Instance) {
		if err := prov.Deregister(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("figures: graceful Deregister: gone from the consumer's watch after %v", d)
	if d > time.Second {
		t.Errorf("Deregister took %v to reach the consumer, want at most 1s", d)
	}
}

func TestCloseSendsGoodbyes(t *testing.T) {
	prov, cons := openLo(t, ""), openLo(t, "")
	d := removalTime(t, prov, cons, func(registry.Instance) { prov.Close() })
	t.Logf("figures: provider Close: gone from the consumer's watch after %v", d)
	if d > time.Second {
		t.Errorf("Close took %v to reach the consumer, want at most 1s", d)
	}
}

func TestCrashedProviderExpires(t *testing.T) {
	const ttl = 3 * time.Second
	prov, cons := openLo(t, "ttl=3"), openLo(t, "")
	d := removalTime(t, prov, cons, func(registry.Instance) { prov.(*Registry).crash() })
	t.Logf("figures: provider gone without goodbye (ttl %v): gone from the consumer's watch after %v", ttl, d)
	if d > ttl+2*time.Second {
		t.Errorf("a crashed provider took %v to disappear, want at most TTL+2s = %v", d, ttl+2*time.Second)
	}
	if d < ttl-time.Second {
		t.Errorf("a crashed provider disappeared after %v, before its TTL %v", d, ttl)
	}
}

// A short TTL is no reason to drop a live provider: consumers refresh its
// records (RFC 6762 §5.2) and the provider answers.
func TestLiveProviderOutlivesItsTTL(t *testing.T) {
	prov, cons := openLo(t, "ttl=2"), openLo(t, "")
	key := registrytest.UniqueKey(t)
	w := watch(t, cons, key)
	register(t, prov, registry.Instance{Key: key, ID: "p1", Addr: "127.0.0.1:7001"})
	registrytest.WaitFor(t, w, 5*time.Second, registrytest.HasIDs("p1"))
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Second)
	defer cancel()
	if list, err := w.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the watch changed to %s (%v) while the provider was alive", registrytest.Format(list), err)
	}
}

// Two providers that register the same instance name (same key and ID) on
// one host: the second detects the conflict while probing and renames its
// instance; both stay on the network.
func TestConflictRenames(t *testing.T) {
	p1, p2, cons := openLo(t, ""), openLo(t, ""), openLo(t, "")
	key := registrytest.UniqueKey(t)
	register(t, p1, registry.Instance{Key: key, ID: "same", Addr: "127.0.0.1:7001"})
	register(t, p2, registry.Instance{Key: key, ID: "same", Addr: "127.0.0.1:7002"})
	r2 := p2.(*Registry)
	r2.mu.Lock()
	name := r2.entries[entryKey{key, "same"}].name
	r2.mu.Unlock()
	if !strings.HasPrefix(name, `same\ \(2\).`) {
		t.Errorf("the second provider's instance is %q, want it renamed to \"same (2)\"", name)
	}
	rc := cons.(*Registry)
	registrytest.Eventually(t, 5*time.Second, func() error {
		if _, err := cons.Discover(context.Background(), key); err != nil {
			return err
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if n := len(rc.cache.live(typeName(key, rc.domain), dns.TypePTR, time.Now())); n != 2 {
			return errors.New("want 2 instance names on the network")
		}
		return nil
	})
	// The consumer shows one instance per ID, the same on every consumer.
	list := registrytest.WaitDiscover(t, cons, key, 5*time.Second, registrytest.HasIDs("same"))
	if list[0].Addr != "127.0.0.1:7001" {
		t.Errorf("the consumer chose %s, want the first provider's", list[0].Addr)
	}
}

func TestRegisterRejectsWhatDoesNotFit(t *testing.T) {
	r := openLo(t, "")
	key := registrytest.UniqueKey(t)
	md := map[string]string{}
	for i := range 40 {
		md[strings.Repeat("k", i+1)] = strings.Repeat("v", 250)
	}
	for name, in := range map[string]registry.Instance{
		"oversized TXT":  {Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: md},
		"key with =":     {Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: map[string]string{"a=b": "c"}},
		"IPv6 zone":      {Key: key, ID: "a", Addr: "[fe80::1%lo]:1"},
		"invalid (port)": {Key: key, ID: "a", Addr: "127.0.0.1:0"},
	} {
		err := r.Register(context.Background(), in)
		var ie *registry.InputError
		if !errors.As(err, &ie) {
			t.Errorf("Register with %s: err = %v, want an InputError", name, err)
		}
	}
}

// A legacy unicast query (RFC 6762 §6.7), from another port than 5353, as
// dig -p 5353 @224.0.0.251 sends: the provider answers by unicast.
func TestLegacyUnicastQuery(t *testing.T) {
	lo := loopback(t)
	prov := openLo(t, "")
	key := registrytest.UniqueKey(t)
	register(t, prov, registry.Instance{Key: key, ID: "p1", Addr: "127.0.0.1:7001"})
	ifi, err := net.InterfaceByName(lo)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := ipv4.NewPacketConn(c)
	if err := pc.SetMulticastInterface(ifi); err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion(typeName(key, "local."), dns.TypePTR)
	b, _ := q.Pack()
	if _, err := pc.WriteTo(b, nil, &net.UDPAddr{IP: mdnsGroup, Port: Port}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9000)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no unicast answer: %v", err)
		}
		var m dns.Msg
		if m.Unpack(buf[:n]) != nil || m.Id != q.Id {
			continue
		}
		if len(m.Question) != 1 || len(m.Answer) == 0 {
			t.Fatalf("answer %v: want the question repeated and an answer", &m)
		}
		ptr, ok := m.Answer[0].(*dns.PTR)
		if !ok || !strings.HasPrefix(ptr.Ptr, "p1.") || ptr.Hdr.Ttl > 10 {
			t.Errorf("answer %v: want the PTR to p1 with a TTL of at most 10 s", m.Answer[0])
		}
		return
	}
}

// Close stops every goroutine the registry started: the reader, the
// timer loop, probes, announcements and delayed answers.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	loopback(t)
	before := runtime.NumGoroutine()
	ctx := context.Background()
	r, err := registry.Open(ctx, loURL(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	other, err := registry.Open(ctx, loURL(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	key := registrytest.UniqueKey(t)
	if _, err := r.Watch(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := other.Register(ctx, registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	// One registration still probing when Close comes.
	go r.Register(ctx, registry.Instance{Key: key, ID: "b", Addr: "127.0.0.1:2"})
	if _, err := r.Discover(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	registrytest.Eventually(t, 5*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after Close, %d before Open", n, before)
		}
		return nil
	})
}

// A Deregister while the Register of the same instance is still probing
// releases that Register at once, and nothing is announced.
func TestDeregisterWhileProbing(t *testing.T) {
	r := openLo(t, "")
	key := registrytest.UniqueKey(t)
	in := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"}
	errc := make(chan error, 1)
	go func() { errc <- r.Register(context.Background(), in) }()
	time.Sleep(100 * time.Millisecond)
	if err := r.Deregister(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Register: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Register still waits after the Deregister of its instance")
	}
	if list := registrytest.WaitDiscover(t, openLo(t, ""), key, time.Second, registrytest.HasIDs()); len(list) != 0 {
		t.Errorf("Discover = %s after Deregister", registrytest.Format(list))
	}
}

// A registered instance whose address changes: consumers see the new
// address at once (cache-flush), and the old host name's address record
// gets a goodbye.
func TestAddressChange(t *testing.T) {
	prov, cons := openLo(t, ""), openLo(t, "")
	key := registrytest.UniqueKey(t)
	w := watch(t, cons, key)
	v1 := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:7001"}
	v2 := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.3:7001"}
	register(t, prov, v1)
	registrytest.WaitFor(t, w, 5*time.Second, func(l []registry.Instance) bool { return len(l) == 1 && l[0].Addr == v1.Addr })
	rp := prov.(*Registry)
	rp.mu.Lock()
	oldHost := rp.entries[entryKey{key, "a"}].target
	rp.mu.Unlock()
	start := time.Now()
	register(t, prov, v2)
	registrytest.WaitFor(t, w, 5*time.Second, func(l []registry.Instance) bool { return len(l) == 1 && l[0].Addr == v2.Addr })
	if d := time.Since(start); d > time.Second {
		t.Errorf("the new address took %v", d)
	}
	rc := cons.(*Registry)
	registrytest.Eventually(t, 2*time.Second, func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if n := len(rc.cache.live(oldHost, dns.TypeA, time.Now())); n != 0 {
			return fmt.Errorf("the old host %s still has %d address records", oldHost, n)
		}
		return nil
	})
}
