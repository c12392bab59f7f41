package etcd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Defaults and limits of the configuration.
const (
	DefaultBasePath       = "/storks"
	DefaultTTL            = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 10 * time.Second

	MinTTL = time.Second
	MaxTTL = time.Hour
)

// maxDialTimeout bounds dial-timeout, so that a typo (5h for 5s) does not
// make Open hang for hours.
const maxDialTimeout = 5 * time.Minute

// Config configures a [Registry]; see [New]. The zero value of every field
// but Endpoints means its default.
type Config struct {
	// Endpoints are the client addresses ("host:port") of the etcd members.
	// Required.
	Endpoints []string
	// BasePath is the key prefix under which instances are stored, as
	// BasePath/<escaped service key>/<escaped instance ID>. It starts with
	// '/' and does not end with one. Default DefaultBasePath.
	BasePath string
	// TTL is the lease TTL of the registrations: how long an instance stays
	// registered after its process died or lost the server. A whole number
	// of seconds from MinTTL to MaxTTL. Default DefaultTTL.
	TTL time.Duration
	// DialTimeout bounds how long New waits for a member to answer, and
	// each attempt to connect to one. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds every call whose context has no deadline, and the
	// first list of a Watch. Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Logger receives the adapter's log: one line when a background
	// operation starts failing and one when it recovers, never one per
	// retry. Default slog.Default().
	Logger *slog.Logger

	// Username and Password authenticate the client to an etcd cluster
	// that has authentication enabled; both or neither. The password never
	// appears in errors, logs or String. The client exchanges them for a
	// token when it connects and again whenever the server says the token
	// expired or is invalid, so long-lived registries keep working.
	Username string
	Password string
	// TLS, when not nil, makes the client talk TLS to every endpoint with
	// this configuration (root CAs, a client certificate for clusters that
	// require one, ServerName). New uses a clone.
	TLS *tls.Config
}

// String returns the configuration as an etcd:// URL, with the password
// replaced by "redacted" and TLS shown as tls=true; it is what %v prints.
func (c Config) String() string {
	u := url.URL{Scheme: "etcd", Host: strings.Join(c.Endpoints, ","), Path: c.BasePath}
	if c.Username != "" || c.Password != "" {
		if c.Password != "" {
			u.User = url.UserPassword(c.Username, "redacted")
		} else {
			u.User = url.User(c.Username)
		}
	}
	q := url.Values{}
	if c.TTL != 0 {
		q.Set(paramTTL, c.TTL.String())
	}
	if c.DialTimeout != 0 {
		q.Set(paramDialTimeout, c.DialTimeout.String())
	}
	if c.TLS != nil {
		q.Set(paramTLS, "true")
		if c.TLS.ServerName != "" {
			q.Set(paramServerName, c.TLS.ServerName)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return "etcd.Config(" + strconv.Quote(c.String()) + ")" }

// LogValue logs the configuration as String does (see slog.LogValuer).
func (c Config) LogValue() slog.Value { return slog.StringValue(c.String()) }

// normalize checks c and fills in the defaults. Errors are
// *registry.InputError naming the field (prefixed with fieldPrefix, which is
// "Config." or "URL ").
func (c Config) normalize() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, &registry.InputError{Field: "Config.Endpoints", Reason: "is empty; want at least one etcd host:port"}
	}
	eps := make([]string, 0, len(c.Endpoints))
	for _, ep := range c.Endpoints {
		hp, err := parseHostPort(ep, "Config.Endpoints host", "Config.Endpoints port")
		if err != nil {
			return c, err
		}
		eps = append(eps, hp)
	}
	c.Endpoints = eps
	if c.BasePath == "" {
		c.BasePath = DefaultBasePath
	}
	base, err := cleanBasePath(c.BasePath, "Config.BasePath")
	if err != nil {
		return c, err
	}
	c.BasePath = base
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if err := checkTTL(c.TTL, "Config.TTL", c.TTL.String()); err != nil {
		return c, err
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if err := checkTimeout(c.DialTimeout, "Config.DialTimeout", c.DialTimeout.String()); err != nil {
		return c, err
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.RequestTimeout < 0 {
		return c, &registry.InputError{Field: "Config.RequestTimeout", Value: c.RequestTimeout.String(), Reason: "must not be negative"}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if (c.Username == "") != (c.Password == "") {
		return c, &registry.InputError{Field: "Config.Username and Config.Password", Reason: "must be given together"}
	}
	if strings.Contains(c.Username, ":") {
		return c, &registry.InputError{Field: "Config.Username", Value: c.Username, Reason: "must not contain ':'"}
	}
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
	}
	return c, nil
}

func checkTTL(ttl time.Duration, field, raw string) error {
	switch {
	case ttl < MinTTL:
		return &registry.InputError{Field: field, Value: raw, Reason: "must be at least " + MinTTL.String()}
	case ttl > MaxTTL:
		return &registry.InputError{Field: field, Value: raw, Reason: "must be at most 1h"}
	case ttl%time.Second != 0:
		return &registry.InputError{Field: field, Value: raw, Reason: "must be a whole number of seconds (etcd leases count in seconds)"}
	}
	return nil
}

func checkTimeout(d time.Duration, field, raw string) error {
	if d <= 0 {
		return &registry.InputError{Field: field, Value: raw, Reason: "must be positive"}
	}
	if d > maxDialTimeout {
		return &registry.InputError{Field: field, Value: raw, Reason: "must be at most " + maxDialTimeout.String()}
	}
	return nil
}

// cleanBasePath checks a base path and removes its trailing slashes.
func cleanBasePath(p, field string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", &registry.InputError{Field: field, Value: p, Reason: "must start with '/'"}
	}
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		return "", &registry.InputError{Field: field, Value: p, Reason: "must name a prefix, for example " + DefaultBasePath}
	}
	if path.Clean(trimmed) != trimmed {
		return "", &registry.InputError{Field: field, Value: p, Reason: "must not contain empty, '.' or '..' segments"}
	}
	for _, r := range trimmed {
		if r < 0x20 || r == 0x7f {
			return "", &registry.InputError{Field: field, Value: p, Reason: "must not contain control characters"}
		}
	}
	return trimmed, nil
}

