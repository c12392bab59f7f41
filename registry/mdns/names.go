package mdns

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/storks-rpc/storks/registry"
)

// Names are kept in the presentation form of github.com/miekg/dns, fully
// qualified and escaped the way it unpacks them, so that names built here
// and names read from the wire compare equal (after foldName).

// typePrefix starts every Storks service name; the rest is a hash.
const typePrefix = "storks-"

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ServiceType returns the DNS-SD service type that the instances of key are
// announced under: "_storks-XXXXXXXX._tcp", where XXXXXXXX is the first 40
// bits of the SHA-256 of key.String() ("group/service:version") in
// lower-case base32 (a-z, 2-7). It is 15 bytes long, the most RFC 6763
// §7.2 allows, whatever the length of the key or the characters in it (such
// as the '@' of "helloworld.Greeter@consumers"), and distinct for every
// version and group. The key itself is carried in the TXT record, and
// consumers check it, so that two keys whose hashes collide still never see
// each other's instances. Another program that announces a Storks provider
// (see the package documentation) browses or registers this type in the
// domain, for example "_storks-abcdefgh._tcp.local.".
func ServiceType(key registry.ServiceKey) string {
	sum := sha256.Sum256([]byte(key.String()))
	return "_" + typePrefix + b32.EncodeToString(sum[:5]) + "._tcp"
}

// typeName is the fully qualified service type of key in domain ("local.").
func typeName(key registry.ServiceKey, domain string) string {
	return ServiceType(key) + "." + domain
}

// servicesName is the DNS-SD service type enumeration name (RFC 6763 §9).
func servicesName(domain string) string { return "_services._dns-sd._udp." + domain }

// maxLabel is the longest DNS label, in bytes.
const maxLabel = 63

// instanceLabel returns the unescaped instance label for an ID: the ID
// itself if it is short valid UTF-8 without control characters, otherwise a
// readable prefix of it and a hash of the whole, so that every ID gets a
// label of at most maxLabel-5 bytes (room for a " (NN)" conflict suffix).
func instanceLabel(id string) string {
	const keep = maxLabel - 5
	if len(id) <= keep && utf8.ValidString(id) && !strings.ContainsFunc(id, isControl) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	suffix := "~" + hex.EncodeToString(sum[:4])
	var b strings.Builder
	for _, r := range id {
		if r == utf8.RuneError || isControl(r) {
			r = '_'
		}
		if b.Len()+utf8.RuneLen(r)+len(suffix) > keep {
			break
		}
		b.WriteRune(r)
	}
	return b.String() + suffix
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// withSuffix is the label after n-1 conflicts: "label", "label (2)", ...
func withSuffix(label string, n int) string {
	if n <= 1 {
		return label
	}
	return label + " (" + strconv.Itoa(n) + ")"
}

// escapeLabel escapes one raw label the way miekg/dns unpacks it.
func escapeLabel(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '.' || c == ' ' || c == '\'' || c == '@' || c == ';' || c == '(' || c == ')' || c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// firstLabel splits an escaped name into its first label, unescaped, and
// the rest after the dot.
func firstLabel(name string) (label, rest string, ok bool) {
	var b []byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			return string(b), name[i+1:], true
		case c == '\\':
			if i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]) {
				n := int(name[i+1]-'0')*100 + int(name[i+2]-'0')*10 + int(name[i+3]-'0')
				if n > 255 {
					return "", "", false
				}
				b = append(b, byte(n))
				i += 3
			} else if i+1 < len(name) {
				b = append(b, name[i+1])
				i++
			} else {
				return "", "", false
			}
		default:
			b = append(b, c)
		}
	}
	return "", "", false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// foldName lower-cases the ASCII letters of a name: DNS names compare
// case-insensitively (ASCII only, RFC 4343); escapes hold digits only.
func foldName(name string) string {
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// hostLabel is the host name label a registry announces for one IP
// address: unique to the registry (its random tag) and to the address.
func hostLabel(tag string, ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return "storks-" + tag + "-" + hex.EncodeToString(v4)
	}
	return "storks-" + tag + "-" + hex.EncodeToString(ip.To16())
}

// escapeTXT escapes one raw TXT string the way miekg/dns unpacks it.
func escapeTXT(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			fmt.Fprintf(&b, "\\%03d", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeTXT undoes escapeTXT (and any escaping miekg/dns accepts).
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b = append(b, c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			b = append(b, byte(n))
			i += 3
			continue
		}
		b = append(b, s[i+1])
		i++
	}
	return string(b)
}
