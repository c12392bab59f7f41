package mdns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/storks-rpc/storks/registry"
)

func init() { registry.RegisterScheme("mdns", open) }

const (
	// Port is the mDNS port, which every registry shares with the other
	// mDNS software of its host.
	Port = 5353
	// DefaultTTL is the TTL of the records a registry announces when the
	// URL sets none: how long consumers keep an instance whose provider
	// died without a goodbye.
	DefaultTTL = 120 * time.Second
	// DefaultDomain is the mDNS domain.
	DefaultDomain = "local"

	minTTL = time.Second
	maxTTL = 75 * time.Minute

	probeWait  = 250 * time.Millisecond // RFC 6762 §8.1
	settleWait = 400 * time.Millisecond // a new browse's answers are in
	tickEvery  = 100 * time.Millisecond
	maxBrowse  = time.Hour // RFC 6762 §5.2
)

// testPort, when set by a test, replaces Port.
var testPort int

// Registry is an mDNS/DNS-SD registry; see the package documentation.
type Registry struct {
	domain string // fully qualified, "local."
	ttl    time.Duration
	tr     *transport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	tag      string // random part of the host names this registry announces
	entries  map[entryKey]*entry
	cache    *cache
	watchers map[*watcher]struct{}
	browses  map[string]*browse   // by folded type name
	sent     map[string]time.Time // recordIDs of what we sent recently
	asked    map[string]time.Time // name|type of recent one-off questions
}

var _ registry.Lister = (*Registry)(nil)

type entryKey struct {
	key registry.ServiceKey
	id  string
}

const (
	probing = iota
	announced
)

// entry is one registered instance.
type entry struct {
	in      registry.Instance
	label   string // raw base instance label
	n       int    // 1 + conflicts on the instance name
	hostTag string
	stype   string // escaped, fully qualified
	name    string // escaped, fully qualified instance name
	target  string // SRV target
	ip      net.IP // nil when the address has a host name
	port    uint16
	txt     []string // escaped TXT strings
	state   int
	gen     int           // bumped to stop the goroutines of the entry
	ready   chan struct{} // closed once first announced
}

type browse struct {
	name     string // escaped type name
	started  time.Time
	next     time.Time
	interval time.Duration
}

type watcher struct {
	*registry.Feed
	key       registry.ServiceKey
	b         *browse
	published bool
}

// open opens mdns://[?domain=local&iface=NAME&ttl=120s].
func open(ctx context.Context, u *url.URL) (registry.Registry, error) {
	if u.Host != "" || u.User != nil {
		return nil, &registry.InputError{Field: "URL host", Value: u.Host, Reason: "is not supported by mdns:// URLs (write mdns:// or mdns://?iface=NAME)"}
	}
	if u.Path != "" && u.Path != "/" {
		return nil, &registry.InputError{Field: "URL path", Value: u.Path, Reason: "is not supported by mdns:// URLs"}
	}
	if u.Fragment != "" {
		return nil, &registry.InputError{Field: "URL fragment", Value: u.Fragment, Reason: "is not supported by mdns:// URLs"}
	}
	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, &registry.InputError{Field: "URL query", Value: u.RawQuery, Reason: "is malformed: " + err.Error()}
	}
	domain, ifname, ttl := DefaultDomain, "", DefaultTTL
	for k, v := range vals {
		if len(v) > 1 {
			return nil, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		switch k {
		case "domain":
			d := strings.TrimSuffix(v[0], ".")
			if _, ok := dns.IsDomainName(d + "."); !ok || d == "" || strings.ContainsAny(d, `\ `) {
				return nil, &registry.InputError{Field: "URL query parameter domain", Value: v[0], Reason: "is not a domain name"}
			}
			domain = d
		case "iface":
			if v[0] == "" {
				return nil, &registry.InputError{Field: "URL query parameter iface", Reason: "is empty"}
			}
			ifname = v[0]
		case "ttl":
			d, err := parseTTL(v[0])
			if err != nil {
				return nil, err
			}
			ttl = d
		default:
			return nil, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is not supported by mdns:// URLs (supported: domain, iface, ttl)"}
		}
	}
	ifaces, err := multicastInterfaces(ifname)
	if err != nil {
		if ifname != "" {
			return nil, &registry.InputError{Field: "URL query parameter iface", Value: ifname, Reason: err.Error()}
		}
		return nil, err
	}
	port := Port
	if testPort != 0 {
		port = testPort
	}
	tr, err := listen(ifaces, port)
	if err != nil {
		return nil, err
	}
	return newRegistry(tr, domain, ttl), nil
}

