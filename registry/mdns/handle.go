package mdns

import (
	"encoding/binary"
	"errors"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// parsePacket unpacks one mDNS packet. It returns false for anything that
// is not a well-formed standard query or response: truncated packets,
// compression loops, bad lengths (miekg/dns rejects them), other opcodes
// and non-zero response codes (RFC 6762 §18.3, §18.11).
func parsePacket(b []byte) (m *dns.Msg, ok bool) {
	defer func() {
		if recover() != nil {
			m, ok = nil, false
		}
	}()
	if len(b) < 12 || len(b) > maxRead {
		return nil, false
	}
	m = new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		// One record miekg/dns rejects (python-zeroconf's NSEC records
		// have an empty type bitmap block, say) must not cost the rest.
		if m, ok = parseLenient(b); !ok {
			return nil, false
		}
	}
	if m.Opcode != dns.OpcodeQuery || m.Rcode != dns.RcodeSuccess {
		return nil, false
	}
	return m, true
}

// parseLenient parses a packet record by record, skipping the records
// that miekg/dns cannot unpack but whose length is sound. It stops at the
// first record or question that runs past the packet.
func parseLenient(b []byte) (*dns.Msg, bool) {
	if len(b) < 12 {
		return nil, false
	}
	u16 := func(off int) int { return int(binary.BigEndian.Uint16(b[off:])) }
	m := new(dns.Msg)
	m.Id = uint16(u16(0))
	flags := u16(2)
	m.Response = flags&0x8000 != 0
	m.Opcode = (flags >> 11) & 0xf
	m.Authoritative = flags&0x0400 != 0
	m.Truncated = flags&0x0200 != 0
	m.Rcode = flags & 0xf
	qd, an, ns, ar := u16(4), u16(6), u16(8), u16(10)
	off := 12
	for range qd {
		name, next, err := dns.UnpackDomainName(b, off)
		if err != nil || next+4 > len(b) {
			return nil, false
		}
		m.Question = append(m.Question, dns.Question{Name: name, Qtype: uint16(u16(next)), Qclass: uint16(u16(next + 2))})
		off = next + 4
	}
	for i, sec := range []*[]dns.RR{&m.Answer, &m.Ns, &m.Extra} {
		n := []int{an, ns, ar}[i]
		for range n {
			_, next, err := dns.UnpackDomainName(b, off)
			if err != nil || next+10 > len(b) {
				return m, true
			}
			end := next + 10 + u16(next+8)
			if end > len(b) {
				return m, true
			}
			if rr, _, err := dns.UnpackRR(b, off); err == nil && rr != nil {
				*sec = append(*sec, rr)
			}
			off = end
		}
	}
	return m, true
}

func (r *Registry) readLoop() {
	defer r.wg.Done()
	buf := make([]byte, maxRead+1)
	for {
		n, src, _, err := r.tr.read(buf)
		if err != nil {
			if r.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if !r.sleep(10 * time.Millisecond) {
				return
			}
			continue
		}
		if n > maxRead {
			continue
		}
		m, ok := parsePacket(buf[:n])
		if !ok {
			continue
		}
		r.handle(m, src)
	}
}

// handle processes one parsed packet from src.
func (r *Registry) handle(m *dns.Msg, src *net.UDPAddr) {
	if m.Response {
		// RFC 6762 §11: responses not from port 5353 are ignored.
		if src.Port != r.tr.port {
			return
		}
		rrs := make([]dns.RR, 0, len(m.Answer)+len(m.Extra))
		rrs = append(rrs, m.Answer...)
		rrs = append(rrs, m.Extra...)
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		r.checkConflictsLocked(rrs)
		if r.cache.add(rrs, time.Now()) {
			r.publishLocked()
		}
		r.mu.Unlock()
		return
	}
	legacy := src.Port != r.tr.port
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if len(m.Ns) > 0 {
		r.checkProbeLocked(m)
	}
	answers, extra, shared := r.answerLocked(m, legacy)
	if len(answers) == 0 {
		r.mu.Unlock()
		return
	}
	var pkts [][]byte
	for _, resp := range splitResponse(answers, extra) {
		if legacy {
			// RFC 6762 §6.7: a unicast reply that repeats the question
			// and ID.
			resp.Id = m.Id
			resp.Question = m.Question
		}
		if b := r.packLocked(resp); b != nil {
			pkts = append(pkts, b)
		}
	}
	if legacy {
		r.mu.Unlock()
		for _, b := range pkts {
			_ = r.tr.sendTo(b, src)
		}
		return
	}
	if !shared {
		r.mu.Unlock()
		for _, b := range pkts {
			r.send(b)
		}
		return
	}
	// RFC 6762 §6: answers with shared records wait 20-120 ms.
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		if r.sleep(20*time.Millisecond + time.Duration(mrand.Int64N(int64(100*time.Millisecond)))) {
			for _, b := range pkts {
				r.send(b)
			}
		}
	}()
}

