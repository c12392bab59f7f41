package mdns

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/storks-rpc/storks/registry"
)

func TestServiceType(t *testing.T) {
	keys := []registry.ServiceKey{
		{Service: "helloworld.Greeter"},
		{Service: "helloworld.Greeter", Version: "1.0.0"},
		{Service: "helloworld.Greeter", Group: "1.0.0"},
		{Service: "helloworld.Greeter", Version: "1.0.0", Group: "blue"},
		{Service: "helloworld.Greeter@consumers"},
		{Service: strings.Repeat("very.long.package.name.", 10) + "Service", Version: strings.Repeat("v", 255)},
	}
	seen := map[string]registry.ServiceKey{}
	for _, k := range keys {
		st := ServiceType(k)
		name, ok := strings.CutPrefix(st, "_")
		name, ok2 := strings.CutSuffix(name, "._tcp")
		if !ok || !ok2 || len(name) > 15 || len(name) < 1 {
			t.Errorf("ServiceType(%v) = %q: want _NAME._tcp with NAME of 1-15 bytes", k, st)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				t.Errorf("ServiceType(%v) = %q has %q (RFC 6763 §7.2: letters, digits, hyphens)", k, st, c)
			}
		}
		if strings.Contains(name, "--") || strings.HasSuffix(name, "-") {
			t.Errorf("ServiceType(%v) = %q: bad hyphens", k, st)
		}
		if other, dup := seen[st]; dup {
			t.Errorf("ServiceType(%v) = ServiceType(%v) = %q", k, other, st)
		}
		seen[st] = k
		if ServiceType(k) != st {
			t.Errorf("ServiceType(%v) is not stable", k)
		}
	}
}

// roundTrip packs and unpacks a TXT record through miekg/dns, as the
// network would.
func roundTrip(t *testing.T, strs []string) []string {
	t.Helper()
	esc := make([]string, len(strs))
	for i, s := range strs {
		esc[i] = escapeTXT(s)
	}
	m := response(&dns.TXT{Hdr: hdr("x._storks-aaaaaaaa._tcp.local.", dns.TypeTXT, true, 120), Txt: esc})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var got dns.Msg
	if err := got.Unpack(b); err != nil {
		t.Fatal(err)
	}
	out := got.Answer[0].(*dns.TXT).Txt
	for i, s := range out {
		out[i] = unescapeTXT(s)
	}
	return out
}

