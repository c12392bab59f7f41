package registry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/storks-rpc/storks/registry"
)

func TestOpenBadURL(t *testing.T) {
	tests := []struct {
		url  string
		want []string // substrings of the error
	}{
		{"", []string{"URL", "empty"}},
		{"inproc", []string{"URL scheme", "missing"}},
		{"://x", []string{"URL scheme", "missing"}},
		{"localhost:8080", []string{"URL scheme", "missing", "etcd://localhost:8080/storks", "direct://localhost:8080"}},
		{"1nproc://", []string{"URL scheme", `"1nproc"`, "not valid"}},
		{"in proc://", []string{"URL scheme", "not valid"}},
		{"nosuch://x", []string{"URL scheme", `"nosuch"`, "not registered", "inproc"}},
		{"etcd://127.0.0.1:2379", []string{"URL scheme", `"etcd"`, `import _ "github.com/storks-rpc/storks/registry/etcd"`}},
		{"consul://127.0.0.1:8500", []string{`import _ "github.com/storks-rpc/storks/registry/consul"`}},
		{"zookeeper://127.0.0.1:2181", []string{`import _ "github.com/storks-rpc/storks/registry/zookeeper"`}},
		{"inproc:", []string{"URL", "must start with inproc://"}},
		{"inproc:/x", []string{"must start with inproc://"}},
		{"inproc://x/y", []string{"URL path", `"/y"`}},
		{"inproc://x y", []string{"URL host", `"x y"`, "inproc registry name"}},
		{"inproc://x:1", []string{"URL host", `"x:1"`}},
		{"inproc://?ttl=3", []string{"URL query parameter", `"ttl"`, "take no parameters"}},
		{"inproc://a#frag", []string{"URL fragment", `"#frag"`}},
		{"inproc://user@a", []string{"URL user info"}},
		{"direct://", []string{"URL host", "missing"}},
		{"direct://localhost", []string{"URL port", "missing", `"localhost"`}},
		{"direct://localhost:", []string{"URL port", "1 to 65535"}},
		{"direct://:8080", []string{"URL host", "missing", `":8080"`}},
		{"direct://host:0", []string{"URL port", `"0"`, "1 to 65535"}},
		{"direct://host:99999", []string{"URL port", `"99999"`, "1 to 65535"}},
		{"direct://host:http", []string{"URL port", `"http"`}},
		{"direct://host:+80", []string{"URL port", `"+80"`}},
		{"direct://ho$t:80", []string{"URL host", `"ho$t"`, "not a valid host name"}},
		{"direct://::1:80", []string{"URL host", "brackets"}},
		{"direct://[::1:80", []string{"URL host", `"[::1:80"`}},
		{"direct://[zz::1]:80", []string{"URL host", "IPv6"}},
		{"direct://h:1,h:2", []string{"URL host", `"h:1,h:2"`, "static://"}},
		{"direct://h:80/path", []string{"URL path", `"/path"`, "direct://"}},
		{"direct://h:80?weight=-1", []string{"URL query parameter weight", `"-1"`, "non-negative"}},
		{"direct://h:80?weight=x", []string{"URL query parameter weight", `"x"`}},
		{"direct://h:80?weight=1&weight=2", []string{"URL query parameter", `"weight"`, "more than once"}},
		{"direct://h:80?wieght=1", []string{"URL query parameter", `"wieght"`, "supported: weight"}},
		{"direct://h:80?%zz", []string{"URL query", "malformed"}},
		{"direct://h:80?weight=1;x=2", []string{"URL query", "malformed"}},
		{"static://", []string{"URL host list", "empty"}},
		{"static://a:1,,b:2", []string{"URL host list", `"a:1,,b:2"`, "empty entry at position 2"}},
		{"static://a:1,", []string{"URL host list", "empty entry at position 2"}},
		{"static://a:1,b", []string{"URL port", "missing", `"b"`}},
		{"static://host:99999", []string{"URL port", `"99999"`}},
		{"static://a:1,b:2,a:1", []string{"URL host", `"a:1"`, "more than once"}},
		{"static://a:1,a:01", []string{"URL host", `"a:1"`, "more than once"}},
		{"static://a:1/x", []string{"URL path", `"/x"`}},
		{"static://a:1?weight=3", []string{"URL query parameter", `"weight"`, "static://"}},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			r, err := registry.Open(context.Background(), tc.url)
			if err == nil {
				r.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tc.url)
			}
			var ie *registry.InputError
			if !errors.As(err, &ie) {
				t.Errorf("Open(%q): error %q (%T) is not an *InputError", tc.url, err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open(%q): error %q does not mention %q", tc.url, err, w)
				}
			}
		})
	}
}

