package mdns

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

func TestOpenRejectsBadURLs(t *testing.T) {
	for url, field := range map[string]string{
		"mdns://host:5353":                 "URL host",
		"mdns://?iface=no-such-interface0": "iface",
		"mdns://?iface=":                   "iface",
		"mdns://?ttl=0":                    "ttl",
		"mdns://?ttl=1.5s":                 "ttl",
		"mdns://?ttl=2h":                   "ttl",
		"mdns://?ttl=soon":                 "ttl",
		"mdns://?domain=a..b":              "domain",
		"mdns://?color=blue":               "URL query parameter",
		"mdns://?ttl=10&ttl=20":            "URL query parameter",
		"mdns:///path":                     "URL path",
	} {
		r, err := registry.Open(context.Background(), url)
		if r != nil {
			r.Close()
		}
		var ie *registry.InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), field) {
			t.Errorf("Open(%q): err = %v, want an InputError naming %q", url, err, field)
		}
	}
}

func TestOpenParameters(t *testing.T) {
	for url, ttl := range map[string]time.Duration{
		loURL(t, ""):                     DefaultTTL,
		loURL(t, "ttl=30"):               30 * time.Second,
		loURL(t, "ttl=2m&domain=local."): 2 * time.Minute,
	} {
		r, err := registry.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("Open(%q): %v", url, err)
		}
		if got := r.(*Registry); got.ttl != ttl || got.domain != "local." {
			t.Errorf("Open(%q): ttl %v domain %q, want %v and local.", url, got.ttl, got.domain, ttl)
		}
		r.Close()
	}
}
