package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// openFunc builds a registry from a parsed URL; see RegisterScheme.
type openFunc = func(ctx context.Context, u *url.URL) (Registry, error)

type schemeEntry struct {
	open openFunc
	// builtin schemes are parsed by splitURL instead of url.Parse, which
	// rejects lists of hosts such as "[::1]:80,[::1]:81".
	builtin bool
}

var (
	schemesMu sync.RWMutex
	schemes   = map[string]schemeEntry{
		"inproc": {open: openInproc, builtin: true},
		"direct": {open: openDirect, builtin: true},
		"static": {open: openStatic, builtin: true},
	}
)

// adapterPackages names the packages that provide the well-known networked
// schemes, so that Open can say what to import when one is missing.
var adapterPackages = map[string]string{
	"etcd":      "github.com/storks-rpc/storks/registry/etcd",
	"consul":    "github.com/storks-rpc/storks/registry/consul",
	"zookeeper": "github.com/storks-rpc/storks/registry/zookeeper",
	"mdns":      "github.com/storks-rpc/storks/registry/mdns",
}

// RegisterScheme makes a registry URL scheme available to [Open], the way
// database/sql drivers register themselves. Adapter packages call it from an
// init function:
//
//	func init() { registry.RegisterScheme("etcd", open) }
//
// Open lower-cases the scheme of the URL, checks that it is registered and
// passes the URL, as parsed by [url.Parse], to open, which must validate every
// part it is given (host, path, query parameters) and should report problems
// as an [*InputError] naming the part.
//
// Like sql.Register, RegisterScheme panics if it is called twice for the same
// scheme (the built-in "inproc", "direct" and "static" included), if open is
// nil, or if scheme is not a valid lower-case URL scheme; all of these are
// programming errors found at init time.
func RegisterScheme(scheme string, open func(ctx context.Context, u *url.URL) (Registry, error)) {
	if open == nil {
		panic("registry: RegisterScheme: open func for scheme " + strconv.Quote(scheme) + " is nil")
	}
	if !validScheme(scheme) || strings.ToLower(scheme) != scheme {
		panic("registry: RegisterScheme: invalid scheme " + strconv.Quote(scheme) +
			" (want a lower-case letter followed by lower-case letters, digits, '+', '-' or '.')")
	}
	schemesMu.Lock()
	defer schemesMu.Unlock()
	if _, dup := schemes[scheme]; dup {
		panic("registry: RegisterScheme called twice for scheme " + strconv.Quote(scheme))
	}
	schemes[scheme] = schemeEntry{open: open}
}

// Schemes returns the sorted list of URL schemes [Open] accepts: the built-in
// ones and those added with [RegisterScheme].
func Schemes() []string {
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	list := make([]string, 0, len(schemes))
	for s := range schemes {
		list = append(list, s)
	}
	slices.Sort(list)
	return list
}

// Open returns the registry described by rawURL. The built-in schemes are:
//
//	inproc://                  a handle onto the process-wide in-process registry (see Default)
//	inproc://name              a handle onto the in-process registry called name
//	direct://host:port         one fixed provider address; takes ?weight=N
//	static://h1:p1,h2:p2,...   a fixed list of provider addresses
//
// Names of inproc registries are case-sensitive and made of letters, digits,
// '-', '_' and '.'; see [Inproc] for how handles share a registry.
//
// A direct:// or static:// registry resolves every valid service key to its
// fixed addresses: Discover returns one instance per address, sorted, with ID
// and Addr set to the address, Key set to the requested key, the weight of
// ?weight= (DefaultWeight without it; static:// always) and no metadata. A watch returns that list on its first Next; later
// calls wait until the watch ends, since the list never changes. Register and
// Deregister only validate their input and do nothing else: consumers reach
// these providers directly, peer to peer, so there is nothing to announce.
//
// Other schemes ("etcd", "consul", "zookeeper", ...) are available once the
// package that provides them is imported; see [RegisterScheme].
//
// Every malformed URL yields an [*InputError] whose Field names the part that
// is wrong ("URL scheme", "URL host", "URL port", "URL path",
// "URL query parameter", ...). Errors from networked adapters are returned as
// they are; a server that cannot be reached is not one of them (see "When
// the server cannot be reached" in the package documentation). No error
// repeats the password or token of a URL (log URLs with
// [RedactURL]). The caller owns the returned registry and must Close it.
func Open(ctx context.Context, rawURL string) (Registry, error) {
	name, rest, err := splitScheme(rawURL)
	if err != nil {
		return nil, err
	}
	schemesMu.RLock()
	s, ok := schemes[name]
	schemesMu.RUnlock()
	if !ok {
		return nil, unknownScheme(name)
	}
	var u *url.URL
	if s.builtin {
		u, err = splitURL(name, rest)
	} else {
		u, err = url.Parse(rawURL)
		if err != nil {
			// The url.Error would repeat the whole URL, which may hold a
			// password; its inner error names the bad part.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			err = &InputError{Field: "URL", Reason: "is malformed: " + err.Error()}
		}
	}
	if err != nil {
		return nil, err
	}
	r, err := s.open(ctx, u)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("registry: the %s:// adapter returned neither a registry nor an error", name)
	}
	return r, nil
}

