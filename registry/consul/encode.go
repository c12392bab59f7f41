package consul

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"

	"github.com/storks-rpc/storks/registry"
)

// Consul's limits on service meta (agent/structs: metaKeyFormat,
// metaKeyMaxLength, metaValueMaxLength, metaMaxKeyPairs) and the prefix it
// reserves.
const (
	metaMaxPairs       = 64
	metaKeyMaxLen      = 128
	metaValueMaxLen    = 512
	consulMetaReserved = "consul-"
)

// The service meta keys the adapter writes. Every key it owns starts with
// metaPrefix; the others are the instance's own metadata.
const (
	metaPrefix  = "storks-"
	metaService = "storks-service" // the exact proto service name
	metaVersion = "storks-version" // absent when empty
	metaGroup   = "storks-group"   // absent when empty
	metaWeight  = "storks-weight"  // the effective weight
	metaID      = "storks-id"      // the instance ID, split into parts if long
	metaExtra   = "storks-meta"    // JSON of the metadata entries that are not stored as they are
)

// Tag prefixes of the version and group tags, so that operators can filter
// with ?tag=version=1.0.0 or in the UI.
const (
	tagStorks  = "storks" // on every instance, so that Services can find them
	tagVersion = "version="
	tagGroup   = "group="
)

// dnsLabelMax is the longest DNS label, the longest Consul service name that
// Consul's DNS interface can serve.
const dnsLabelMax = 63

// ServiceName returns the Consul service name under which the instances of
// a proto service are registered: the name lower-cased, with every
// character other than a letter, a digit or '-' replaced by '-' (runs of
// them collapsed, none at either end), so that Consul's DNS interface can
// serve it: "helloworld.Greeter" becomes "helloworld-greeter". A result
// longer than 63 characters is cut to 54 and followed by '-' and 8 hex
// digits of a hash of the full proto name.
//
// The mapping is not one-to-one ("a.B" and "a_b" share a name), which is
// harmless: the exact service name, version and group are kept in the
// service meta, and Discover and Watch return only exact matches.
func ServiceName(service string) string {
	var b strings.Builder
	b.Grow(len(service))
	dash := false
	for i := 0; i < len(service); i++ {
		c := service[i]
		switch {
		case 'a' <= c && c <= 'z' || '0' <= c && c <= '9':
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		default:
			c = '-'
		}
		if c == '-' {
			if dash || b.Len() == 0 {
				continue
			}
			dash = true
		} else {
			dash = false
		}
		b.WriteByte(c)
	}
	name := strings.TrimRight(b.String(), "-")
	if name == "" {
		name = "storks"
	}
	if len(name) > dnsLabelMax {
		// The hash keeps apart the names that share a long prefix.
		name = strings.TrimRight(name[:dnsLabelMax-9], "-") + "-" + shortHash(service, 8)
	}
	return name
}

// ServiceID returns the Consul service ID of an instance: a readable part
// (the Consul service name and the instance ID with the characters other
// than letters, digits, '.' and '-' replaced) followed by 24 hex digits of
// a SHA-256 of the exact service key and instance ID, so that the IDs of
// two instances differ whenever their key or their ID differ, whatever
// their characters.
func ServiceID(key registry.ServiceKey, id string) string {
	readable := make([]byte, 0, 32)
	for i := 0; i < len(id) && len(readable) < 32; i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			c = '_'
		}
		readable = append(readable, c)
	}
	// key.String() is unambiguous (its parts cannot contain '/' or ':')
	// and cannot contain '\n'.
	return ServiceName(key.Service) + "-" + string(readable) + "-" + shortHash(key.String()+"\n"+id, 24)
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

func ttlCheckID(serviceID string) string { return "service:" + serviceID + ":ttl" }
func tcpCheckID(serviceID string) string { return "service:" + serviceID + ":tcp" }

