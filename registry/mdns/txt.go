package mdns

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/storks-rpc/storks/registry"
)

// The TXT record of an instance: one "key=value" string per entry (RFC 6763
// §6.3), each at most 255 bytes. A value too long for one string goes on in
// the strings that follow, each "+=more" (a key of its own that no other
// entry uses, so that other DNS-SD software sees well-formed entries).
const (
	txtVersion  = "txtvers" // "1", first, as RFC 6763 §6.7 suggests
	txtService  = "svc"     // ServiceKey.Service (required)
	txtVersionK = "ver"     // ServiceKey.Version (left out when empty)
	txtGroup    = "grp"     // ServiceKey.Group (left out when empty)
	txtID       = "id"      // Instance.ID (the instance label when absent)
	txtWeight   = "weight"  // Instance.Weight (DefaultWeight when absent)
	txtMetaPfx  = "m."      // "m.<key>=<value>" for each metadata entry
	txtCont     = "+"       // continuation of the previous entry's value
)

// maxTXT bounds the whole TXT record (the sum of 1+len(string)): RFC 6763
// §6.2 says a TXT record SHOULD NOT exceed 8900 bytes, and the whole
// response, with the PTR, SRV and address records, must fit in one mDNS
// packet of at most 9000 bytes (RFC 6762 §17).
const maxTXT = 8000

// maxString is the longest character-string in a TXT record.
const maxString = 255

// encodeTXT renders the TXT strings (raw, unescaped) of in. It rejects what
// cannot be carried: a metadata key that is not printable US-ASCII or that
// contains '=' (RFC 6763 §6.4), a key too long for one string, or a record
// larger than maxTXT.
func encodeTXT(in registry.Instance) ([]string, error) {
	out := []string{txtVersion + "=1"}
	add := func(field, key, value string) error {
		if len(key)+1 >= maxString {
			return &registry.InputError{Field: field, Value: key, Reason: fmt.Sprintf("is too long for an mDNS TXT entry (a key may have at most %d bytes)", maxString-len(txtMetaPfx)-2)}
		}
		s := key + "=" + value
		for len(s) > maxString {
			out = append(out, s[:maxString])
			s = txtCont + "=" + s[maxString:]
		}
		out = append(out, s)
		return nil
	}
	// The key's fields are valid (checked by Validate): no '=' matters in
	// a value, and each is at most 255 bytes.
	_ = add("service", txtService, in.Key.Service)
	if in.Key.Version != "" {
		_ = add("version", txtVersionK, in.Key.Version)
	}
	if in.Key.Group != "" {
		_ = add("group", txtGroup, in.Key.Group)
	}
	_ = add("instance ID", txtID, in.ID)
	_ = add("weight", txtWeight, strconv.Itoa(in.Weight))
	keys := make([]string, 0, len(in.Metadata))
	for k := range in.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for i := 0; i < len(k); i++ {
			if c := k[i]; c < 0x20 || c > 0x7e || c == '=' {
				return nil, &registry.InputError{Field: "metadata key", Value: k,
					Reason: "cannot be carried in an mDNS TXT record (printable US-ASCII without '=' only, RFC 6763 §6.4)"}
			}
		}
		if err := add("metadata key", txtMetaPfx+k, in.Metadata[k]); err != nil {
			return nil, err
		}
	}
	size := 0
	for _, s := range out {
		size += 1 + len(s)
	}
	if size > maxTXT {
		return nil, &registry.InputError{Field: "metadata", Reason: fmt.Sprintf(
			"makes a TXT record of %d bytes; an mDNS instance may carry at most %d (RFC 6762 §17, RFC 6763 §6.2)", size, maxTXT)}
	}
	return out, nil
}

// txtFields parses raw TXT strings into their entries: the first
// occurrence of a key wins (RFC 6763 §6.4), keys compare case-insensitively
// (reserved keys are lower-cased; metadata keys keep their case after the
// "m." prefix), strings without '=' are ignored, and "+=..." strings
// continue the value of the entry before them.
func txtFields(strs []string) map[string]string {
	fields := make(map[string]string, len(strs))
	last := ""
	for _, s := range strs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			last = ""
			continue
		}
		if k == txtCont {
			if last != "" {
				fields[last] += v
			}
			continue
		}
		if len(k) >= len(txtMetaPfx) && strings.EqualFold(k[:len(txtMetaPfx)], txtMetaPfx) {
			k = txtMetaPfx + k[len(txtMetaPfx):]
		} else {
			k = strings.ToLower(k)
		}
		if _, dup := fields[k]; dup {
			last = ""
			continue
		}
		fields[k] = v
		last = k
	}
	return fields
}

// decodeTXT builds the instance an instance's TXT strings describe, but for
// its address. label is the unescaped instance label, the ID when the TXT
// record has none. ok is false when the record has no service name.
func decodeTXT(strs []string, label string) (registry.Instance, bool) {
	f := txtFields(strs)
	svc, ok := f[txtService]
	if !ok || svc == "" {
		return registry.Instance{}, false
	}
	in := registry.Instance{
		Key:    registry.ServiceKey{Service: svc, Version: f[txtVersionK], Group: f[txtGroup]},
		ID:     f[txtID],
		Weight: registry.DefaultWeight,
	}
	if in.ID == "" {
		in.ID = label
	}
	if w, err := strconv.Atoi(f[txtWeight]); err == nil && w >= 0 {
		in.Weight = w
	}
	for k, v := range f {
		if strings.HasPrefix(k, txtMetaPfx) {
			if in.Metadata == nil {
				in.Metadata = make(map[string]string)
			}
			in.Metadata[k[len(txtMetaPfx):]] = v
		}
	}
	return in, true
}