// parseTTL accepts a Go duration ("90s", "2m") or whole seconds ("90").
func parseTTL(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, err2 := strconv.Atoi(s)
		if err2 != nil {
			return 0, &registry.InputError{Field: "URL query parameter ttl", Value: s, Reason: "is not a duration (such as 120s) or a number of seconds"}
		}
		d = time.Duration(n) * time.Second
	}
	if d < minTTL || d > maxTTL || d%time.Second != 0 {
		return 0, &registry.InputError{Field: "URL query parameter ttl", Value: s, Reason: fmt.Sprintf("must be whole seconds from %v to %v", minTTL, maxTTL)}
	}
	return d, nil
}

func newRegistry(tr *transport, domain string, ttl time.Duration) *Registry {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registry{
		domain:   dns.Fqdn(domain),
		ttl:      ttl,
		tr:       tr,
		ctx:      ctx,
		cancel:   cancel,
		tag:      randTag(),
		entries:  make(map[entryKey]*entry),
		cache:    newCache(),
		watchers: make(map[*watcher]struct{}),
		browses:  make(map[string]*browse),
		sent:     make(map[string]time.Time),
		asked:    make(map[string]time.Time),
	}
	r.wg.Add(2)
	go r.readLoop()
	go r.tickLoop()
	return r
}

func randTag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *Registry) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// --- records --------------------------------------------------------------

func hdr(name string, t uint16, unique bool, ttl uint32) dns.RR_Header {
	class := uint16(dns.ClassINET)
	if unique {
		class |= cacheFlush
	}
	return dns.RR_Header{Name: name, Rrtype: t, Class: class, Ttl: ttl}
}

// records returns the records of e: the shared PTRs (type enumeration and
// instance), and the unique SRV, TXT and address records. unique sets the
// cache-flush bit on the latter.
func (r *Registry) records(e *entry, ttl uint32, unique bool) (shared, uniq []dns.RR) {
	shared = []dns.RR{
		&dns.PTR{Hdr: hdr(e.stype, dns.TypePTR, false, ttl), Ptr: e.name},
		&dns.PTR{Hdr: hdr(servicesName(r.domain), dns.TypePTR, false, ttl), Ptr: e.stype},
	}
	uniq = []dns.RR{
		&dns.SRV{Hdr: hdr(e.name, dns.TypeSRV, unique, ttl), Target: e.target, Port: e.port},
		&dns.TXT{Hdr: hdr(e.name, dns.TypeTXT, unique, ttl), Txt: slices.Clone(e.txt)},
	}
	if a := r.addrRecord(e, ttl, unique); a != nil {
		uniq = append(uniq, a)
	}
	return shared, uniq
}

func (r *Registry) addrRecord(e *entry, ttl uint32, unique bool) dns.RR {
	if e.ip == nil {
		return nil
	}
	if v4 := e.ip.To4(); v4 != nil {
		return &dns.A{Hdr: hdr(e.target, dns.TypeA, unique, ttl), A: v4}
	}
	return &dns.AAAA{Hdr: hdr(e.target, dns.TypeAAAA, unique, ttl), AAAA: e.ip.To16()}
}

func (r *Registry) ttlSec() uint32 { return uint32(r.ttl / time.Second) }

// setNames recomputes the names of e from its label, conflict count and
// host tag.
func (r *Registry) setNames(e *entry) {
	e.stype = typeName(e.in.Key, r.domain)
	e.name = escapeLabel(withSuffix(e.label, e.n)) + "." + e.stype
	if e.ip != nil {
		e.target = hostLabel(e.hostTag, e.ip) + "." + r.domain
	}
}

// --- sending --------------------------------------------------------------

// pack packs m and remembers the unique records it carries as ours, so
// that their echo is not taken for a conflict.
func (r *Registry) packLocked(m *dns.Msg) []byte {
	now := time.Now()
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			r.sent[recordID(rr)] = now
		}
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

