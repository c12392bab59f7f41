package registry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/storks-rpc/storks/registry"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"inproc://", "inproc://"},
		{"etcd://127.0.0.1:2379/storks?ttl=5s", "etcd://127.0.0.1:2379/storks?ttl=5s"},
		{"etcd://user:s3cret@h1:2379,h2:2379/storks?ttl=5s", "etcd://user:redacted@h1:2379,h2:2379/storks?ttl=5s"},
		{"etcd://user:s3c@ret@h:1/x", "etcd://user:redacted@h:1/x"},
		{"etcd://user:s3cret@h:1", "etcd://user:redacted@h:1"},
		{"zookeeper://user:@h:1", "zookeeper://user:redacted@h:1"},
		{"consul://s3cret@h:8500", "consul://redacted@h:8500"},
		{"consul://h:8500?token=s3cret&ttl=3s", "consul://h:8500?token=redacted&ttl=3s"},
		{"consul://h:8500?ttl=3s&token=s3cret#frag", "consul://h:8500?ttl=3s&token=redacted#frag"},
		{"x://h?Password=s3cret&acl-token=s3cret&client_secret=s3cret&passwd=s3cret&p%61ssword=s3cret&tokens",
			"x://h?Password=redacted&acl-token=redacted&client_secret=redacted&passwd=redacted&p%61ssword=redacted&tokens"},
		{"x://h/a@b?ttl=1", "x://h/a@b?ttl=1"},
		{"direct:user:s3cret@h:1", "direct:user:redacted@h:1"},
		{"user:s3cret@h:1", "user:redacted@h:1"},
		{"//user:s3cret@h:1/x", "//user:redacted@h:1/x"},
		{"://user:s3cret@h", "://user:redacted@h"},
		{"etcd://user:s3cret@h:1/x?ttl=%zz&password=s3cret", "etcd://user:redacted@h:1/x?ttl=%zz&password=redacted"},
	}
	for _, tc := range tests {
		if got := registry.RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestOpenErrorsHideSecrets checks that Open's own errors (before any
// adapter sees the URL) never repeat a password or token, whatever is wrong
// with the URL.
func TestOpenErrorsHideSecrets(t *testing.T) {
	const secret = "s3cret-never-printed"
	urls := []string{
		"://user:" + secret + "@h:1",
		"user:" + secret + "@h",
		"1etcd://user:" + secret + "@h:1",
		"et cd://user:" + secret + "@h:1",
		"nosuch://user:" + secret + "@h:1",
		"nosuch://h:1?token=" + secret,
		"etcd://user:" + secret + "@h:1/x\x7f",
		"etcd://user:" + secret + "@[::1/x",
		"etcd://user:" + secret + "@h:1/x%zz",
		"consul://h:1/%zz?token=" + secret,
		"direct:user:" + secret + "@h:1",
		"inproc:user:" + secret + "@x",
		"direct://user:" + secret + "@h:1",
		"static://user:" + secret + "@h:1,h:2",
		"direct://h:1?token=" + secret,
		"static://h:1,h:2?password=" + secret,
		"inproc://x?secret=" + secret,
		"user:" + secret,
	}
	for _, u := range urls {
		r, err := registry.Open(context.Background(), u)
		if err == nil {
			r.Close()
			t.Errorf("Open(%q): no error", registry.RedactURL(u))
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q): error shows the secret: %s", registry.RedactURL(u), strings.ReplaceAll(err.Error(), secret, "<SECRET>"))
		}
	}
}
