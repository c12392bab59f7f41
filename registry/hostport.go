package registry

import (
	"net/netip"
	"strconv"
	"strings"
)

// ParsePort returns the number of a decimal port in 1..65535 ("08080" is
// 8080; signs, spaces and empty strings are not ports).
func ParsePort(s string) (int, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, false
	}
	return p, true
}

// ValidHost reports whether host, as split from a host:port, is an IPv6
// literal (whose zone may be written "%25", as in URLs) or a plausible host
// name or IPv4 address: letters, digits, '-', '_' and '.', not starting with
// '.' or '-', no empty label, at most 253 bytes. It returns the host with a
// URL-escaped zone unescaped. Adapters word their own errors around it.
func ValidHost(host string) (string, bool) {
	if strings.Contains(host, ":") {
		host = strings.Replace(host, "%25", "%", 1)
		_, err := netip.ParseAddr(host)
		return host, err == nil
	}
	return host, validHostname(host)
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[0] == '-' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