func TestTXTRoundTrip(t *testing.T) {
	in := registry.Instance{
		Key:    registry.ServiceKey{Service: "helloworld.Greeter@consumers", Version: "1.0", Group: "blue"},
		ID:     `id with "quotes" \ and ünïcode`,
		Weight: 0,
		Metadata: map[string]string{
			"long":    strings.Repeat("0123456789", 100),
			"unicode": "héllo wörld ✓",
			"equals":  "a=b;c=d",
			"empty":   "",
			"ctl":     "tab\there\x00nul",
			"Case":    "upper",
		},
	}
	strs, err := encodeTXT(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range strs {
		if len(s) > 255 {
			t.Errorf("TXT string of %d bytes: %.40q...", len(s), s)
		}
		if !strings.Contains(s, "=") {
			t.Errorf("TXT string %q is not key=value", s)
		}
	}
	if strs[0] != "txtvers=1" {
		t.Errorf("first TXT string = %q, want txtvers=1", strs[0])
	}
	got, ok := decodeTXT(roundTrip(t, strs), "label")
	if !ok {
		t.Fatal("decodeTXT: not an instance")
	}
	if got.Key != in.Key || got.ID != in.ID || got.Weight != 0 || !maps.Equal(got.Metadata, in.Metadata) {
		t.Errorf("round trip = %+v, want %+v", got, in)
	}
}

func TestTXTRejects(t *testing.T) {
	key := registry.ServiceKey{Service: "s.S"}
	big := map[string]string{}
	for i := range 40 {
		big[strings.Repeat("k", i+1)] = strings.Repeat("v", 250)
	}
	for name, md := range map[string]map[string]string{
		"key with =":       {"a=b": "x"},
		"non-ASCII key":    {"ключ": "x"},
		"control in key":   {"a\nb": "x"},
		"key too long":     {strings.Repeat("k", 300): "x"},
		"record too large": big,
	} {
		_, err := encodeTXT(registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1", Metadata: md})
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "metadata") {
			t.Errorf("%s: err = %v, want an InputError naming the metadata", name, err)
		}
	}
}

func TestDecodeForeignTXT(t *testing.T) {
	// What another DNS-SD program announces: upper-case keys, a boolean
	// attribute, a duplicate key (the first wins), no ID and no weight.
	in, ok := decodeTXT([]string{"SVC=helloworld.Greeter", "flag", "svc=other", "M.zone=a", "=novalue"}, "python-1")
	if !ok {
		t.Fatal("not an instance")
	}
	if in.Key.Service != "helloworld.Greeter" || in.ID != "python-1" || in.Weight != registry.DefaultWeight || in.Metadata["zone"] != "a" {
		t.Errorf("decoded %+v", in)
	}
	if _, ok := decodeTXT([]string{"id=x"}, "l"); ok {
		t.Error("a TXT record without svc= decoded as an instance")
	}
	if _, ok := decodeTXT(nil, "l"); ok {
		t.Error("an empty TXT record decoded as an instance")
	}
}

func TestInstanceLabel(t *testing.T) {
	for _, id := range []string{"a", "10.0.0.1:8080", "with space", "a.b-c_d~e", "ünïcödé", strings.Repeat("x", 200), "bad\xffutf8", "ctl\x01"} {
		l := instanceLabel(id)
		if len(withSuffix(l, 99)) > maxLabel {
			t.Errorf("instanceLabel(%q) = %q: too long with a conflict suffix", id, l)
		}
		name := escapeLabel(withSuffix(l, 2)) + "._storks-aaaaaaaa._tcp.local."
		m := response(&dns.PTR{Hdr: hdr("_storks-aaaaaaaa._tcp.local.", dns.TypePTR, false, 120), Ptr: name})
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("label %q: %v", l, err)
		}
		var got dns.Msg
		if err := got.Unpack(b); err != nil {
			t.Fatal(err)
		}
		back := got.Answer[0].(*dns.PTR).Ptr
		if back != name {
			t.Errorf("name %q came back as %q", name, back)
		}
		raw, _, ok := firstLabel(back)
		if !ok || raw != withSuffix(l, 2) {
			t.Errorf("firstLabel(%q) = %q, %v; want %q", back, raw, ok, withSuffix(l, 2))
		}
	}
	if instanceLabel("x"+strings.Repeat("y", 100)) == instanceLabel("x"+strings.Repeat("y", 99)+"z") {
		t.Error("two long IDs with a common prefix have the same label")
	}
}

func TestSplitResponse(t *testing.T) {
	var answers, extra []dns.RR
	for i := range 1000 {
		name := fmt.Sprintf("instance-%04d._storks-aaaaaaaa._tcp.local.", i)
		answers = append(answers, &dns.PTR{Hdr: hdr("_storks-aaaaaaaa._tcp.local.", dns.TypePTR, false, 120), Ptr: name})
		extra = append(extra, &dns.TXT{Hdr: hdr(name, dns.TypeTXT, true, 120), Txt: []string{strings.Repeat("x", 200)}})
	}
	msgs := splitResponse(answers, extra)
	n := 0
	for _, m := range msgs {
		if m.Len() > maxPacket {
			t.Errorf("a response of %d bytes", m.Len())
		}
		n += len(m.Answer)
	}
	if n != len(answers) || len(msgs) < 2 {
		t.Errorf("%d answers in %d responses, want all %d in several", n, len(msgs), len(answers))
	}
}