// splitResponse puts answers and additional records in as many responses
// as it takes for each to fit in maxPacket bytes (RFC 6762 §17): answers
// first, then the additional records that still fit in the last one. An
// answer that does not fit alone in a packet (which Register prevents) is
// left out.
func splitResponse(answers, extra []dns.RR) []*dns.Msg {
	var out []*dns.Msg
	cur := response()
	for _, rr := range answers {
		cur.Answer = append(cur.Answer, rr)
		if cur.Len() <= maxPacket {
			continue
		}
		cur.Answer = cur.Answer[:len(cur.Answer)-1]
		if len(cur.Answer) > 0 {
			out = append(out, cur)
		}
		cur = response(rr)
		if cur.Len() > maxPacket {
			cur = response()
		}
	}
	for _, rr := range extra {
		cur.Extra = append(cur.Extra, rr)
		if cur.Len() > maxPacket {
			cur.Extra = cur.Extra[:len(cur.Extra)-1]
		}
	}
	if len(cur.Answer) > 0 {
		out = append(out, cur)
	}
	return out
}

// answerLocked returns the answers to the questions of query m from the
// announced entries, less the known answers m carries with at least half
// their TTL left (RFC 6762 §7.1), and the additional records (§12).
func (r *Registry) answerLocked(m *dns.Msg, legacy bool) (answers, extra []dns.RR, shared bool) {
	ttl := r.ttlSec()
	if legacy {
		ttl = min(ttl, 10)
	}
	unique := !legacy
	known := make(map[string]bool)
	for _, rr := range m.Answer {
		if rr.Header().Ttl >= r.ttlSec()/2 {
			known[recordID(rr)] = true
		}
	}
	seen := make(map[string]bool)
	add := func(list *[]dns.RR, rr dns.RR) {
		id := recordID(rr)
		if seen[id] {
			return
		}
		seen[id] = true
		*list = append(*list, rr)
	}
	svcs := foldName(servicesName(r.domain))
	var addl []dns.RR
	for _, q := range m.Question {
		if q.Qclass&^0x8000 != dns.ClassINET && q.Qclass&^0x8000 != dns.ClassANY {
			continue
		}
		qn := foldName(q.Name)
		any := q.Qtype == dns.TypeANY
		for _, e := range r.entries {
			if e.state != announced {
				continue
			}
			sh, uq := r.records(e, ttl, unique)
			srv, txt := uq[0], uq[1]
			var addr dns.RR
			if len(uq) > 2 {
				addr = uq[2]
			}
			switch {
			case qn == svcs && (any || q.Qtype == dns.TypePTR):
				if !known[recordID(sh[1])] {
					add(&answers, sh[1])
					shared = true
				}
			case qn == foldName(e.stype) && (any || q.Qtype == dns.TypePTR):
				if !known[recordID(sh[0])] {
					add(&answers, sh[0])
					shared = true
					addl = append(addl, srv, txt)
					if addr != nil {
						addl = append(addl, addr)
					}
				}
			case qn == foldName(e.name):
				if (any || q.Qtype == dns.TypeSRV) && !known[recordID(srv)] {
					add(&answers, srv)
					if addr != nil {
						addl = append(addl, addr)
					}
				}
				if (any || q.Qtype == dns.TypeTXT) && !known[recordID(txt)] {
					add(&answers, txt)
				}
			case addr != nil && qn == foldName(e.target):
				if (any || q.Qtype == addr.Header().Rrtype) && !known[recordID(addr)] {
					add(&answers, addr)
				}
			}
		}
	}
	for _, rr := range addl {
		add(&extra, rr)
	}
	return answers, extra, shared
}

// ours reports whether rr is a record this registry sent recently.
func (r *Registry) oursLocked(rr dns.RR) bool {
	_, ok := r.sent[recordID(rr)]
	return ok
}

// checkConflictsLocked looks for records of another responder that claim a
// name one of our entries owns (RFC 6762 §9): an SRV or TXT record of the
// instance name, or an address of the host name, with other data. The
// entry then probes for a new name: "ID (2)", "ID (3)", ... for the
// instance, a new random tag for the host.
func (r *Registry) checkConflictsLocked(rrs []dns.RR) {
	for _, rr := range rrs {
		h := rr.Header()
		if h.Ttl == 0 || h.Class&^cacheFlush != dns.ClassINET {
			continue
		}
		var onName, onHost bool
		switch h.Rrtype {
		case dns.TypeSRV, dns.TypeTXT:
			onName = true
		case dns.TypeA, dns.TypeAAAA:
			onHost = true
		default:
			continue
		}
		n := foldName(h.Name)
		for _, e := range r.entries {
			hit := onName && n == foldName(e.name) || onHost && e.ip != nil && n == foldName(e.target)
			if !hit || r.oursLocked(rr) || r.matchesLocked(e, rr) {
				continue
			}
			r.conflictLocked(e, onHost)
		}
	}
}

// matchesLocked reports whether rr is one of e's current records.
func (r *Registry) matchesLocked(e *entry, rr dns.RR) bool {
	_, uq := r.records(e, 0, false)
	id := recordID(rr)
	for _, o := range uq {
		if recordID(o) == id {
			return true
		}
	}
	return false
}

