package zookeeper

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// escape turns s into one znode name: ASCII letters, digits and "-_.~:@" stay,
// every other byte becomes %XX, and the names "." and ".." (which ZooKeeper
// forbids) have their dots escaped.
func escape(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.~:@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// providersDir returns the znode whose children are the instances of key.
func (r *Registry) providersDir(key registry.ServiceKey) string {
	return r.cfg.BasePath + "/" + escape(key.String()) + "/providers"
}

// nodePath returns the znode of one instance.
func (r *Registry) nodePath(key registry.ServiceKey, id string) string {
	return r.providersDir(key) + "/" + escape(id)
}

// parents returns the ancestors of the providers node of key that may need
// creating, from the top.
func (r *Registry) parents(dir string) []string {
	var out []string
	for i := 1; i < len(dir); i++ {
		if dir[i] == '/' {
			out = append(out, dir[:i])
		}
	}
	return append(out, dir)
}

type nodeKey struct {
	Service string `json:"service"`
	Version string `json:"version,omitempty"`
	Group   string `json:"group,omitempty"`
}

// nodeData is the JSON value of an instance znode.
type nodeData struct {
	Key      nodeKey           `json:"key"`
	ID       string            `json:"id"`
	Addr     string            `json:"addr"`
	Weight   *int              `json:"weight,omitempty"` // nil: DefaultWeight (data written before weight 0 meant zero)
	Metadata map[string]string `json:"metadata,omitempty"`
}

// encode returns the znode data of in. Equal instances encode to equal bytes
// (encoding/json sorts map keys).
func encode(in registry.Instance) ([]byte, error) {
	b, err := json.Marshal(nodeData{
		Key:      nodeKey{Service: in.Key.Service, Version: in.Key.Version, Group: in.Key.Group},
		ID:       in.ID,
		Addr:     in.Addr,
		Weight:   &in.Weight,
		Metadata: in.Metadata,
	})
	if err != nil {
		return nil, fmt.Errorf("zookeeper: encoding instance %q: %w", in.ID, err)
	}
	if len(b) > maxNodeData {
		return nil, &registry.InputError{Field: "instance", Value: in.ID,
			Reason: fmt.Sprintf("encodes to %d bytes; the ZooKeeper adapter stores at most %d bytes per instance (trim the metadata)", len(b), maxNodeData)}
	}
	return b, nil
}

// decode parses the data of the znode called name under the providers node
// of key. It fails if the data is not an instance of key called name.
func decode(key registry.ServiceKey, name string, data []byte) (registry.Instance, error) {
	var d nodeData
	if err := json.Unmarshal(data, &d); err != nil {
		return registry.Instance{}, fmt.Errorf("not an instance in JSON: %w", err)
	}
	in := registry.Instance{
		Key:      registry.ServiceKey{Service: d.Key.Service, Version: d.Key.Version, Group: d.Key.Group},
		ID:       d.ID,
		Addr:     d.Addr,
		Weight:   registry.DefaultWeight,
		Metadata: d.Metadata,
	}
	if d.Weight != nil {
		in.Weight = *d.Weight
	}
	if in.Key != key {
		return in, fmt.Errorf("holds an instance of key %v", in.Key)
	}
	if escape(in.ID) != name {
		return in, fmt.Errorf("holds instance ID %q, which does not match the node name", in.ID)
	}
	if err := in.Validate(); err != nil {
		return in, err
	}
	return in, nil
}

func sortByID(list []registry.Instance) {
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
}

func cloneList(list []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, len(list))
	for i, in := range list {
		out[i] = in.Clone()
	}
	return out
}

func sameList(a, b []registry.Instance) bool {
	return slices.EqualFunc(a, b, func(x, y registry.Instance) bool {
		if x.Key != y.Key || x.ID != y.ID || x.Addr != y.Addr || x.Weight != y.Weight || len(x.Metadata) != len(y.Metadata) {
			return false
		}
		for k, v := range x.Metadata {
			if w, ok := y.Metadata[k]; !ok || w != v {
				return false
			}
		}
		return true
	})
}

// backoff is a capped exponential backoff with full jitter on its upper
// half: each delay is uniformly drawn from [d/2, d), d doubling from min up
// to max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// signal does a non-blocking send on a 1-buffered channel.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// unescape reverses escape; it reports false for a malformed name.
func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// parseKeyName returns the service key whose escaped String() is name.
func parseKeyName(name string) (registry.ServiceKey, bool) {
	s, ok := unescape(name)
	if !ok {
		return registry.ServiceKey{}, false
	}
	var k registry.ServiceKey
	if i := strings.IndexByte(s, '/'); i >= 0 {
		k.Group, s = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s, k.Version = s[:i], s[i+1:]
	}
	k.Service = s
	if k.Validate() != nil || escape(k.String()) != name {
		return registry.ServiceKey{}, false
	}
	return k, true
}