// Query parameters of etcd:// URLs.
const (
	paramTTL         = "ttl"
	paramDialTimeout = "dial-timeout"
	paramTLS         = "tls"
	paramCA          = "ca"
	paramCert        = "cert"
	paramKey         = "key"
	paramServerName  = "server-name"
)

// urlParams are the query parameters etcd:// URLs accept, sorted.
var urlParams = []string{paramCA, paramCert, paramDialTimeout, paramKey, paramServerName, paramTLS, paramTTL}

// configFromURL parses an etcd:// URL as given by registry.Open (that is,
// by url.Parse). Errors are *registry.InputError naming the part.
func configFromURL(u *url.URL) (Config, error) {
	var c Config
	if u.Opaque != "" {
		return c, &registry.InputError{Field: "URL", Value: u.Scheme + ":" + u.Opaque, Reason: "must start with etcd://"}
	}
	if u.User != nil {
		pass, ok := u.User.Password()
		if u.User.Username() == "" || !ok || pass == "" {
			// Never quote the user info: it may be a password.
			return c, &registry.InputError{Field: "URL user info", Reason: "must be user:password (percent-encoded), as in etcd://user:password@host:2379/storks"}
		}
		c.Username, c.Password = u.User.Username(), pass
	}
	if u.Fragment != "" {
		return c, &registry.InputError{Field: "URL fragment", Value: "#" + u.Fragment, Reason: "is not supported by etcd:// URLs"}
	}
	if u.Host == "" {
		return c, &registry.InputError{Field: "URL host", Reason: "is missing; want etcd://host:port[,host:port...]/base-path"}
	}
	for _, hp := range strings.Split(u.Host, ",") {
		ep, err := parseHostPort(hp, "URL host", "URL port")
		if err != nil {
			return c, err
		}
		c.Endpoints = append(c.Endpoints, ep)
	}
	c.BasePath = DefaultBasePath
	if u.Path != "" && u.Path != "/" {
		base, err := cleanBasePath(u.Path, "URL path")
		if err != nil {
			return c, err
		}
		c.BasePath = base
	}
	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		// Neither the query nor url's error (which quotes the bad part) is
		// repeated: a misplaced password may be in it.
		return c, &registry.InputError{Field: "URL query", Reason: "is malformed (want name=value pairs joined by '&', with % escapes)"}
	}
	var tlsp tlsParams
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		if !slices.Contains(urlParams, k) {
			return c, &registry.InputError{Field: "URL query parameter", Value: k,
				Reason: "is not supported by etcd:// URLs (supported: " + strings.Join(urlParams, ", ") + ")"}
		}
		if len(vals[k]) > 1 {
			return c, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		v := vals[k][0]
		field := "URL query parameter " + k
		switch k {
		case paramTLS:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return c, &registry.InputError{Field: field, Value: v, Reason: "must be true or false"}
			}
			tlsp.on, tlsp.set = b, true
			continue
		case paramCA:
			tlsp.ca = v
			continue
		case paramCert:
			tlsp.cert = v
			continue
		case paramKey:
			tlsp.key = v
			continue
		case paramServerName:
			tlsp.serverName = v
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return c, &registry.InputError{Field: field, Value: v, Reason: "is not a duration (for example 10s or 1m30s)"}
		}
		switch k {
		case paramTTL:
			if err := checkTTL(d, field, v); err != nil {
				return c, err
			}
			c.TTL = d
		case paramDialTimeout:
			if err := checkTimeout(d, field, v); err != nil {
				return c, err
			}
			c.DialTimeout = d
		}
	}
	if c.TLS, err = tlsp.config(); err != nil {
		return c, err
	}
	return c, nil
}