func (r *Registry) conflictLocked(e *entry, onHost bool) {
	if onHost {
		e.hostTag = randTag()
	} else {
		e.n++
	}
	r.setNames(e)
	r.startProbeLocked(e, true)
}

// checkProbeLocked handles another host's probe for a name one of our
// probing entries wants (RFC 6762 §8.2): the proposal whose records sort
// later wins; the loser picks another name.
func (r *Registry) checkProbeLocked(m *dns.Msg) {
	for _, e := range r.entries {
		if e.state != probing {
			continue
		}
		var theirs []string
		for _, rr := range m.Ns {
			n := foldName(rr.Header().Name)
			if (n == foldName(e.name) || e.ip != nil && n == foldName(e.target)) && !r.oursLocked(rr) {
				theirs = append(theirs, recordID(rr))
			}
		}
		if len(theirs) == 0 {
			continue
		}
		var mine []string
		_, uq := r.records(e, 0, false)
		for _, rr := range uq {
			mine = append(mine, recordID(rr))
		}
		slices.Sort(theirs)
		slices.Sort(mine)
		if strings.Join(mine, "\n") < strings.Join(theirs, "\n") {
			r.conflictLocked(e, false)
		}
	}
}

func (r *Registry) tickLoop() {
	defer r.wg.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.tick(time.Now())
		}
	}
}

// tick expires the cache, publishes to the watchers whose browse has
// settled, and sends the queries that are due: browse queries, refreshes
// of the records in use at 80-95% of their TTL, and questions for the
// missing parts of instances being browsed.
func (r *Registry) tick(now time.Time) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	changed := r.cache.expire(now)
	for id, at := range r.sent {
		if now.Sub(at) > 10*time.Second {
			delete(r.sent, id)
		}
	}
	for id, at := range r.asked {
		if now.Sub(at) > time.Second {
			delete(r.asked, id)
		}
	}
	q := &dns.Msg{}
	q.Compress = true
	inQuery := make(map[string]bool)
	question := func(name string, t uint16) {
		id := foldName(name) + "|" + dns.TypeToString[t]
		if !inQuery[id] {
			inQuery[id] = true
			q.Question = append(q.Question, dns.Question{Name: name, Qtype: t, Qclass: dns.ClassINET})
		}
	}
	// ask asks for something missing, at most once a second.
	ask := func(name string, t uint16) {
		id := foldName(name) + "|" + dns.TypeToString[t]
		if _, dup := r.asked[id]; dup {
			return
		}
		r.asked[id] = now
		question(name, t)
	}
	// refresh asks for the records in use at 80, 85, 90 and 95% of their
	// TTL, however short (refreshDue spaces the questions).
	refresh := func(recs []*crec) {
		for _, c := range recs {
			if c.refreshDue(now) {
				c.asked++
				h := c.rr.Header()
				question(h.Name, h.Rrtype)
			}
		}
	}
	for _, b := range r.browses {
		ptrs := r.cache.live(b.name, dns.TypePTR, now)
		if !now.Before(b.next) {
			question(b.name, dns.TypePTR)
			// Known answers (RFC 6762 §7.1), with their remaining TTL,
			// as many as fit in the packet.
			for _, p := range ptrs {
				left := p.expires().Sub(now)
				if left <= p.ttl/2 {
					continue
				}
				ka := dns.Copy(p.rr)
				ka.Header().Class = dns.ClassINET
				ka.Header().Ttl = uint32(left / time.Second)
				q.Answer = append(q.Answer, ka)
				if q.Len() > maxPacket-512 {
					q.Answer = q.Answer[:len(q.Answer)-1]
					break
				}
			}
			b.next = now.Add(b.interval)
			b.interval = min(2*b.interval, maxBrowse)
		}
		refresh(ptrs)
		if foldName(b.name) == foldName(servicesName(r.domain)) {
			continue
		}
		for _, p := range ptrs {
			iname := p.rr.(*dns.PTR).Ptr
			srvs, txts := r.cache.live(iname, dns.TypeSRV, now), r.cache.live(iname, dns.TypeTXT, now)
			if len(srvs) == 0 {
				ask(iname, dns.TypeSRV)
			}
			if len(txts) == 0 {
				ask(iname, dns.TypeTXT)
			}
			refresh(srvs)
			refresh(txts)
			for _, s := range srvs {
				target := s.rr.(*dns.SRV).Target
				as, aaaas := r.cache.live(target, dns.TypeA, now), r.cache.live(target, dns.TypeAAAA, now)
				if len(as)+len(aaaas) == 0 && strings.HasSuffix(foldName(target), "."+foldName(r.domain)) {
					ask(target, dns.TypeA)
					ask(target, dns.TypeAAAA)
				}
				refresh(as)
				refresh(aaaas)
			}
		}
	}
	for w := range r.watchers {
		if !w.published && r.settled(w.b, now) {
			changed = true
		}
	}
	if changed {
		r.publishLocked()
	}
	var b []byte
	if len(q.Question) > 0 {
		b = r.packLocked(q)
	}
	r.mu.Unlock()
	r.send(b)
}