func (r *Registry) send(b []byte) {
	if b != nil {
		_ = r.tr.send(b)
	}
}

func response(answers ...dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.Response, m.Authoritative = true, true
	m.Answer = answers
	m.Compress = true
	return m
}

// announceMsgLocked is the unsolicited response announcing e.
func (r *Registry) announceMsgLocked(e *entry) *dns.Msg {
	shared, uniq := r.records(e, r.ttlSec(), true)
	return response(append(shared, uniq...)...)
}

// goodbyeLocked returns the records of e with TTL 0, leaving out those that
// another entry of this registry still announces.
func (r *Registry) goodbyeLocked(e *entry) []dns.RR {
	shared, uniq := r.records(e, 0, false)
	keep := make(map[string]bool)
	for _, o := range r.entries {
		if o == e || o.state != announced {
			continue
		}
		s, u := r.records(o, 0, false)
		for _, rr := range append(s, u...) {
			keep[recordID(rr)] = true
		}
	}
	var out []dns.RR
	for _, rr := range append(shared, uniq...) {
		if !keep[recordID(rr)] {
			out = append(out, rr)
		}
	}
	return out
}

// --- Registry methods -----------------------------------------------------

// Register announces in: it probes its names, announces its records and
// returns once the first announcement is sent (about one second for a new
// instance, at once for a change to a registered one).
func (r *Registry) Register(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.Validate()); err != nil {
		return err
	}
	host, portStr, _ := net.SplitHostPort(in.Addr)
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return &registry.InputError{Field: "address", Value: in.Addr, Reason: "port must be 0-65535"}
	}
	var ip net.IP
	target := ""
	if strings.Contains(host, "%") {
		return &registry.InputError{Field: "address", Value: in.Addr, Reason: "has an IPv6 zone, which an mDNS address record cannot carry"}
	}
	if ip = net.ParseIP(host); ip == nil {
		target = dns.Fqdn(host)
		if _, ok := dns.IsDomainName(target); !ok || strings.ContainsAny(host, `\ ;()"'@`) {
			return &registry.InputError{Field: "address", Value: in.Addr, Reason: "host is not a DNS name"}
		}
	}
	raw, err := encodeTXT(in)
	if err != nil {
		return err
	}
	txt := make([]string, len(raw))
	for i, s := range raw {
		txt[i] = escapeTXT(s)
	}
	in = in.Clone()

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	k := entryKey{in.Key, in.ID}
	e := r.entries[k]
	switch {
	case e == nil:
		e = &entry{in: in, label: instanceLabel(in.ID), n: 1, hostTag: r.tag, ip: ip, target: target,
			port: uint16(port), txt: txt, ready: make(chan struct{})}
		r.setNames(e)
		r.entries[k] = e
		r.startProbeLocked(e, false)
	case sameInstance(e.in, in):
	default:
		var bye []dns.RR
		if e.state == announced {
			bye = r.goodbyeLocked(e) // the records the change drops
		}
		e.in, e.ip, e.target, e.port, e.txt = in, ip, target, uint16(port), txt
		r.setNames(e)
		if e.state == announced {
			_, uniq := r.records(e, 0, false)
			still := make(map[string]bool)
			for _, rr := range uniq {
				still[recordID(rr)] = true
			}
			var goodbye []dns.RR
			for _, rr := range bye {
				// Only the address of a host name we no longer use:
				// SRV and TXT are replaced by the cache-flush bit.
				if t := rr.Header().Rrtype; (t == dns.TypeA || t == dns.TypeAAAA) && !still[recordID(rr)] {
					goodbye = append(goodbye, rr)
				}
			}
			e.gen++
			r.startAnnounceLocked(e, goodbye)
		}
	}
	ready := e.ready
	r.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return registry.ErrClosed
	}
}

