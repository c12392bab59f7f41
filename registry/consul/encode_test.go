package consul

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/registrytest"
)

func TestServiceName(t *testing.T) {
	long := "com.example.very.long.package.name.that.goes.on.and.on.ServiceWithALongName"
	cases := []struct{ in, want string }{
		{"helloworld.Greeter", "helloworld-greeter"},
		{"Greeter", "greeter"},
		{"a_b.c-d", "a-b-c-d"},
		{"..x..y..", "x-y"},
		{"ünï", "n"},
		{"...", "storks"},
	}
	for _, tc := range cases {
		if got := ServiceName(tc.in); got != tc.want {
			t.Errorf("ServiceName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := ServiceName(long)
	if len(got) > 63 || !strings.HasSuffix(got, "-"+shortHash(long, 8)) {
		t.Errorf("ServiceName(long) = %q (%d chars), want at most 63 ending with a hash", got, len(got))
	}
	if other := ServiceName(long + "2"); other == got {
		t.Errorf("two long names that differ at the end share the Consul name %q", got)
	}
	for _, s := range []string{"helloworld.Greeter", long, "ünï", "A..B"} {
		name := ServiceName(s)
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				t.Errorf("ServiceName(%q) = %q is not DNS-friendly", s, name)
				break
			}
		}
		if name[0] == '-' || name[len(name)-1] == '-' {
			t.Errorf("ServiceName(%q) = %q starts or ends with '-'", s, name)
		}
	}
}

func TestServiceID(t *testing.T) {
	base := registry.ServiceKey{Service: "helloworld.Greeter"}
	keys := []registry.ServiceKey{
		base,
		{Service: "helloworld.Greeter", Version: "1"},
		{Service: "helloworld.Greeter", Group: "1"},
		{Service: "helloworld_Greeter"}, // same Consul name
		{Service: "helloworld.greeter"},
	}
	ids := []string{"a", "a/b", "a_b", "a b", "ünï", strings.Repeat("x", 300), "10.0.0.1:8080"}
	seen := map[string]string{}
	for _, k := range keys {
		for _, id := range ids {
			sid := ServiceID(k, id)
			what := fmt.Sprintf("%v %q", k, id)
			if prev, dup := seen[sid]; dup {
				t.Errorf("ServiceID(%s) = ServiceID(%s) = %q", what, prev, sid)
			}
			seen[sid] = what
			for i := 0; i < len(sid); i++ {
				c := sid[i]
				if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
					t.Errorf("ServiceID(%s) = %q has %q, which is not URL-path safe", what, sid, c)
					break
				}
			}
			if len(sid) > 63+1+32+1+24 {
				t.Errorf("ServiceID(%s) = %q is %d bytes long", what, sid, len(sid))
			}
		}
	}
	if got := ServiceID(base, "10.0.0.1:8080"); !strings.HasPrefix(got, "helloworld-greeter-10.0.0.1_8080-") {
		t.Errorf("ServiceID = %q, want it to start with the readable parts", got)
	}
}

// roundTrip encodes in as a Consul service and decodes it back.
func roundTrip(t *testing.T, in registry.Instance) registry.Instance {
	t.Helper()
	meta, err := encodeMeta(in)
	if err != nil {
		t.Fatalf("encodeMeta(%s): %v", registrytest.Format([]registry.Instance{in}), err)
	}
	for k, v := range meta {
		if !validMetaKey(k) || strings.HasPrefix(k, "consul-") || len(v) > metaValueMaxLen {
			t.Errorf("meta entry %q=%q breaks Consul's rules", k, v)
		}
	}
	if len(meta) > metaMaxPairs {
		t.Errorf("%d meta entries, more than Consul's %d", len(meta), metaMaxPairs)
	}
	if !matches(meta, in.Key) {
		t.Errorf("the meta does not match its own key")
	}
	host, port := "127.0.0.1", 1
	svc := &api.AgentService{ID: "x", Address: host, Port: port, Meta: meta}
	out, err := decodeService(svc, in.Key)
	if err != nil {
		t.Fatalf("decodeService: %v", err)
	}
	return out
}

