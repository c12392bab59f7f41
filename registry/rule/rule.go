package rule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// FormatVersion is the version of the rule format this package reads and
// writes; documents must say "version": 1.
const FormatVersion = 1

// MaxWeight is the largest weight an override may set.
const MaxWeight = 1_000_000

// MaxTimeout is the longest timeout a policy may set.
const MaxTimeout = time.Hour

// Set is the rule document of one service key.
type Set struct {
	// Version is the format version, FormatVersion.
	Version int `json:"version"`
	// Overrides change providers; they apply in order, so a later one wins
	// where two set the same thing on one provider.
	Overrides []Override `json:"overrides,omitempty"`
	// Policy sets the default timeout and fail mode of every method.
	Policy *Policy `json:"policy,omitempty"`
	// Methods sets them for single methods (by short name, "SayHello"),
	// over Policy.
	Methods map[string]Policy `json:"methods,omitempty"`
	// TagRouting says how tagged and untagged calls meet tagged and
	// untagged providers. Without it, tagged calls fall back to untagged
	// providers and untagged calls never reach tagged ones.
	TagRouting *TagRouting `json:"tagRouting,omitempty"`
}

// Override changes the providers its Match selects.
type Override struct {
	Match Match `json:"match"`
	// Weight replaces the providers' registered weight.
	Weight *int `json:"weight,omitempty"`
	// Disabled true takes the providers out of rotation; false puts back
	// providers that an earlier override disabled.
	Disabled *bool `json:"disabled,omitempty"`
	// Tag replaces the providers' routing tag (metadata "tag"); "" removes
	// it.
	Tag *string `json:"tag,omitempty"`
}