// TestOpenHostPort checks the advice for a bare host:port given where a
// registry URL belongs: the registry its well-known port suggests, never
// direct:// for a registry's port (a provider given direct:// registers
// nothing), and the registry forms otherwise.
func TestOpenHostPort(t *testing.T) {
	const list = "want the URL of a registry, such as "
	tests := []struct{ url, want string }{
		{"127.0.0.1:2379", `registry: URL scheme is missing from "127.0.0.1:2379", which looks like the address of an etcd server; want etcd://127.0.0.1:2379/storks`},
		{"localhost:2379/app", `registry: URL scheme is missing from "localhost:2379/app", which looks like the address of an etcd server; want etcd://localhost:2379/app`},
		{"h1:2379,h2:2379?ttl=5s&token=s3cret", `registry: URL scheme is missing from "h1:2379,h2:2379", which looks like the address of an etcd server; want etcd://h1:2379,h2:2379/storks`},
		{"localhost:8500", `registry: URL scheme is missing from "localhost:8500", which looks like the address of a Consul agent; want consul://localhost:8500`},
		{"[::1]:2181/", `registry: URL scheme is missing from "[::1]:2181/", which looks like the address of a ZooKeeper server; want zookeeper://[::1]:2181/storks`},
		{"10.0.0.1:9000", `registry: URL scheme is missing from "10.0.0.1:9000"; ` + list +
			"etcd://10.0.0.1:9000/storks, consul://10.0.0.1:9000 or zookeeper://10.0.0.1:9000/storks (or direct://10.0.0.1:9000 to call one provider without a registry)"},
		{"a:2379,b:2181", `registry: URL scheme is missing from "a:2379,b:2181"; ` + list +
			"etcd://a:2379,b:2181/storks, consul://a:2379,b:2181 or zookeeper://a:2379,b:2181/storks (or static://a:2379,b:2181 to call these providers without a registry)"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := registry.Open(context.Background(), tc.url)
			var ie *registry.InputError
			if !errors.As(err, &ie) || ie.Field != "URL scheme" {
				t.Fatalf("Open(%q): error %v (%T), want an *InputError for the URL scheme", tc.url, err, err)
			}
			if err.Error() != tc.want {
				t.Errorf("Open(%q):\n got %s\nwant %s", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Open(%q): error %q repeats the token", tc.url, err)
			}
		})
	}
}

func TestOpenGoodURL(t *testing.T) {
	tests := []struct {
		url   string
		addrs []string // nil for inproc
	}{
		{"inproc://", nil},
		{"inproc:///", nil},
		{"INPROC://", nil},
		{"inproc://my-app_1.test", nil},
		{"inproc://my-app_1.test/", nil},
		{"direct://localhost:8080", []string{"localhost:8080"}},
		{"Direct://LocalHost:08080/", []string{"LocalHost:8080"}},
		{"direct://127.0.0.1:1", []string{"127.0.0.1:1"}},
		{"direct://[::1]:65535", []string{"[::1]:65535"}},
		{"direct://[fe80::1%25eth0]:80", []string{"[fe80::1%eth0]:80"}},
		{"direct://h:80?weight=0", []string{"h:80"}},
		{"direct://h:80?weight=7", []string{"h:80"}},
		{"direct://h:80?", []string{"h:80"}},
		{"static://b:2,a:1", []string{"a:1", "b:2"}},
		{"static://a:1", []string{"a:1"}},
		{"static://[::1]:80,[::1]:81,10.0.0.1:80", []string{"10.0.0.1:80", "[::1]:80", "[::1]:81"}},
	}
	ctx := context.Background()
	key := registry.ServiceKey{Service: "helloworld.Greeter"}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			r := mustOpen(t, tc.url)
			defer r.Close()
			if tc.addrs == nil {
				if _, ok := r.(*registry.Inproc); !ok {
					t.Errorf("Open(%q) = %T, want *registry.Inproc", tc.url, r)
				}
				return
			}
			list, err := r.Discover(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, in := range list {
				got = append(got, in.Addr)
			}
			if !slices.Equal(got, tc.addrs) {
				t.Errorf("Open(%q) addresses = %q, want %q", tc.url, got, tc.addrs)
			}
		})
	}
}

