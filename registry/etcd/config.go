package etcd

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"net/url"
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
}

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
)

// configFromURL parses an etcd:// URL as given by registry.Open (that is,
// by url.Parse). Errors are *registry.InputError naming the part.
func configFromURL(u *url.URL) (Config, error) {
	var c Config
	if u.Opaque != "" {
		return c, &registry.InputError{Field: "URL", Value: u.Scheme + ":" + u.Opaque, Reason: "must start with etcd://"}
	}
	if u.User != nil {
		return c, &registry.InputError{Field: "URL user info", Reason: "is not supported by etcd:// URLs"}
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
		return c, &registry.InputError{Field: "URL query", Value: u.RawQuery, Reason: "is malformed: " + err.Error()}
	}
	allowed := []string{paramDialTimeout, paramTTL}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		if !slices.Contains(allowed, k) {
			return c, &registry.InputError{Field: "URL query parameter", Value: k,
				Reason: "is not supported by etcd:// URLs (supported: " + strings.Join(allowed, ", ") + ")"}
		}
		if len(vals[k]) > 1 {
			return c, &registry.InputError{Field: "URL query parameter", Value: k, Reason: "is given more than once"}
		}
		v := vals[k][0]
		field := "URL query parameter " + k
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
	return c, nil
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
	p, err := strconv.Atoi(port)
	if err != nil || strings.Trim(port, "0123456789") != "" || p < 1 || p > 65535 {
		return "", &registry.InputError{Field: portField, Value: port, Reason: fmt.Sprintf("in %q must be a number from 1 to 65535", s)}
	}
	if strings.Contains(host, ":") {
		host = strings.Replace(host, "%25", "%", 1)
		if _, err := netip.ParseAddr(host); err != nil {
			return "", &registry.InputError{Field: hostField, Value: host, Reason: "is not a valid IPv6 address"}
		}
	} else if !validHostname(host) {
		return "", &registry.InputError{Field: hostField, Value: host,
			Reason: "is not a valid host name or IP address (letters, digits, '-', '_' and '.')"}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

func validHostname(h string) bool {
	if len(h) > 253 || h[0] == '.' || h[0] == '-' || strings.Contains(h, "..") {
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