func TestMetaRoundTrip(t *testing.T) {
	key := registry.ServiceKey{Service: "s", Version: "v1", Group: "g"}
	big := map[string]string{}
	for i := range 55 {
		big[fmt.Sprintf("k%02d", i)] = "v"
	}
	odd := map[string]string{
		"zone":                   "eu",
		"dotted.key":             "x",
		"ünïcödé key":            "ü",
		"storks-service":         "not the real one",
		"consul-reserved":        "y",
		"":                       "empty key",
		"long":                   strings.Repeat("é", 600), // 1200 bytes, split mid-way
		strings.Repeat("k", 129): "long key",
		"quote":                  `"'\`,
	}
	cases := []registry.Instance{
		{Key: key, ID: "plain", Addr: "127.0.0.1:1"},
		{Key: key, ID: strings.Repeat("ü", 700), Addr: "127.0.0.1:1", Weight: 70000},
		{Key: key, ID: "odd", Addr: "127.0.0.1:1", Metadata: odd},
		{Key: key, ID: "big", Addr: "127.0.0.1:1", Metadata: big},
		{Key: registry.ServiceKey{Service: "s"}, ID: "no-version", Addr: "127.0.0.1:1", Metadata: map[string]string{}},
		{Key: key, ID: "weight-0", Addr: "127.0.0.1:1", Weight: 0, Metadata: map[string]string{registry.MetadataRegisteredAt: "1733480000123"}},
		{Key: key, ID: "weight-1", Addr: "127.0.0.1:1", Weight: 1},
	}
	for _, in := range cases {
		out := roundTrip(t, in)
		if out.ID != in.ID || out.Weight != in.Weight || !maps.Equal(out.Metadata, in.Metadata) {
			t.Errorf("round trip of %.80s = %.200s", registrytest.Format([]registry.Instance{in}), registrytest.Format([]registry.Instance{out}))
		}
	}
	// A key never matches the meta of another key.
	meta, _ := encodeMeta(cases[0])
	for _, k := range []registry.ServiceKey{{Service: "s"}, {Service: "s", Version: "v1"}, {Service: "s", Group: "g"}, {Service: "s2", Version: "v1", Group: "g"}} {
		if matches(meta, k) {
			t.Errorf("the meta of %v matches %v", key, k)
		}
	}
}

func TestMetaLimits(t *testing.T) {
	key := registry.ServiceKey{Service: "s"}
	tooMany := map[string]string{}
	for i := range 70 {
		tooMany[fmt.Sprintf("k%02d", i)] = "v"
	}
	tooBig := map[string]string{"x.y": strings.Repeat("v", 64*512)}
	for name, in := range map[string]registry.Instance{
		"70 entries":        {Key: key, ID: "a", Addr: "h:1", Metadata: tooMany},
		"32 KiB of JSON":    {Key: key, ID: "a", Addr: "h:1", Metadata: tooBig},
		"invalid UTF-8 ID":  {Key: key, ID: "a\xff", Addr: "h:1"},
		"invalid UTF-8 md":  {Key: key, ID: "a", Addr: "h:1", Metadata: map[string]string{"k": "\xff"}},
		"invalid UTF-8 key": {Key: key, ID: "a", Addr: "h:1", Metadata: map[string]string{"\xfe": "v"}},
	} {
		_, err := encodeMeta(in)
		var ie *registry.InputError
		if !errors.As(err, &ie) {
			t.Errorf("%s: err = %v, want an InputError", name, err)
			continue
		}
		t.Logf("%s: %v", name, err)
	}
}

// TestDecodeWeight: the storks-weight meta is exact (0 included, though
// Weights.Passing is then 1); without it, Weights.Passing, else DefaultWeight.
func TestDecodeWeight(t *testing.T) {
	key := registry.ServiceKey{Service: "s"}
	reg, err := (&Registry{}).registration(registry.Instance{Key: key, ID: "z", Addr: "127.0.0.1:1", Weight: 0})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Weights.Passing != 1 {
		t.Errorf("weight 0 registers Weights.Passing = %d, want 1 (Consul's minimum)", reg.Weights.Passing)
	}
	meta, err := encodeMeta(registry.Instance{Key: key, ID: "z", Addr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	delete(meta, metaWeight)
	for _, tc := range []struct {
		passing, want int
	}{{7, 7}, {0, registry.DefaultWeight}} {
		svc := &api.AgentService{ID: "x", Address: "127.0.0.1", Port: 1, Meta: meta, Weights: api.AgentWeights{Passing: tc.passing}}
		out, err := decodeService(svc, key)
		if err != nil {
			t.Fatal(err)
		}
		if out.Weight != tc.want {
			t.Errorf("no %s meta, Weights.Passing %d: weight %d, want %d", metaWeight, tc.passing, out.Weight, tc.want)
		}
	}
}
