package registry

import "testing"

func TestParsePortAndValidHost(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
		ok   bool
	}{{"80", 80, true}, {"08080", 8080, true}, {"65535", 65535, true}, {"0", 0, false}, {"65536", 0, false}, {"+80", 0, false}, {"", 0, false}, {" 80", 0, false}} {
		if got, ok := ParsePort(c.in); got != c.want || ok != c.ok {
			t.Errorf("ParsePort(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"localhost", "localhost", true}, {"10.0.0.1", "10.0.0.1", true}, {"my_host.example", "my_host.example", true},
		{"::1", "::1", true}, {"fe80::1%25eth0", "fe80::1%eth0", true},
		{"", "", false}, {".a", ".a", false}, {"-a", "-a", false}, {"a..b", "a..b", false}, {"ho$t", "ho$t", false}, {"::zz", "::zz", false},
	} {
		if got, ok := ValidHost(c.in); got != c.want || ok != c.ok {
			t.Errorf("ValidHost(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}