// tlsParams are the TLS query parameters of a URL.
type tlsParams struct {
	on, set                   bool // tls=
	ca, cert, key, serverName string
}

// config builds the client TLS configuration the parameters describe, nil
// for none. Files are read now, so that a wrong path is reported by Open.
func (p tlsParams) config() (*tls.Config, error) {
	given := p.ca != "" || p.cert != "" || p.key != "" || p.serverName != ""
	if p.set && !p.on {
		if given {
			return nil, &registry.InputError{Field: "URL query parameter " + paramTLS, Value: "false",
				Reason: "contradicts the ca, cert, key or server-name parameter (they imply tls=true)"}
		}
		return nil, nil
	}
	if !p.on && !given {
		return nil, nil
	}
	if (p.cert == "") != (p.key == "") {
		return nil, &registry.InputError{Field: "URL query parameters cert and key", Reason: "must be given together (a client certificate and its private key, PEM files)"}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: p.serverName}
	if p.ca != "" {
		pem, err := os.ReadFile(p.ca)
		if err != nil {
			return nil, &registry.InputError{Field: "URL query parameter " + paramCA, Value: p.ca, Reason: "cannot be read: " + pathErrReason(err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &registry.InputError{Field: "URL query parameter " + paramCA, Value: p.ca, Reason: "holds no PEM certificate"}
		}
		cfg.RootCAs = pool
	}
	if p.cert != "" {
		pair, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			return nil, &registry.InputError{Field: "URL query parameters cert and key", Value: p.cert + ", " + p.key,
				Reason: "are not a certificate and its key: " + pathErrReason(err)}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// pathErrReason is the reason of a file error without the path, which the
// caller names already.
func pathErrReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseHostPort checks one "host:port" and returns it in canonical form
// (port without leading zeros, IPv6 in brackets).
func parseHostPort(s, hostField, portField string) (string, error) {
	if s == "" {
		return "", &registry.InputError{Field: hostField, Reason: "is empty; want host:port (an empty entry in a list of hosts?)"}
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return "", &registry.InputError{Field: portField, Reason: fmt.Sprintf("is missing in %q; want host:port, etcd's client port is usually 2379", s)}
		}
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			return "", &registry.InputError{Field: hostField, Value: s, Reason: "is not host:port (write IPv6 addresses in brackets, as in [::1]:2379)"}
		}
		return "", &registry.InputError{Field: hostField, Value: s, Reason: "is not host:port"}
	}
	if host == "" {
		return "", &registry.InputError{Field: hostField, Reason: fmt.Sprintf("is missing in %q; want host:port", s)}
	}
	p, ok := registry.ParsePort(port)
	if !ok {
		return "", &registry.InputError{Field: portField, Value: port, Reason: fmt.Sprintf("in %q must be a number from 1 to 65535", s)}
	}
	host, ok = registry.ValidHost(host)
	if !ok && strings.Contains(host, ":") {
		return "", &registry.InputError{Field: hostField, Value: host, Reason: "is not a valid IPv6 address"}
	} else if !ok {
		return "", &registry.InputError{Field: hostField, Value: host,
			Reason: "is not a valid host name or IP address (letters, digits, '-', '_' and '.')"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}