var (
	registerFakeOnce sync.Once
	fakeGot          atomic.Pointer[url.URL]
)

func nilReg(context.Context, *url.URL) (registry.Registry, error) { return nil, nil }

func TestRegisterScheme(t *testing.T) {
	// Once, so that -count=N does not register the schemes twice.
	registerFakeOnce.Do(func() {
		registry.RegisterScheme("storkstest-fake", func(ctx context.Context, u *url.URL) (registry.Registry, error) {
			fakeGot.Store(u)
			if u.Query().Get("fail") != "" {
				return nil, &registry.InputError{Field: "URL query parameter", Value: "fail", Reason: "says so"}
			}
			return registry.NewInproc(), nil
		})
		registry.RegisterScheme("storkstest-nil", nilReg)
	})
	r, err := registry.Open(context.Background(), "StorksTest-Fake://user:pw@h1:2379/prefix?timeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got := fakeGot.Load(); got.Scheme != "storkstest-fake" || got.Host != "h1:2379" || got.Path != "/prefix" ||
		got.User.Username() != "user" || got.Query().Get("timeout") != "3s" {
		t.Errorf("the open func got %#v", fakeGot.Load())
	}
	if _, err := registry.Open(context.Background(), "storkstest-fake://h?fail=1"); err == nil || !strings.Contains(err.Error(), "says so") {
		t.Errorf("adapter error = %v, want it returned as is", err)
	}
	// url.Parse errors name the bad part but not the (secret-bearing) URL.
	_, err = registry.Open(context.Background(), "storkstest-fake://user:secret@h:port/")
	if err == nil || !strings.Contains(err.Error(), "port") || strings.Contains(err.Error(), "secret") {
		t.Errorf("malformed URL error = %v, want one naming the port and not the password", err)
	}
	if !slices.Contains(registry.Schemes(), "storkstest-fake") {
		t.Errorf("Schemes() = %v, want it to list storkstest-fake", registry.Schemes())
	}

	if _, err := registry.Open(context.Background(), "storkstest-nil://"); err == nil {
		t.Error("Open with an adapter returning nil, nil succeeded")
	}

	for _, tc := range []struct {
		scheme string
		open   func(context.Context, *url.URL) (registry.Registry, error)
		want   string
	}{
		{"storkstest-fake", nilReg, "twice"},
		{"inproc", nilReg, "twice"},
		{"direct", nilReg, "twice"},
		{"storkstest-nilfunc", nil, "nil"},
		{"", nilReg, "invalid scheme"},
		{"Upper", nilReg, "invalid scheme"},
		{"has space", nilReg, "invalid scheme"},
		{"9lives", nilReg, "invalid scheme"},
	} {
		func() {
			defer func() {
				msg, _ := recover().(string)
				if !strings.Contains(msg, tc.want) {
					t.Errorf("RegisterScheme(%q): panic %q, want one mentioning %q", tc.scheme, msg, tc.want)
				}
			}()
			registry.RegisterScheme(tc.scheme, tc.open)
		}()
	}
}

func TestSchemes(t *testing.T) {
	got := registry.Schemes()
	for _, s := range []string{"direct", "inproc", "static"} {
		if !slices.Contains(got, s) {
			t.Errorf("Schemes() = %v, want it to contain %q", got, s)
		}
	}
	if !slices.IsSorted(got) {
		t.Errorf("Schemes() = %v, not sorted", got)
	}
}

// An UnreachableError names every address's dial error and unwraps to them,
// so that callers can test for both the outage and its cause.
func TestUnreachableError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	timeout := errors.New("i/o timeout")
	err := fmt.Errorf("register: %w", &registry.UnreachableError{Errs: []error{refused, timeout}})
	var ue *registry.UnreachableError
	if !errors.As(err, &ue) || len(ue.Errs) != 2 {
		t.Fatalf("errors.As(%v) = %v", err, ue)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || !errors.Is(err, timeout) {
		t.Errorf("%v does not unwrap to its dial errors", err)
	}
	if got, want := err.Error(), "register: cannot connect: dial tcp: connection refused; i/o timeout"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
