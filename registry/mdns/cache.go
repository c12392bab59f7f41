package mdns

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxRecords bounds the cache, whatever the network sends.
const maxRecords = 20000

// cacheFlush is the top bit of the class of a unique record in a response
// (RFC 6762 §10.2).
const cacheFlush = 0x8000

type setKey struct {
	name   string // folded
	rrtype uint16
}

// crec is one cached record.
type crec struct {
	rr      dns.RR
	id      string // rdata identity, see rdataID
	recv    time.Time
	ttl     time.Duration
	goodbye bool    // received with TTL 0: hidden, deleted after 1 s
	asked   int     // refresh queries sent since recv (RFC 6762 §5.2)
	jitter  float64 // 0..0.02 of the TTL, per record
}

func (c *crec) expires() time.Time { return c.recv.Add(c.ttl) }

// refreshDue reports whether a refresh query for c is due: at 80, 85, 90
// and 95% of its TTL, plus 0-2% (RFC 6762 §5.2).
func (c *crec) refreshDue(now time.Time) bool {
	if c.goodbye || c.asked >= 4 {
		return false
	}
	frac := 0.80 + 0.05*float64(c.asked) + c.jitter
	return !now.Before(c.recv.Add(time.Duration(float64(c.ttl) * frac)))
}

// cache holds the records received, as RFC 6762 §10 describes.
type cache struct {
	sets map[setKey][]*crec
	n    int
}

func newCache() *cache { return &cache{sets: make(map[setKey][]*crec)} }

// cacheable reports whether the cache keeps records of type t.
func cacheable(t uint16) bool {
	switch t {
	case dns.TypePTR, dns.TypeSRV, dns.TypeTXT, dns.TypeA, dns.TypeAAAA:
		return true
	}
	return false
}

// rdataID is the identity of a record's data, for comparing records.
func rdataID(rr dns.RR) string {
	switch v := rr.(type) {
	case *dns.PTR:
		return foldName(v.Ptr)
	case *dns.SRV:
		return strconv.Itoa(int(v.Priority)) + " " + strconv.Itoa(int(v.Weight)) + " " + strconv.Itoa(int(v.Port)) + " " + foldName(v.Target)
	case *dns.TXT:
		return strings.Join(v.Txt, "\x00")
	case *dns.A:
		return v.A.String()
	case *dns.AAAA:
		return v.AAAA.String()
	}
	return rr.String()
}

// recordID identifies a record by name, type and data.
func recordID(rr dns.RR) string {
	h := rr.Header()
	return foldName(h.Name) + "|" + strconv.Itoa(int(h.Rrtype)) + "|" + rdataID(rr)
}

// add merges the records of one response into the cache and reports
// whether the visible contents changed. Records of another class than IN,
// or of a type the cache does not keep, are ignored. A unique record
// (cache-flush bit set) replaces the SRV or TXT records of its name at once
// (an instance has one of each, RFC 6763 §6.8), and the addresses of its
// name received more than a second ago (RFC 6762 §10.2). A record with TTL
// 0 is a goodbye (§10.1): it is hidden at once and deleted a second later.
func (c *cache) add(rrs []dns.RR, now time.Time) bool {
	changed := false
	flushed := make(map[setKey]bool)
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class&^cacheFlush != dns.ClassINET || !cacheable(h.Rrtype) {
			continue
		}
		k := setKey{foldName(h.Name), h.Rrtype}
		if h.Class&cacheFlush != 0 && h.Rrtype != dns.TypePTR && h.Ttl > 0 && !flushed[k] {
			flushed[k] = true
			set := c.sets[k]
			kept := set[:0]
			for _, old := range set {
				if h.Rrtype == dns.TypeSRV || h.Rrtype == dns.TypeTXT || now.Sub(old.recv) > time.Second {
					if !old.goodbye {
						changed = true
					}
					c.n--
					continue
				}
				kept = append(kept, old)
			}
			c.setSet(k, kept)
		}
		id := rdataID(rr)
		var found *crec
		for _, old := range c.sets[k] {
			if old.id == id {
				found = old
				break
			}
		}
		if h.Ttl == 0 {
			if found != nil && !found.goodbye {
				found.goodbye, found.recv, found.ttl = true, now, time.Second
				changed = true
			}
			continue
		}
		if found != nil {
			if found.goodbye {
				changed = true
			}
			found.rr, found.recv, found.ttl, found.goodbye, found.asked = rr, now, time.Duration(h.Ttl)*time.Second, false, 0
			continue
		}
		if c.n >= maxRecords {
			continue
		}
		c.sets[k] = append(c.sets[k], &crec{rr: rr, id: id, recv: now, ttl: time.Duration(h.Ttl) * time.Second, jitter: rand.Float64() * 0.02})
		c.n++
		changed = true
	}
	return changed
}

func (c *cache) setSet(k setKey, set []*crec) {
	if len(set) == 0 {
		delete(c.sets, k)
	} else {
		c.sets[k] = set
	}
}

// expire deletes the records whose TTL has run out and reports whether a
// visible one went.
func (c *cache) expire(now time.Time) bool {
	changed := false
	for k, set := range c.sets {
		kept := set[:0]
		for _, r := range set {
			if !now.Before(r.expires()) {
				if !r.goodbye {
					changed = true
				}
				c.n--
				continue
			}
			kept = append(kept, r)
		}
		for i := len(kept); i < len(set); i++ {
			set[i] = nil
		}
		c.setSet(k, kept)
	}
	return changed
}

// live returns the visible records of a name and type.
func (c *cache) live(name string, t uint16, now time.Time) []*crec {
	var out []*crec
	for _, r := range c.sets[setKey{foldName(name), t}] {
		if !r.goodbye && now.Before(r.expires()) {
			out = append(out, r)
		}
	}
	return out
}