// validMetaKey reports whether k can be a Consul service meta key.
func validMetaKey(k string) bool {
	if k == "" || len(k) > metaKeyMaxLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// encodeMeta returns the service meta of an instance:
//
//	storks-service   the exact proto service name
//	storks-version   the version (absent when empty)
//	storks-group     the group (absent when empty)
//	storks-weight    the effective weight
//	storks-id        the instance ID
//	storks-meta      a JSON object of the metadata entries that cannot be meta entries of their own
//	<key>            every metadata entry whose key is a valid Consul meta
//	                 key ([A-Za-z0-9_-], at most 128 characters) that does
//	                 not start with "storks-" or "consul-", and whose value
//	                 is at most 512 bytes
//
// A storks-id or storks-meta value longer than 512 bytes is split at UTF-8
// character boundaries into storks-id, storks-id-1, storks-id-2, ... The
// result has at most 64 entries, or encodeMeta returns an error.
func encodeMeta(in registry.Instance) (map[string]string, error) {
	if !utf8.ValidString(in.ID) {
		return nil, &registry.InputError{Field: "instance ID", Value: in.ID, Reason: "is not valid UTF-8 (Consul stores strings as JSON)"}
	}
	meta := map[string]string{
		metaService: in.Key.Service,
		metaWeight:  strconv.Itoa(in.EffectiveWeight()), // exact, 0 included
	}
	if in.Key.Version != "" {
		meta[metaVersion] = in.Key.Version
	}
	if in.Key.Group != "" {
		meta[metaGroup] = in.Key.Group
	}
	putParts(meta, metaID, in.ID)
	var extra map[string]string
	for _, k := range slices.Sorted(maps.Keys(in.Metadata)) {
		v := in.Metadata[k]
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, &registry.InputError{Field: "metadata", Value: k, Reason: "is not valid UTF-8 in its key or value (Consul stores strings as JSON)"}
		}
		if validMetaKey(k) && !strings.HasPrefix(k, metaPrefix) && !strings.HasPrefix(k, consulMetaReserved) && len(v) <= metaValueMaxLen {
			meta[k] = v
			continue
		}
		if extra == nil {
			extra = make(map[string]string)
		}
		extra[k] = v
	}
	if len(extra) > 0 {
		data, err := json.Marshal(extra)
		if err != nil {
			return nil, fmt.Errorf("consul: encoding metadata: %w", err)
		}
		putParts(meta, metaExtra, string(data))
	}
	if len(meta) > metaMaxPairs {
		return nil, &registry.InputError{Field: "metadata", Reason: fmt.Sprintf(
			"needs %d Consul service meta entries, more than Consul's limit of %d "+
				"(the service key, weight and instance ID take up to 5; an entry whose key is [A-Za-z0-9_-]{1,128} "+
				"and whose value is at most 512 bytes takes one, the others are packed as JSON into 512-byte entries)",
			len(meta), metaMaxPairs)}
	}
	return meta, nil
}

// putParts stores s under key, splitting it at UTF-8 character boundaries
// into key, key-1, key-2, ... values of at most 512 bytes.
func putParts(meta map[string]string, key, s string) {
	for i := 0; ; i++ {
		n := len(s)
		if n > metaValueMaxLen {
			n = metaValueMaxLen
			for n > 0 && !utf8.RuneStart(s[n]) {
				n--
			}
		}
		k := key
		if i > 0 {
			k = key + "-" + strconv.Itoa(i)
		}
		meta[k] = s[:n]
		s = s[n:]
		if s == "" {
			return
		}
	}
}

// getParts joins the parts putParts stored under key.
func getParts(meta map[string]string, key string) (string, bool) {
	v, ok := meta[key]
	if !ok {
		return "", false
	}
	for i := 1; ; i++ {
		p, ok := meta[key+"-"+strconv.Itoa(i)]
		if !ok {
			return v, true
		}
		v += p
	}
}

// matches reports whether the service meta belongs to an instance of key.
func matches(meta map[string]string, key registry.ServiceKey) bool {
	return meta[metaService] == key.Service && meta[metaVersion] == key.Version && meta[metaGroup] == key.Group
}

// decodeService rebuilds the instance of key that a service entry holds.
func decodeService(s *api.AgentService, key registry.ServiceKey) (registry.Instance, error) {
	id, ok := getParts(s.Meta, metaID)
	if !ok || id == "" {
		return registry.Instance{}, fmt.Errorf("service %q has no %s meta", s.ID, metaID)
	}
	host := s.Address
	// A consumer record may have port 0: it listens nowhere.
	if host == "" || s.Port < 0 || s.Port == 0 && !key.IsConsumer() {
		return registry.Instance{}, fmt.Errorf("service %q has no address", s.ID)
	}
	in := registry.Instance{Key: key, ID: id, Addr: net.JoinHostPort(host, strconv.Itoa(s.Port))}
	// The meta holds the exact weight, 0 included (Consul's own
	// Weights.Passing must be at least 1); a service registered by another
	// tool has only Weights.Passing, or nothing.
	if w, err := strconv.Atoi(s.Meta[metaWeight]); err == nil && w >= 0 {
		in.Weight = w
	} else if s.Weights.Passing > 0 {
		in.Weight = s.Weights.Passing
	} else {
		in.Weight = registry.DefaultWeight
	}
	for k, v := range s.Meta {
		if strings.HasPrefix(k, metaPrefix) || strings.HasPrefix(k, consulMetaReserved) {
			continue
		}
		if in.Metadata == nil {
			in.Metadata = make(map[string]string)
		}
		in.Metadata[k] = v
	}
	if data, ok := getParts(s.Meta, metaExtra); ok {
		var extra map[string]string
		if err := json.Unmarshal([]byte(data), &extra); err != nil {
			return registry.Instance{}, fmt.Errorf("service %q: bad %s meta: %v", s.ID, metaExtra, err)
		}
		if len(extra) > 0 && in.Metadata == nil {
			in.Metadata = make(map[string]string, len(extra))
		}
		maps.Copy(in.Metadata, extra)
	}
	return in, nil
}

// tags returns the Consul tags of an instance of key.
func tags(key registry.ServiceKey) []string {
	t := []string{tagStorks}
	if key.Version != "" {
		t = append(t, tagVersion+key.Version)
	}
	if key.Group != "" {
		t = append(t, tagGroup+key.Group)
	}
	return t
}
