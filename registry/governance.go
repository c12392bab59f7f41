package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// Governance: consumer records and rule documents.
//
// A consumer (a runtime.Reference) registers itself like a provider, as an
// ordinary ephemeral [Instance], under the consumer key of the service
// ([ConsumerKey]): the same Register call, so every adapter keeps it alive
// and re-creates it after a registry outage exactly as it does a provider's.
// Tools list consumers with Discover(ctx, ConsumerKey(key)).
//
// Rules are persistent documents, one per service key, kept apart from the
// ephemeral instance records so that they survive provider restarts and
// registration churn. Registries that can store them implement [RuleStore].
// The registry treats a rule document as opaque bytes; its format and its
// validation belong to package github.com/storks-rpc/storks/registry/rule.

// ConsumerSuffix ends the service name of a consumer key. '@' cannot occur
// in a proto service name, so a consumer key never names a real service.
const ConsumerSuffix = "@consumers"

// ConsumerKey returns the key under which the consumers of key register
// themselves: the same version and group, and the service name followed by
// [ConsumerSuffix].
func ConsumerKey(key ServiceKey) ServiceKey {
	key.Service += ConsumerSuffix
	return key
}

// IsConsumer reports whether k is a consumer key (see [ConsumerKey]).
func (k ServiceKey) IsConsumer() bool { return strings.HasSuffix(k.Service, ConsumerSuffix) }

// ProviderKey returns the provider key a consumer key was derived from, and
// k itself if it is not a consumer key.
func (k ServiceKey) ProviderKey() ServiceKey {
	k.Service = strings.TrimSuffix(k.Service, ConsumerSuffix)
	return k
}

// Metadata keys of a consumer record (see [ConsumerKey]). A record carries
// no credentials, only what identifies the consuming process.
const (
	MetadataApplication = "application"
	MetadataPID         = "pid"
	MetadataHostname    = "hostname"
	MetadataStorks      = "storks_version"
	MetadataStartedAt   = "started_at" // Unix milliseconds
	// MetadataTag is the routing tag of a provider (see the tag routing of
	// package rule); a rule can override it.
	MetadataTag = "tag"
)

// MaxRuleSize bounds a rule document; every backend stores this much in
// one value (ZooKeeper's default jute.maxbuffer is 1 MiB).
const MaxRuleSize = 256 << 10

// RuleStore is implemented by registries that keep governance rules: one
// document per service key, stored persistently (an etcd key without a
// lease, a Consul KV entry, a persistent ZooKeeper node, a map in inproc).
// Consumers never need it to call; they use it, when the registry has it,
// to follow their service's rules.
//
// All methods are safe for concurrent use, take a context first and return
// ErrClosed after the registry is closed, like [Registry]'s.
type RuleStore interface {
	// GetRule returns the rule document of key, or ErrNoRule if there is
	// none.
	GetRule(ctx context.Context, key ServiceKey) ([]byte, error)
	// PutRule stores doc (at most MaxRuleSize bytes, not empty) as the rule
	// document of key, replacing any other. The registry does not look
	// inside doc; callers validate it (package rule does).
	PutRule(ctx context.Context, key ServiceKey, doc []byte) error
	// DeleteRule removes the rule document of key. Removing a document that
	// does not exist is not an error.
	DeleteRule(ctx context.Context, key ServiceKey) error
	// Rules lists the keys that have a rule document, sorted by service,
	// version, then group.
	Rules(ctx context.Context) ([]ServiceKey, error)
	// WatchRule follows the rule document of key until Stop, Close or the
	// end of ctx, like Watch follows instances.
	WatchRule(ctx context.Context, key ServiceKey) (RuleWatcher, error)
}

// RuleWatcher delivers the rule document of one key as it changes.
//
// Next may be called from one goroutine at a time; Stop may be called from
// any goroutine, any number of times.
type RuleWatcher interface {
	// Next blocks until the document differs from the one it last returned
	// and then returns the current one, nil if the key has none (it was
	// deleted, or never written). The first call returns the current
	// document at once. Changes between two calls are coalesced. While the
	// backend is unreachable Next keeps waiting (or returns an error that
	// the caller may retry after); it never reports an outage as a deleted
	// document. It returns ctx.Err() when ctx is done and ErrClosed after
	// Stop or Close.
	Next(ctx context.Context) ([]byte, error)
	// Stop ends the watch and releases its resources.
	Stop()
}

// ErrNoRule is returned by GetRule for a key without a rule document.
var ErrNoRule = errors.New("registry: no rule for this service key")

// ErrRuleChanged is returned by the conditional writes of a
// [RuleRevisions] store when the rule document is no longer at the
// revision given: somebody else wrote or deleted it since it was read.
var ErrRuleChanged = errors.New("registry: the rule document changed since it was read")

// RuleRevisions is implemented by the rule stores that can write a rule
// document only if it has not changed since it was read (compare and
// swap). It is what makes a read-modify-write edit of the rules safe when
// two operators edit the rules of one key at once: package rule's Update
// uses it, and retries an edit that lost the race on the new document
// instead of overwriting it. The etcd, Consul, ZooKeeper and in-process
// registries implement it.
//
// A revision is the store's own version of a key's document (etcd's
// ModRevision, Consul's ModifyIndex, ZooKeeper's node version plus one, a
// counter in process): it is only compared for equality, a new write gives
// a new revision, and 0 means "no document".
//
// The methods are safe for concurrent use and check their arguments as
// GetRule, PutRule and DeleteRule do.
type RuleRevisions interface {
	// GetRuleRevision returns the rule document of key and its revision,
	// or ErrNoRule and revision 0 if there is none.
	GetRuleRevision(ctx context.Context, key ServiceKey) (doc []byte, rev int64, err error)
	// PutRuleIf stores doc as the rule document of key if the document is
	// still at rev (rev 0: if key has no document), and returns an error
	// wrapping ErrRuleChanged if it is not.
	PutRuleIf(ctx context.Context, key ServiceKey, doc []byte, rev int64) error
	// DeleteRuleIf removes the rule document of key if it is still at rev,
	// and returns an error wrapping ErrRuleChanged if another document
	// replaced it. If key has no document (any more), there is nothing to
	// remove and it succeeds, whatever rev.
	DeleteRuleIf(ctx context.Context, key ServiceKey, rev int64) error
}

// RuleChangedError returns the error of a conditional write of the rule of
// key that lost the race: it wraps ErrRuleChanged.
func RuleChangedError(key ServiceKey) error {
	return fmt.Errorf("rule of %s: %w", key, ErrRuleChanged)
}

// RuleDoc returns the rule document a store holds as value: a copy, never
// nil (nil means "no document", and an empty stored value is a document,
// if an invalid one). Adapters return it from GetRule and publish it to
// their DocFeed.
func RuleDoc(value []byte) []byte {
	if len(value) == 0 {
		return []byte{}
	}
	return bytes.Clone(value)
}

// ValidateRuleDoc is the check every RuleStore makes on PutRule's document:
// not empty and at most MaxRuleSize bytes.
func ValidateRuleDoc(doc []byte) error {
	if len(doc) == 0 {
		return &InputError{Field: "rule", Reason: "is empty"}
	}
	if len(doc) > MaxRuleSize {
		return &InputError{Field: "rule", Reason: "is larger than 256 KiB"}
	}
	return nil
}