// validScheme reports whether s is a URL scheme as in RFC 3986: a letter
// followed by letters, digits, '+', '-' and '.'.
func validScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// splitScheme returns the lower-cased scheme of raw and what follows the
// colon.
func splitScheme(raw string) (name, rest string, err error) {
	if raw == "" {
		return "", "", &InputError{Field: "URL", Reason: "is empty; want scheme://..., for example inproc://"}
	}
	if reason, ok := hostPortAdvice(raw); ok {
		// "localhost:2379" parses as scheme "localhost", "127.0.0.1:2379"
		// as an invalid one.
		return "", "", &InputError{Field: "URL scheme", Reason: reason}
	}
	i := strings.IndexByte(raw, ':')
	if i <= 0 {
		return "", "", &InputError{Field: "URL scheme", Value: RedactURL(raw),
			Reason: "is missing; want scheme://..., for example inproc:// or direct://host:port"}
	}
	name, rest = raw[:i], raw[i+1:]
	if !validScheme(name) {
		return "", "", &InputError{Field: "URL scheme", Value: name,
			Reason: "is not valid (want a letter followed by letters, digits, '+', '-' or '.')"}
	}
	return strings.ToLower(name), rest, nil
}

// Well-known client ports of the networked registries, from which
// hostPortAdvice infers what a bare host:port is the address of.
var registryPorts = map[int]struct{ what, scheme, path string }{
	2379: {"an etcd server", "etcd", "/storks"},
	8500: {"a Consul agent", "consul", ""},
	2181: {"a ZooKeeper server", "zookeeper", "/storks"},
}

// hostPortAdvice says what to write instead of raw when raw is a bare
// host:port (or a comma-separated list of them, with an optional path and
// query) rather than a URL: most likely the address of a registry server,
// told apart by its well-known port. direct:// is offered last, and only for
// other ports: a registry address given to a provider as direct:// would
// silently register nothing.
func hostPortAdvice(raw string) (string, bool) {
	if strings.Contains(raw, "://") {
		return "", false
	}
	hosts, path := raw, ""
	if i := strings.IndexAny(raw, "/?#"); i >= 0 {
		hosts = raw[:i]
		// The query is left out of the advice: it may hold a token.
		path, _, _ = strings.Cut(raw[i:], "?")
		path, _, _ = strings.Cut(path, "#")
	}
	port := 0
	for _, hp := range strings.Split(hosts, ",") {
		h, p, err := net.SplitHostPort(hp)
		if err != nil || h == "" {
			return "", false
		}
		n, ok := ParsePort(p)
		if !ok {
			return "", false
		}
		if _, ok := ValidHost(h); !ok {
			return "", false
		}
		if port != 0 && port != n {
			port = -1 // mixed ports: no inference
		} else if port == 0 {
			port = n
		}
	}
	suggest := func(scheme, defaultPath string) string {
		if path == "" || path == "/" {
			return scheme + "://" + hosts + defaultPath
		}
		return scheme + "://" + hosts + path
	}
	given := strconv.Quote(hosts + path)
	if r, ok := registryPorts[port]; ok {
		return fmt.Sprintf("is missing from %s, which looks like the address of %s; want %s",
			given, r.what, suggest(r.scheme, r.path)), true
	}
	fixed := "direct://" + hosts + " to call one provider"
	if strings.Contains(hosts, ",") {
		fixed = "static://" + hosts + " to call these providers"
	}
	return fmt.Sprintf("is missing from %s; want the URL of a registry, such as %s, %s or %s (or %s without a registry)",
		given, suggest("etcd", "/storks"), suggest("consul", ""), suggest("zookeeper", "/storks"), fixed), true
}

