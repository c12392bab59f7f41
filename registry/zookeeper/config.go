package zookeeper

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/storks-rpc/storks/registry"
)

// Defaults of the Config fields.
const (
	DefaultBasePath       = "/storks"
	DefaultSessionTimeout = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultPort           = 2181
)

// Backoff bounds of the background retries.
const (
	defaultMinRetry = 100 * time.Millisecond
	defaultMaxRetry = 5 * time.Second
)

// maxNodeData bounds the encoded instance. ZooKeeper refuses packets over
// jute.maxbuffer (1 MiB by default) by dropping the connection, which would
// make a too large registration retry forever.
const maxNodeData = 512 << 10

// Dialer opens a connection to one ZooKeeper server. It has the signature of
// net.DialTimeout.
type Dialer func(network, address string, timeout time.Duration) (net.Conn, error)

// Config configures a ZooKeeper registry. The zero value of every field but
// Servers selects its default.
type Config struct {
	// Servers are the "host:port" addresses of the ensemble. A missing port
	// means 2181. Required.
	Servers []string
	// BasePath is the znode everything is stored under; "" or "/" means
	// DefaultBasePath.
	BasePath string
	// SessionTimeout is the session timeout requested from the servers
	// (they clamp it to their own bounds); default DefaultSessionTimeout.
	SessionTimeout time.Duration
	// DialTimeout bounds how long New waits for the first session and how
	// long a call waits for the servers when its context has no deadline;
	// default DefaultDialTimeout.
	DialTimeout time.Duration
	// Logger receives state changes and failures; default slog.Default().
	Logger *slog.Logger
	// Dialer opens the TCP connections to the servers; default
	// net.DialTimeout. Tests use it to inject network faults.
	Dialer Dialer

	// Username and Password, when set (both, or neither), authenticate
	// the session with ZooKeeper's digest scheme, on every connection and
	// in every new session, and the znodes the registry creates get an ACL
	// that gives that identity every permission and everyone else only
	// read permission (unless NoWorldRead). The password never appears in
	// errors, logs or String. See the package documentation.
	Username string
	Password string
	// NoWorldRead makes the znodes readable by the Username identity
	// only: consumers then need the credentials too. It requires
	// credentials.
	NoWorldRead bool

	// Background retry backoff bounds (tests shorten them).
	minRetry, maxRetry time.Duration
}