// Match selects providers: every field given must match (an empty Match,
// which would select every provider, is invalid).
type Match struct {
	ID       string            `json:"id,omitempty"`
	Addr     string            `json:"addr,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Policy is a default timeout and fail mode.
type Policy struct {
	// Timeout applies to calls whose context has no deadline, replacing
	// runtime.WithDefaultTimeout.
	Timeout Duration `json:"timeout,omitempty"`
	// FailMode replaces the reference's fail mode (not one given to the
	// call): "failfast", "failover(N)", "failtry(N)" or "failbackup(D)"
	// with D a duration such as 20ms, the forms runtime.FailMode.String
	// prints.
	FailMode string `json:"failMode,omitempty"`
}

// TagRouting says how tags route calls.
type TagRouting struct {
	// Fallback lets a tagged call go to untagged providers when no live
	// provider has its tag; false makes it fail with a clear error.
	Fallback bool `json:"fallback"`
	// UntaggedToTagged lets calls without a tag reach tagged providers
	// too; false keeps them on untagged ones.
	UntaggedToTagged bool `json:"untaggedToTagged"`
}

// Duration is a time.Duration written as a string such as "50ms".
type Duration time.Duration

// MarshalJSON writes the duration as a string ("50ms").
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a string such as "50ms" or "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "50ms"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (want e.g. \"50ms\")", s)
	}
	*d = Duration(v)
	return nil
}

// Error reports an invalid rule document, naming the field.
type Error struct {
	Field  string // "overrides[1].weight"; "" for the document itself
	Reason string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return "rule: " + e.Reason
	}
	return "rule: " + e.Field + ": " + e.Reason
}

// Parse decodes and validates a rule document. Unknown fields are errors.
func Parse(doc []byte) (*Set, error) {
	if len(bytes.TrimSpace(doc)) == 0 {
		return nil, &Error{Reason: "the document is empty"}
	}
	if len(doc) > registry.MaxRuleSize {
		return nil, &Error{Reason: "the document is larger than 256 KiB"}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	var s Set
	if err := dec.Decode(&s); err != nil {
		return nil, jsonError(err)
	}
	if dec.More() {
		return nil, &Error{Reason: "trailing data after the JSON object"}
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// jsonError turns an encoding/json error into an *Error naming the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return &Error{Field: te.Field, Reason: "want " + jsonType(te.Type.String()) + ", not " + te.Value}
	case errors.As(err, &se):
		return &Error{Reason: fmt.Sprintf("not valid JSON at byte %d: %v", se.Offset, se)}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name, _ := strconv.Unquote(f)
		return &Error{Field: name, Reason: "unknown field (see the format in `storks rule --help`)"}
	}
	if strings.HasPrefix(msg, "json: cannot unmarshal") || strings.Contains(msg, "unexpected EOF") {
		return &Error{Reason: strings.TrimPrefix(msg, "json: ")}
	}
	// Errors from Duration.UnmarshalJSON carry no field name.
	return &Error{Reason: strings.TrimPrefix(msg, "json: ")}
}

func jsonType(t string) string {
	switch {
	case strings.HasPrefix(t, "int"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "map"), strings.HasPrefix(t, "rule."), strings.HasPrefix(t, "*rule."):
		return "an object"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return t
}

// Validate checks every field of s and returns an *Error naming the first
// bad one.
func (s *Set) Validate() error {
	if s.Version != FormatVersion {
		if s.Version == 0 {
			return &Error{Field: "version", Reason: fmt.Sprintf("missing; the current format is \"version\": %d", FormatVersion)}
		}
		return &Error{Field: "version", Reason: fmt.Sprintf("%d is not supported; the current format is %d", s.Version, FormatVersion)}
	}
	for i, o := range s.Overrides {
		if err := o.validate(fmt.Sprintf("overrides[%d]", i)); err != nil {
			return err
		}
	}
	if s.Policy != nil {
		if err := s.Policy.validate("policy"); err != nil {
			return err
		}
	}
	for _, m := range slices.Sorted(maps.Keys(s.Methods)) {
		f := "methods[" + strconv.Quote(m) + "]"
		if m == "" || strings.ContainsAny(m, "/. \t\r\n") {
			return &Error{Field: f, Reason: "is not a method name (use the short name, such as \"SayHello\")"}
		}
		p := s.Methods[m]
		if err := p.validate(f); err != nil {
			return err
		}
	}
	return nil
}

func (o *Override) validate(f string) error {
	m := o.Match
	if m.ID == "" && m.Addr == "" && len(m.Metadata) == 0 {
		return &Error{Field: f + ".match", Reason: "must set id, addr or metadata (an empty match would select every provider)"}
	}
	if m.Addr != "" {
		if err := registry.ValidateAddr(m.Addr); err != nil {
			return &Error{Field: f + ".match.addr", Reason: fmt.Sprintf("%q is not host:port", m.Addr)}
		}
	}
	for k := range m.Metadata {
		if k == "" {
			return &Error{Field: f + ".match.metadata", Reason: "has an empty key"}
		}
	}
	if o.Weight == nil && o.Disabled == nil && o.Tag == nil {
		return &Error{Field: f, Reason: "changes nothing: set weight, disabled or tag"}
	}
	if o.Weight != nil && (*o.Weight < 0 || *o.Weight > MaxWeight) {
		return &Error{Field: f + ".weight", Reason: fmt.Sprintf("%d is outside 0..%d", *o.Weight, MaxWeight)}
	}
	if o.Tag != nil {
		if err := ValidateTag(*o.Tag); err != nil && *o.Tag != "" {
			return &Error{Field: f + ".tag", Reason: err.Error()}
		}
	}
	return nil
}

func (p *Policy) validate(f string) error {
	if p.Timeout == 0 && p.FailMode == "" {
		return &Error{Field: f, Reason: "sets nothing: set timeout or failMode"}
	}
	if p.Timeout < 0 || time.Duration(p.Timeout) > MaxTimeout {
		return &Error{Field: f + ".timeout", Reason: fmt.Sprintf("%v is outside (0, 1h]", time.Duration(p.Timeout))}
	}
	if p.FailMode != "" {
		if _, err := ParseFailMode(p.FailMode); err != nil {
			return &Error{Field: f + ".failMode", Reason: err.Error()}
		}
	}
	return nil
}

// ValidateTag reports whether tag can be a routing tag: 1 to 63 letters,
// digits, '-', '_' or '.'.
func ValidateTag(tag string) error {
	if tag == "" || len(tag) > 63 {
		return fmt.Errorf("%q must be 1 to 63 characters", tag)
	}
	for _, c := range []byte(tag) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_' and '.'", tag)
		}
	}
	return nil
}

// FailMode is a parsed Policy.FailMode.
type FailMode struct {
	Kind    string // "failfast", "failover", "failtry" or "failbackup"
	Retries int
	Delay   time.Duration
}

// ParseFailMode reads the forms of Policy.FailMode: "failfast",
// "failover(N)", "failtry(N)" (N from 0 to 10; "failover" alone is
// failover(2), "failtry" failtry(1)) and "failbackup(D)" with D a positive
// duration.
func ParseFailMode(s string) (FailMode, error) {
	name, arg, hasArg := strings.Cut(s, "(")
	if hasArg {
		var ok bool
		if arg, ok = strings.CutSuffix(arg, ")"); !ok {
			return FailMode{}, fmt.Errorf("%q lacks its closing parenthesis", s)
		}
	}
	switch name {
	case "failfast":
		if hasArg {
			return FailMode{}, fmt.Errorf("%q: failfast takes no argument", s)
		}
		return FailMode{Kind: name}, nil
	case "failover", "failtry":
		n := 2
		if name == "failtry" {
			n = 1
		}
		if hasArg {
			v, err := strconv.Atoi(arg)
			if err != nil || v < 0 || v > 10 {
				return FailMode{}, fmt.Errorf("%q: the retry count must be 0 to 10", s)
			}
			n = v
		}
		return FailMode{Kind: name, Retries: n}, nil
	case "failbackup":
		d, err := time.ParseDuration(arg)
		if !hasArg || err != nil || d <= 0 {
			return FailMode{}, fmt.Errorf("%q: failbackup needs a positive delay, such as failbackup(20ms)", s)
		}
		return FailMode{Kind: name, Delay: d}, nil
	}
	return FailMode{}, fmt.Errorf("%q is not a fail mode (want failfast, failover(N), failtry(N) or failbackup(D))", s)
}

// Marshal validates s and encodes it as indented JSON, the form Save
// stores.
func (s *Set) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Empty reports whether s changes nothing, so that storing it is the same
// as deleting the document.
func (s *Set) Empty() bool {
	return len(s.Overrides) == 0 && s.Policy == nil && len(s.Methods) == 0 && s.TagRouting == nil
}

// Summary describes s in a few words, as `storks rule ls` and the console
// list it: "2 overrides, service policy, 1 method policy, tag routing", or
// "none".
func (s *Set) Summary() string {
	var parts []string
	switch n := len(s.Overrides); n {
	case 0:
	case 1:
		parts = append(parts, "1 override")
	default:
		parts = append(parts, strconv.Itoa(n)+" overrides")
	}
	if s.Policy != nil {
		parts = append(parts, "service policy")
	}
	switch n := len(s.Methods); n {
	case 0:
	case 1:
		parts = append(parts, "1 method policy")
	default:
		parts = append(parts, strconv.Itoa(n)+" method policies")
	}
	if s.TagRouting != nil {
		parts = append(parts, "tag routing")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Matches reports whether m selects in.
func (m Match) Matches(in registry.Instance) bool {
	if m.ID != "" && m.ID != in.ID {
		return false
	}
	if m.Addr != "" && !sameAddr(m.Addr, in.Addr) {
		return false
	}
	for k, v := range m.Metadata {
		if got, ok := in.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// sameAddr compares host:port addresses, so that "[::1]:80" and
// "[0:0::1]:80" match.
func sameAddr(a, b string) bool {
	if a == b {
		return true
	}
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp {
		return false
	}
	ai, bi := net.ParseIP(ah), net.ParseIP(bh)
	return ai != nil && bi != nil && ai.Equal(bi)
}

// Effect is what the overrides of a Set do to one provider.
type Effect struct {
	Disabled bool
	Weight   int    // the effective weight
	Tag      string // the effective routing tag
	Changed  bool   // an override matched
}

// EffectOn applies the overrides of s, in order, to in, whose registered
// weight and metadata "tag" are the starting point. A nil Set changes
// nothing.
func (s *Set) EffectOn(in registry.Instance) Effect {
	e := Effect{Weight: in.EffectiveWeight(), Tag: in.Metadata[registry.MetadataTag]}
	if s == nil {
		return e
	}
	for i := range s.Overrides {
		o := &s.Overrides[i]
		if !o.Match.Matches(in) {
			continue
		}
		e.Changed = true
		if o.Weight != nil {
			e.Weight = *o.Weight
		}
		if o.Disabled != nil {
			e.Disabled = *o.Disabled
		}
		if o.Tag != nil {
			e.Tag = *o.Tag
		}
	}
	return e
}

// Apply returns the provider list consumers call under s: the disabled
// providers left out, weights and tags overridden (in copies: list is not
// modified), and how many were disabled. With a nil Set, or no override
// matching, it returns list itself.
func (s *Set) Apply(list []registry.Instance) (out []registry.Instance, disabled int) {
	if s == nil || len(s.Overrides) == 0 {
		return list, 0
	}
	out = make([]registry.Instance, 0, len(list))
	changed := false
	for _, in := range list {
		e := s.EffectOn(in)
		if !e.Changed {
			out = append(out, in)
			continue
		}
		changed = true
		if e.Disabled {
			disabled++
			continue
		}
		in.Weight = e.Weight
		if e.Tag != in.Metadata[registry.MetadataTag] {
			md := maps.Clone(in.Metadata)
			if md == nil {
				md = map[string]string{}
			}
			if e.Tag == "" {
				delete(md, registry.MetadataTag)
			} else {
				md[registry.MetadataTag] = e.Tag
			}
			in.Metadata = md
		}
		out = append(out, in)
	}
	if !changed {
		return list, 0
	}
	return out, disabled
}

// PolicyFor returns the policy of method (a short name), Methods over
// Policy field by field, and whether s sets any.
func (s *Set) PolicyFor(method string) (Policy, bool) {
	var p Policy
	if s == nil {
		return p, false
	}
	if s.Policy != nil {
		p = *s.Policy
	}
	if m, ok := s.Methods[method]; ok {
		if m.Timeout != 0 {
			p.Timeout = m.Timeout
		}
		if m.FailMode != "" {
			p.FailMode = m.FailMode
		}
	}
	return p, p.Timeout != 0 || p.FailMode != ""
}