func sameInstance(a, b registry.Instance) bool {
	if a.Key != b.Key || a.ID != b.ID || a.Addr != b.Addr || a.Weight != b.Weight || len(a.Metadata) != len(b.Metadata) {
		return false
	}
	for k, v := range a.Metadata {
		if w, ok := b.Metadata[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// startProbeLocked (re)starts probing e's names (RFC 6762 §8.1) in a
// goroutine, which then announces e.
func (r *Registry) startProbeLocked(e *entry, afterConflict bool) {
	e.state = probing
	e.gen++
	gen := e.gen
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		delay := time.Duration(mrand.Int64N(int64(probeWait)))
		if afterConflict && e.n > 15 {
			delay = 5 * time.Second // RFC 6762 §8.1: too many conflicts
		}
		if !r.sleep(delay) {
			return
		}
		for range 3 {
			r.mu.Lock()
			if !r.currentLocked(e, gen) {
				r.mu.Unlock()
				return
			}
			b := r.packLocked(r.probeMsgLocked(e))
			r.mu.Unlock()
			r.send(b)
			if !r.sleep(probeWait) {
				return
			}
		}
		r.mu.Lock()
		if !r.currentLocked(e, gen) {
			r.mu.Unlock()
			return
		}
		e.state = announced
		r.mu.Unlock()
		r.announceLoop(e, gen, nil)
	}()
}

// startAnnounceLocked announces e again after a change, with the goodbyes
// of the records the change dropped.
func (r *Registry) startAnnounceLocked(e *entry, goodbye []dns.RR) {
	gen := e.gen
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.announceLoop(e, gen, goodbye)
	}()
}

// announceLoop sends the announcement of e twice, one second apart (RFC
// 6762 §8.3), as long as e is current.
func (r *Registry) announceLoop(e *entry, gen int, goodbye []dns.RR) {
	for i := range 2 {
		if i > 0 && !r.sleep(time.Second) {
			return
		}
		r.mu.Lock()
		if !r.currentLocked(e, gen) {
			r.mu.Unlock()
			return
		}
		m := r.announceMsgLocked(e)
		if i == 0 {
			m.Answer = append(m.Answer, goodbye...)
		}
		b := r.packLocked(m)
		if r.cache.add(m.Answer, time.Now()) {
			r.publishLocked()
		}
		if i == 0 {
			closeReady(e)
		}
		r.mu.Unlock()
		r.send(b)
	}
}

// closeReady releases the Register calls waiting for e.
func closeReady(e *entry) {
	select {
	case <-e.ready:
	default:
		close(e.ready)
	}
}

func (r *Registry) currentLocked(e *entry, gen int) bool {
	return !r.closed && e.gen == gen && r.entries[entryKey{e.in.Key, e.in.ID}] == e
}

// sleep waits d, or returns false if the registry is closed first.
func (r *Registry) sleep(d time.Duration) bool {
	if d <= 0 {
		return r.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// probeMsgLocked is a probe for e's names: ANY questions, with the
// proposed records in the authority section (RFC 6762 §8.1, §8.2). The
// unicast-response bit is left clear: responders then answer by multicast,
// which every mDNS socket of the host receives, while a unicast reply to
// port 5353 would reach only one of the programs sharing it (§15.1).
func (r *Registry) probeMsgLocked(e *entry) *dns.Msg {
	m := new(dns.Msg)
	m.Compress = true
	m.Question = []dns.Question{{Name: e.name, Qtype: dns.TypeANY, Qclass: dns.ClassINET}}
	if e.ip != nil {
		m.Question = append(m.Question, dns.Question{Name: e.target, Qtype: dns.TypeANY, Qclass: dns.ClassINET})
	}
	_, m.Ns = r.records(e, r.ttlSec(), false)
	if e.ip == nil {
		m.Ns = m.Ns[:2]
	}
	return m
}

// Deregister removes the instance and sends its goodbye (TTL 0), so that
// consumers drop it at once.
func (r *Registry) Deregister(ctx context.Context, in registry.Instance) error {
	if err := registry.Check(ctx, r.isClosed(), in.ValidateRef()); err != nil {
		return err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	k := entryKey{in.Key, in.ID}
	e := r.entries[k]
	if e == nil {
		r.mu.Unlock()
		return nil
	}
	var b []byte
	if e.state == announced {
		bye := r.goodbyeLocked(e)
		m := response(bye...)
		b = r.packLocked(m)
		if r.cache.add(bye, time.Now()) {
			r.publishLocked()
		}
	}
	delete(r.entries, k)
	e.gen++
	closeReady(e) // a Register still probing returns: Deregister came later
	r.mu.Unlock()
	r.send(b)
	return nil
}

// Discover returns the instances of key seen on the network. The first
// call for a key starts browsing for it and waits for the answers (a few
// hundred milliseconds); later calls answer from the cache.
func (r *Registry) Discover(ctx context.Context, key registry.ServiceKey) ([]registry.Instance, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, registry.ErrClosed
	}
	b := r.browseLocked(typeName(key, r.domain))
	r.mu.Unlock()
	if err := r.waitSettled(ctx, b); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, registry.ErrClosed
	}
	return r.viewLocked(key, time.Now()), nil
}

func (r *Registry) waitSettled(ctx context.Context, b *browse) error {
	wait := time.Until(b.started.Add(settleWait))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return registry.ErrClosed
	}
}

// browseLocked returns the browse of a type name, starting it if need be:
// its first query goes out 20-120 ms later, the next ones 1, 2, 4, ...
// seconds apart, up to an hour (RFC 6762 §5.2).
func (r *Registry) browseLocked(name string) *browse {
	k := foldName(name)
	if b := r.browses[k]; b != nil {
		return b
	}
	now := time.Now()
	b := &browse{name: name, started: now, next: now.Add(20*time.Millisecond + time.Duration(mrand.Int64N(int64(100*time.Millisecond)))), interval: time.Second}
	r.browses[k] = b
	return b
}

// Watch browses for key continuously and reports every change: instances
// announced, updated, said goodbye to, or expired.
func (r *Registry) Watch(ctx context.Context, key registry.ServiceKey) (registry.Watcher, error) {
	if err := registry.Check(ctx, r.isClosed(), key.Validate()); err != nil {
		return nil, err
	}
	w := &watcher{Feed: registry.NewFeed(ctx), key: key}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		w.End(registry.ErrClosed)
		return nil, registry.ErrClosed
	}
	w.b = r.browseLocked(typeName(key, r.domain))
	r.watchers[w] = struct{}{}
	if r.settled(w.b, time.Now()) {
		w.published = true
		w.Publish(r.viewLocked(key, time.Now()))
	}
	r.mu.Unlock()
	w.OnEnd(func() {
		r.mu.Lock()
		delete(r.watchers, w)
		r.mu.Unlock()
	})
	return w, nil
}

