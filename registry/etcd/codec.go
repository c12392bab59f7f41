package etcd

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// servicePrefix returns the prefix of the keys of every instance of key,
// with its trailing slash, so that "svc" does not match "svc2".
func servicePrefix(base string, key registry.ServiceKey) string {
	return base + "/" + url.PathEscape(key.String()) + "/"
}

// instanceKey returns the etcd key of one instance.
func instanceKey(base string, key registry.ServiceKey, id string) string {
	return servicePrefix(base, key) + url.PathEscape(id)
}

// record is the JSON value stored under an instance key.
type record struct {
	Service    string            `json:"service"`
	Version    string            `json:"version,omitempty"`
	Group      string            `json:"group,omitempty"`
	ID         string            `json:"id"`
	Addr       string            `json:"addr"`
	Weight     *int              `json:"weight,omitempty"` // nil: DefaultWeight (records written before weight 0 meant zero)
	Metadata   map[string]string `json:"metadata,omitempty"`
	Registered time.Time         `json:"registered"`
}

func encode(in registry.Instance, registered time.Time) string {
	b, err := json.Marshal(record{
		Service:    in.Key.Service,
		Version:    in.Key.Version,
		Group:      in.Key.Group,
		ID:         in.ID,
		Addr:       in.Addr,
		Weight:     &in.Weight,
		Metadata:   in.Metadata,
		Registered: registered.UTC().Truncate(time.Millisecond),
	})
	if err != nil {
		// A record holds only strings, ints and a time.
		panic("etcd: encoding an instance: " + err.Error())
	}
	return string(b)
}

var errBadRecord = errors.New("not a Storks instance record")

// decode parses the value stored under the instance key etcdKey and checks
// that it belongs to the service key want, whose keys start with prefix, and
// that its ID is the one its etcd key names.
func decode(etcdKey string, value []byte, prefix string, want registry.ServiceKey) (registry.Instance, error) {
	var rec record
	if err := json.Unmarshal(value, &rec); err != nil {
		return registry.Instance{}, errors.Join(errBadRecord, err)
	}
	in := registry.Instance{
		Key:      registry.ServiceKey{Service: rec.Service, Version: rec.Version, Group: rec.Group},
		ID:       rec.ID,
		Addr:     rec.Addr,
		Weight:   registry.DefaultWeight,
		Metadata: rec.Metadata,
	}
	if rec.Weight != nil {
		in.Weight = *rec.Weight
	}
	if in.Key != want {
		return registry.Instance{}, errors.Join(errBadRecord, errors.New("its service key is "+in.Key.String()))
	}
	if in.ID == "" || in.Addr == "" {
		return registry.Instance{}, errors.Join(errBadRecord, errors.New("it has no ID or no address"))
	}
	if etcdKey != prefix+url.PathEscape(in.ID) {
		return registry.Instance{}, errors.Join(errBadRecord, errors.New("its ID "+in.ID+" is not the one its key names"))
	}
	return in, nil
}

// sortedList returns the instances of m sorted by ID, sharing no memory with
// m. The result is never nil.
func sortedList(m map[string]registry.Instance) []registry.Instance {
	list := make([]registry.Instance, 0, len(m))
	for _, in := range m {
		list = append(list, in.Clone())
	}
	slices.SortFunc(list, func(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// parseServiceKey parses the escaped service key segment of an instance key
// ("group%2Fservice:version"), the inverse of servicePrefix.
func parseServiceKey(seg string) (registry.ServiceKey, bool) {
	s, err := url.PathUnescape(seg)
	if err != nil {
		return registry.ServiceKey{}, false
	}
	var k registry.ServiceKey
	if i := strings.IndexByte(s, '/'); i >= 0 {
		k.Group, s = s[:i], s[i+1:]
		if k.Group == "" {
			return registry.ServiceKey{}, false
		}
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s, k.Version = s[:i], s[i+1:]
		if k.Version == "" {
			return registry.ServiceKey{}, false
		}
	}
	k.Service = s
	if k.Validate() != nil || url.PathEscape(k.String()) != seg {
		return registry.ServiceKey{}, false
	}
	return k, true
}
