package registry

import (
	"net/url"
	"strings"
)

// RedactURL returns rawURL with its secrets replaced by "redacted", for
// logs and error messages: the password of the user info
// ("etcd://user:redacted@host"), a user info without a password as a whole
// (it may be a token: "consul://redacted@host"), and the value of every
// query parameter whose name contains "token", "password", "passwd" or
// "secret" ("?token=redacted"). It works on malformed URLs too (it does
// not parse them), and leaves everything else as it is.
func RedactURL(rawURL string) string {
	var b strings.Builder
	b.Grow(len(rawURL) + 16)
	rest := rawURL
	if i := strings.IndexByte(rest, ':'); i >= 0 && !strings.ContainsAny(rest[:i], "/?#@") {
		// "scheme:", and "//" if it follows.
		n := i + 1
		if strings.HasPrefix(rest[n:], "//") {
			n += 2
		}
		b.WriteString(rest[:n])
		rest = rest[n:]
	} else if strings.HasPrefix(rest, "//") {
		b.WriteString("//")
		rest = rest[2:]
	}
	// The authority (or opaque part) ends at the first '/', '?' or '#';
	// its user info at the last '@' before that.
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
		if user, _, hasPass := strings.Cut(rest[:at], ":"); hasPass {
			b.WriteString(user)
			b.WriteString(":redacted")
		} else {
			b.WriteString("redacted")
		}
		rest = rest[at:]
	}
	q := strings.IndexByte(rest, '?')
	if q < 0 {
		b.WriteString(rest)
		return b.String()
	}
	b.WriteString(rest[:q+1])
	query, frag, hasFrag := strings.Cut(rest[q+1:], "#")
	for i, pair := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, hasValue := strings.Cut(pair, "=")
		if hasValue && secretParam(name) {
			b.WriteString(name)
			b.WriteString("=redacted")
		} else {
			b.WriteString(pair)
		}
	}
	if hasFrag {
		b.WriteByte('#')
		b.WriteString(frag)
	}
	return b.String()
}

// secretParam reports whether a query parameter of this name holds a
// secret.
func secretParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(name)
	for _, s := range []string{"token", "password", "passwd", "secret"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