func (r *Registry) settled(b *browse, now time.Time) bool {
	return !now.Before(b.started.Add(settleWait))
}

// publishLocked publishes the current list of every settled watcher.
func (r *Registry) publishLocked() {
	now := time.Now()
	for w := range r.watchers {
		if r.settled(w.b, now) {
			w.published = true
			w.Publish(r.viewLocked(w.key, now))
		}
	}
}

// Services lists the keys that have instances on the network (see
// registry.Lister). The first call browses the DNS-SD service types and
// waits for the answers.
func (r *Registry) Services(ctx context.Context) ([]registry.ServiceKey, error) {
	if err := registry.Check(ctx, r.isClosed(), nil); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, registry.ErrClosed
	}
	b := r.browseLocked(servicesName(r.domain))
	r.mu.Unlock()
	if err := r.waitSettled(ctx, b); err != nil {
		return nil, err
	}
	// Browse every Storks type seen, and wait for the new ones.
	r.mu.Lock()
	now := time.Now()
	var fresh []*browse
	for _, p := range r.cache.live(servicesName(r.domain), dns.TypePTR, now) {
		t := p.rr.(*dns.PTR).Ptr
		if r.isStorksType(t) {
			if b := r.browseLocked(t); !r.settled(b, now) {
				fresh = append(fresh, b)
			}
		}
	}
	r.mu.Unlock()
	for _, b := range fresh {
		if err := r.waitSettled(ctx, b); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, registry.ErrClosed
	}
	now = time.Now()
	seen := make(map[registry.ServiceKey]bool)
	for k, set := range r.cache.sets {
		if k.rrtype != dns.TypePTR || !r.isStorksType(k.name) {
			continue
		}
		for _, p := range set {
			if p.goodbye || !now.Before(p.expires()) {
				continue
			}
			if in, ok := r.instanceLocked(p.rr.(*dns.PTR).Ptr, k.name, now); ok {
				seen[in.Key] = true
			}
		}
	}
	keys := make([]registry.ServiceKey, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	registry.SortKeys(keys)
	return keys, nil
}

