// Package consul is the Storks registry adapter for HashiCorp Consul. It
// registers providers as services of a Consul agent and finds them with
// blocking queries on the agent's health endpoint. Importing it adds the
// consul:// scheme to registry.Open:
//
//	import _ "github.com/storks-rpc/storks/registry/consul"
//
//	r, err := registry.Open(ctx, "consul://127.0.0.1:8500?ttl=10s")
//
// [New] builds a registry from a [Config] instead. The registry also
// implements registry.Lister (Services lists the keys that have passing
// instances).
//
// # URL
//
//	consul://host:port[?token=T&ttl=10s&deregister-after=1m&tcp-check=true&dial-timeout=5s&resync-grace=12s]
//
// host:port is the HTTP API of the Consul agent to talk to, normally the
// agent on the provider's or consumer's own machine; "consul://" alone means
// 127.0.0.1:8500 and a missing port means 8500. The query parameters, each
// optional and given at most once, are:
//
//	token             the ACL token sent with every request (X-Consul-Token); see
//	                  ACL tokens below
//	ttl               the TTL of the check that keeps each instance passing (default
//	                  10s, at least 1s); see Guarantees
//	deregister-after  the check's DeregisterCriticalServiceAfter: the agent removes an
//	                  instance that has been critical this long (default and minimum 1m,
//	                  Consul's minimum)
//	tcp-check         true adds a TCP check on the instance address, every ttl
//	dial-timeout      bounds connecting to the agent and Open's check that it answers
//	                  (default 5s)
//	resync-grace      how long a watch that resynchronises after a failure keeps the
//	                  instances that have not come back yet (default ttl+2s; 0 turns it off)
//
// User info, a path or a fragment are errors, as are unknown parameters.
// Every problem with the URL is a *registry.InputError naming the part that
// is wrong.
//
// # Starting while the agent is down
//
// Open fails only for what waiting will not fix (see the rule in package
// registry): a bad URL or Config, and, naming the address, an agent that
// answers but does not know the ACL token, or a server that does not
// answer as a Consul agent (another protocol on the port, an HTTP server
// that answers 4xx). If the connection is refused, fails, is closed before
// an answer, or nothing answers within dial-timeout (or a proxy answers
// 5xx), Open logs one warning naming the address and the cause and returns
// a registry that works as soon as the agent answers: every request makes a
// new attempt, so Register, Deregister, Discover and Services fail
// meanwhile with the error of their request, naming the address (a refused
// connection in milliseconds), and watches retry with backoff and deliver
// their first list once the agent answers. A goroutine asks the agent until
// it answers, then checks the token and logs the outcome (an error if the
// agent does not know the token). A Register that failed is not retried.
//
// # ACL tokens
//
// The token is, in order of precedence: ?token= or [Config.Token], then
// the file named by CONSUL_HTTP_TOKEN_FILE, then CONSUL_HTTP_TOKEN (the
// Consul API client's rules); without any, requests use the agent's
// anonymous token. It is never printed: errors and logs name the agent's
// address only, and Config and Registry print (String, %v, %#v, slog)
// token=redacted; use registry.RedactURL to log a URL.
//
// A provider's token needs service:write on the Consul names of its
// services (service_prefix "" { policy = "write" } for all), a consumer's
// service:read on them and node:read on the nodes of their instances.
// Open fails if the agent answers that it does not know the token ("ACL
// not found"); a
// token that lacks a permission makes Register fail with the agent's
// explanation ("Permission denied: token with AccessorID '...' lacks
// permission 'service:write' on ..."; the accessor ID is not the secret).
// A consumer whose token may read the service but not the nodes gets lists
// without those instances, and the registry logs that once per service; one
// whose token may not read the service at all gets empty lists, which
// Consul does not distinguish from a service without instances.
//
// # How instances are stored
//
// Each instance is one agent service:
//
//   - Name: [ServiceName] of the proto service name: lower-cased, every
//     character but letters, digits and '-' replaced by '-', so that Consul's
//     DNS interface can serve it ("helloworld.Greeter" is registered as
//     "helloworld-greeter"); names longer than 63 characters are cut and end
//     with a hash. Several proto names may share a Consul name; the exact key
//     is in the meta and Discover and Watch filter on it.
//   - ID: [ServiceID]: the Consul name, a readable form of the instance ID
//     and a hash of the exact key and instance ID, so IDs never collide
//     across keys and any instance ID (slashes, spaces, unicode) is safe.
//   - Address and Port: the instance address; Weights.Passing: its weight
//     clamped to 1..65535, Consul's limits (the exact weight, 0 included,
//     is in the storks-weight meta, which is what Storks reads back; a
//     weight-0 instance thus still gets Consul DNS answers).
//   - Tags: "storks", "version=V" and "group=G" (when not empty), for
//     operators to filter on (for example /v1/health/service/NAME?tag=version=1.0.0).
//   - Meta: storks-service, storks-version, storks-group (the exact key),
//     storks-weight, storks-id (the exact instance ID), and the instance
//     metadata: each entry whose key is a valid Consul meta key
//     ([A-Za-z0-9_-], at most 128 characters, not starting with "storks-" or
//     "consul-") and whose value is at most 512 bytes as it is, the others
//     as a JSON object in storks-meta. Long values are split into 512-byte
//     parts (storks-id, storks-id-1, ...). Consul allows 64 meta entries;
//     Register rejects metadata that needs more, and metadata or IDs that
//     are not valid UTF-8.
//   - Checks: a TTL check (service:<ID>:ttl) that the adapter passes every
//     ttl/3, registered passing, and with tcp-check a TCP check
//     (service:<ID>:tcp); both with DeregisterCriticalServiceAfter.
//
// A consumer record (an instance of registry.ConsumerKey, which may have
// port 0) is an agent service like any other, named after its consumer
// key ("helloworld.Greeter@consumers" is "helloworld-greeter-consumers",
// the exact key being in the meta), with Port 0 when the record has port
// 0, and never a TCP check (a consumer listens nowhere). It is kept passing
// and registered again like a provider's instance.
//
// # Governance rules
//
// The Registry implements registry.RuleStore. Rule documents are entries
// of Consul's KV store, which the Consul servers keep persistently, apart
// from the agent's services and their TTLs:
//
//	storks/rules/<service>/v=<version>/g=<group>
//
// each part escaped with url.PathEscape ([RuleKVKey]); "v=" and "g=" keep
// an empty version or group from making an empty path segment, which
// Consul's KV treats as a folder. For example the rule of
// helloworld.Greeter version 1.0.0 without group is
// storks/rules/helloworld.Greeter/v=1.0.0/g=. The value is the document as
// given to PutRule (Consul's KV entries hold up to 512 KB, more than
// registry.MaxRuleSize). Rules lists the keys under storks/rules/ and
// ignores those that are not rule keys. WatchRule makes blocking queries on
// the entry with the same rules as Watch (index reset to 0 after an error
// or when it goes backwards, the same token bucket): a missing entry is a
// nil document, and a failed query keeps the last document, so an outage
// never shows as a deletion. The token needs key_prefix "storks/rules/"
// read permission to read and watch rules, write permission to change
// them; a 403 is returned by the call, and a watch retries it with backoff.
//
// # Guarantees
//
//   - Registrations live as long as the provider: a goroutine per instance
//     passes its TTL check every ttl/3; when that fails for any reason (the
//     agent restarted and lost its state, an operator deregistered it, the
//     agent was unreachable), it registers the instance again, retrying
//     with capped (ttl/3, at most 10s), jittered backoff until Deregister
//     or Close. An instance is back within about ttl/3 of its agent
//     answering again.
//   - A provider that dies or is partitioned stops passing its TTL: its
//     instances turn critical after ttl and drop out of Discover and of
//     every watch (they are passing-only), and the agent removes them after
//     deregister-after. Close does the same on purpose: it stops the TTL
//     updates without deregistering.
//   - Deregister is synchronous, bounded by its context, and returns the
//     agent's error if it fails.
//   - Watches use blocking queries on /v1/health/service/NAME?passing with
//     Consul's documented index rules (reset to 0 when the index goes
//     backwards or after an error, never below 1 afterwards) and a token
//     bucket (burst 2, then one query per second under churn), so a quiet
//     watch costs one long-poll per 5 minutes and a churning one cannot
//     spin. A watch never returns a transient error and never gives up: on
//     failure it keeps the last list, logs once (and once on recovery),
//     retries with capped, jittered backoff and delivers the resynchronised
//     list. For resync-grace after a failure it delays removals, so that an
//     agent restart, after which the providers need a moment to register
//     again, does not show consumers an empty list.
//   - Lists are sorted by instance ID and deep copies; Next coalesces
//     changes and returns only lists that differ from the previous one.
//
// # Concurrency
//
// A Registry and its methods are safe for concurrent use; calls on the same
// instance ID are serialised. Every goroutine it starts (one per registered
// instance, one per watch and rule watch) is owned by a context that Close cancels, and
// Close waits for them and closes the idle connections. Watcher.Next may be
// called from one goroutine at a time; Stop from any.
package consul