// normalize checks c and fills in the defaults. Errors are
// *registry.InputError naming the field.
func (c Config) normalize() (Config, error) {
	if len(c.Servers) == 0 {
		return c, &registry.InputError{Field: "servers", Reason: "are missing; want at least one host:port"}
	}
	servers := make([]string, 0, len(c.Servers))
	for _, s := range c.Servers {
		hp, err := parseServer("server address", s)
		if err != nil {
			return c, err
		}
		if !slices.Contains(servers, hp) {
			servers = append(servers, hp)
		}
	}
	c.Servers = servers
	base, err := cleanBasePath("base path", c.BasePath)
	if err != nil {
		return c, err
	}
	c.BasePath = base
	if c.SessionTimeout < 0 {
		return c, &registry.InputError{Field: "session timeout", Value: c.SessionTimeout.String(), Reason: "must not be negative"}
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.SessionTimeout < time.Millisecond || c.SessionTimeout > 24*time.Hour {
		return c, &registry.InputError{Field: "session timeout", Value: c.SessionTimeout.String(), Reason: "must be between 1ms and 24h"}
	}
	if c.DialTimeout < 0 {
		return c, &registry.InputError{Field: "dial timeout", Value: c.DialTimeout.String(), Reason: "must not be negative"}
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dialer == nil {
		c.Dialer = net.DialTimeout
	}
	if (c.Username == "") != (c.Password == "") {
		return c, &registry.InputError{Field: "username and password", Reason: "must be given together"}
	}
	if strings.Contains(c.Username, ":") {
		return c, &registry.InputError{Field: "username", Value: c.Username, Reason: "must not contain ':' (ZooKeeper's digest scheme separates it from the password with one)"}
	}
	if c.NoWorldRead && c.Username == "" {
		return c, &registry.InputError{Field: "world read", Reason: "can only be turned off with credentials (a username and a password)"}
	}
	if c.minRetry <= 0 {
		c.minRetry = defaultMinRetry
	}
	if c.maxRetry <= 0 {
		c.maxRetry = defaultMaxRetry
	}
	c.maxRetry = max(c.maxRetry, c.minRetry)
	return c, nil
}

// parseServer checks one "host[:port]" and returns it as host:port.
func parseServer(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", &registry.InputError{Field: field, Reason: "is empty; want host:port"}
	}
	host, port := s, strconv.Itoa(DefaultPort)
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Count(s, ":") > 0 {
		return "", &registry.InputError{Field: field, Value: s, Reason: "is not host:port (write IPv6 addresses in brackets, as in [::1]:2181)"}
	}
	if host == "" {
		return "", &registry.InputError{Field: field, Value: s, Reason: "has no host; want host:port"}
	}
	p, ok := registry.ParsePort(port)
	if !ok {
		return "", &registry.InputError{Field: field, Value: s, Reason: "has a bad port; want a number from 1 to 65535"}
	}
	// As for the other adapters, an IPv6 zone written "%25" (URL style)
	// is unescaped.
	host, ok = registry.ValidHost(host)
	if !ok && strings.Contains(host, ":") {
		return "", &registry.InputError{Field: field, Value: s, Reason: "is not a valid IPv6 address"}
	} else if !ok {
		return "", &registry.InputError{Field: field, Value: s, Reason: "has a bad host name (letters, digits, '-', '_' and '.')"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// cleanBasePath checks a base path and returns it without a trailing slash.
func cleanBasePath(field, p string) (string, error) {
	if p == "" || p == "/" {
		return DefaultBasePath, nil
	}
	if p[0] != '/' {
		return "", &registry.InputError{Field: field, Value: p, Reason: "must start with '/'"}
	}
	p = strings.TrimSuffix(p, "/")
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "":
			return "", &registry.InputError{Field: field, Value: p, Reason: "has an empty segment"}
		case ".", "..":
			return "", &registry.InputError{Field: field, Value: p, Reason: "has a '.' or '..' segment"}
		}
	}
	if !utf8.ValidString(p) {
		return "", &registry.InputError{Field: field, Value: p, Reason: "is not valid UTF-8"}
	}
	for _, r := range p {
		if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0xd800 && r <= 0xf8ff || r >= 0xfff0 {
			return "", &registry.InputError{Field: field, Value: p, Reason: fmt.Sprintf("contains the character %U, which ZooKeeper does not allow", r)}
		}
	}
	if p == "/zookeeper" || strings.HasPrefix(p, "/zookeeper/") {
		return "", &registry.InputError{Field: field, Value: p, Reason: "is in /zookeeper, which the server reserves"}
	}
	return p, nil
}

// String returns the configuration as a zookeeper:// URL, with the
// password replaced by "redacted"; it is what %v prints.
func (c Config) String() string {
	u := url.URL{Scheme: "zookeeper", Host: strings.Join(c.Servers, ","), Path: c.BasePath}
	if c.Username != "" || c.Password != "" {
		if c.Password != "" {
			u.User = url.UserPassword(c.Username, "redacted")
		} else {
			u.User = url.User(c.Username)
		}
	}
	q := url.Values{}
	if c.SessionTimeout != 0 {
		q.Set("session-timeout", c.SessionTimeout.String())
	}
	if c.DialTimeout != 0 {
		q.Set("dial-timeout", c.DialTimeout.String())
	}
	if c.NoWorldRead {
		q.Set("world-read", "false")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return "zookeeper.Config(" + strconv.Quote(c.String()) + ")" }

// LogValue logs the configuration as String does (see slog.LogValuer).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

var queryParams = []string{"session-timeout", "dial-timeout", "world-read"}

// configFromURL builds a Config from a zookeeper:// URL.
func configFromURL(u *url.URL) (Config, error) {
	var c Config
	if u.Opaque != "" {
		return c, &registry.InputError{Field: "URL", Reason: "must start with zookeeper:// (want zookeeper://host:port[,host:port...]/base-path)"}
	}
	if u.User != nil {
		pass, ok := u.User.Password()
		if u.User.Username() == "" || !ok || pass == "" {
			// Never quote the user info: it may be a password.
			return c, &registry.InputError{Field: "URL user info", Reason: "must be user:password (percent-encoded), as in zookeeper://user:password@host:2181/storks"}
		}
		c.Username, c.Password = u.User.Username(), pass
	}
	if u.Fragment != "" {
		return c, &registry.InputError{Field: "URL fragment", Value: u.Fragment, Reason: "is not supported by zookeeper:// URLs"}
	}
	if u.Host == "" {
		return c, &registry.InputError{Field: "URL host", Reason: "is missing; want zookeeper://host:port[,host:port...]/base-path"}
	}
	for _, s := range strings.Split(u.Host, ",") {
		hp, err := parseServer("URL host", s)
		if err != nil {
			return c, err
		}
		c.Servers = append(c.Servers, hp)
	}
	base, err := cleanBasePath("URL path", u.Path)
	if err != nil {
		return c, err
	}
	c.BasePath = base
	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// Neither the query nor url's error (which quotes the bad part) is
		// repeated: a misplaced password may be in it.
		return c, &registry.InputError{Field: "URL query", Reason: "is malformed (want name=value pairs joined by '&', with % escapes)"}
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if !slices.Contains(queryParams, k) {
			return c, &registry.InputError{Field: "URL query parameter", Value: k,
				Reason: "is not supported by zookeeper:// URLs (supported: " + strings.Join(queryParams, ", ") + ")"}
		}
		if len(vals[k]) > 1 {
			return c, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		v := vals[k][0]
		if k == "world-read" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, &registry.InputError{Field: "URL query parameter " + k, Value: v, Reason: "must be true or false"}
			}
			c.NoWorldRead = !b
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, &registry.InputError{Field: "URL query parameter " + k, Value: v, Reason: "must be a positive duration such as 10s or 500ms"}
		}
		switch k {
		case "session-timeout":
			c.SessionTimeout = d
		case "dial-timeout":
			c.DialTimeout = d
		}
	}
	return c, nil
}

func init() {
	registry.RegisterScheme("zookeeper", func(ctx context.Context, u *url.URL) (registry.Registry, error) {
		c, err := configFromURL(u)
		if err != nil {
			return nil, err
		}
		return New(ctx, c)
	})
}