// isStorksType reports whether name is "_storks-XXXXXXXX._tcp.<domain>".
func (r *Registry) isStorksType(name string) bool {
	name = foldName(name)
	rest, ok := strings.CutPrefix(name, "_"+typePrefix)
	if !ok || len(rest) < 8 {
		return false
	}
	return rest[8:] == "._tcp."+foldName(r.domain)
}

// viewLocked builds the instance list of key from the cache, sorted by ID.
func (r *Registry) viewLocked(key registry.ServiceKey, now time.Time) []registry.Instance {
	st := typeName(key, r.domain)
	byID := make(map[string]registry.Instance)
	names := make(map[string]string)
	for _, p := range r.cache.live(st, dns.TypePTR, now) {
		iname := p.rr.(*dns.PTR).Ptr
		in, ok := r.instanceLocked(iname, st, now)
		if !ok || in.Key != key {
			continue
		}
		// The same ID announced twice (two programs misconfigured alike):
		// the instance name that sorts first wins, on every consumer.
		if prev, dup := names[in.ID]; dup && prev <= foldName(iname) {
			continue
		}
		names[in.ID] = foldName(iname)
		byID[in.ID] = in
	}
	list := make([]registry.Instance, 0, len(byID))
	for _, in := range byID {
		list = append(list, in)
	}
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// instanceLocked builds the instance announced under iname, an instance of
// the service type st, from its SRV, TXT and address records.
func (r *Registry) instanceLocked(iname, st string, now time.Time) (registry.Instance, bool) {
	label, rest, ok := firstLabel(iname)
	if !ok || foldName(rest) != foldName(st) {
		return registry.Instance{}, false
	}
	srvs := r.cache.live(iname, dns.TypeSRV, now)
	txts := r.cache.live(iname, dns.TypeTXT, now)
	if len(srvs) == 0 || len(txts) == 0 {
		return registry.Instance{}, false
	}
	raw := txts[0].rr.(*dns.TXT).Txt
	strs := make([]string, len(raw))
	for i, s := range raw {
		strs[i] = unescapeTXT(s)
	}
	in, ok := decodeTXT(strs, label)
	if !ok || typeName(in.Key, r.domain) != st && foldName(typeName(in.Key, r.domain)) != foldName(st) {
		return registry.Instance{}, false
	}
	srv := srvs[0].rr.(*dns.SRV)
	host := r.hostOf(srv.Target, now)
	if host == "" {
		return registry.Instance{}, false
	}
	in.Addr = net.JoinHostPort(host, strconv.Itoa(int(srv.Port)))
	return in, true
}

// hostOf is the address of an SRV target: its lowest IPv4 address in the
// cache, else its lowest IPv6 address, else the name itself (a name
// outside the mDNS domain, such as "localhost", or one the host resolves).
func (r *Registry) hostOf(target string, now time.Time) string {
	var ips []string
	for _, a := range r.cache.live(target, dns.TypeA, now) {
		ips = append(ips, a.rr.(*dns.A).A.String())
	}
	if len(ips) == 0 {
		for _, a := range r.cache.live(target, dns.TypeAAAA, now) {
			ips = append(ips, a.rr.(*dns.AAAA).AAAA.String())
		}
	}
	if len(ips) > 0 {
		slices.Sort(ips)
		return ips[0]
	}
	name := strings.TrimSuffix(target, ".")
	if name == "" || strings.ContainsAny(name, `\ `) {
		return ""
	}
	return name
}

// Close sends the goodbyes of every registered instance, stops every
// goroutine of the registry, ends its watchers and closes its socket.
func (r *Registry) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return registry.ErrClosed
	}
	var msgs [][]byte
	// goodbyeLocked leaves out the records that other entries still
	// announce: the entries go one by one, so that the last one says them.
	for k, e := range r.entries {
		if e.state == announced {
			msgs = append(msgs, r.packLocked(response(r.goodbyeLocked(e)...)))
		}
		e.gen++
		delete(r.entries, k)
	}
	r.closed = true
	ws := r.watchers
	r.watchers = nil
	r.mu.Unlock()
	for _, b := range msgs {
		r.send(b)
	}
	r.cancel()
	err := r.tr.close()
	r.wg.Wait()
	for w := range ws {
		w.End(registry.ErrClosed)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