func unknownScheme(name string) error {
	if pkg, ok := adapterPackages[name]; ok {
		return &InputError{Field: "URL scheme", Value: name,
			Reason: fmt.Sprintf("is not registered; add import _ %q to the program", pkg)}
	}
	return &InputError{Field: "URL scheme", Value: name,
		Reason: fmt.Sprintf("is not registered (known: %s); import the package that provides it",
			strings.Join(Schemes(), ", "))}
}

// splitURL splits what follows "scheme:" in a URL of a built-in scheme into
// host (the whole authority), path and query, without the host checks of
// url.Parse. Nothing is unescaped.
func splitURL(name, rest string) (*url.URL, error) {
	if !strings.HasPrefix(rest, "//") {
		return nil, &InputError{Field: "URL", Value: RedactURL(name + ":" + rest), Reason: "must start with " + name + "://"}
	}
	rest = rest[2:]
	u := &url.URL{Scheme: name}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return nil, &InputError{Field: "URL fragment", Value: rest[i:], Reason: "is not supported by " + name + ":// URLs"}
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, u.RawQuery = rest[:i], rest[i+1:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest, u.Path = rest[:i], rest[i:]
	}
	if strings.Contains(rest, "@") {
		return nil, &InputError{Field: "URL user info", Reason: "is not supported by " + name + ":// URLs"}
	}
	u.Host = rest
	return u, nil
}

// checkNoPath rejects a path other than "" or "/".
func checkNoPath(u *url.URL) error {
	if u.Path != "" && u.Path != "/" {
		return &InputError{Field: "URL path", Value: u.Path, Reason: "is not supported by " + u.Scheme + ":// URLs"}
	}
	return nil
}

// queryParams parses the query of u, allowing only the named parameters, each
// at most once.
func queryParams(u *url.URL, allowed ...string) (map[string]string, error) {
	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, &InputError{Field: "URL query", Value: u.RawQuery, Reason: "is malformed: " + err.Error()}
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names)
	params := make(map[string]string, len(vals))
	for _, k := range names {
		if !slices.Contains(allowed, k) {
			reason := "is not supported by " + u.Scheme + ":// URLs"
			if len(allowed) == 0 {
				reason += ", which take no parameters"
			} else {
				reason += " (supported: " + strings.Join(allowed, ", ") + ")"
			}
			return nil, &InputError{Field: "URL query parameter", Value: k, Reason: reason}
		}
		if len(vals[k]) > 1 {
			return nil, &InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		params[k] = vals[k][0]
	}
	return params, nil
}

// parseHostPort checks one "host:port" of a direct:// or static:// URL and
// returns it in canonical form (port without leading zeros, IPv6 in
// brackets).
func parseHostPort(s string) (string, error) {
	if s == "" {
		return "", &InputError{Field: "URL host", Reason: "is missing; want host:port"}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return "", &InputError{Field: "URL port", Reason: fmt.Sprintf("is missing in %q; want host:port", s)}
		}
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return "", &InputError{Field: "URL host", Value: s, Reason: "is not host:port (write IPv6 addresses in brackets, as in [::1]:8080)"}
		}
		return "", &InputError{Field: "URL host", Value: s, Reason: "is not host:port"}
	}
	if host == "" {
		return "", &InputError{Field: "URL host", Reason: fmt.Sprintf("is missing in %q; want host:port", s)}
	}
	p, ok := ParsePort(port)
	if !ok {
		return "", &InputError{Field: "URL port", Value: port, Reason: fmt.Sprintf("in %q must be a number from 1 to 65535", s)}
	}
	host, ok = ValidHost(host)
	if !ok && strings.Contains(host, ":") {
		return "", &InputError{Field: "URL host", Value: host, Reason: "is not a valid IPv6 address"}
	} else if !ok {
		return "", &InputError{Field: "URL host", Value: host,
			Reason: "is not a valid host name or IP address (letters, digits, '-', '_' and '.')"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}
