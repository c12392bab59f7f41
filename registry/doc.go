// Package registry defines how Storks providers announce themselves and how
// consumers find them.
//
// A provider process exports a service (see package runtime) and registers one
// [Instance] per export: the service key (service name, version, group), a
// unique instance ID, the address consumers dial, a weight and free-form
// metadata. Consumers [Registry.Discover] the instances of a key once, or
// [Registry.Watch] them to receive every change to the list.
//
// The in-process, direct and static registries are part of this package.
// Networked adapters (etcd, Consul, ZooKeeper) live in their own packages and
// add their URL scheme with [RegisterScheme] when imported, the way
// database/sql drivers do. Any registry is usually built from a URL with
// [Open]:
//
//	inproc://              one registry shared by everything in this process
//	inproc://name          a separate named in-process registry
//	direct://host:port     a single fixed provider address (peer to peer)
//	static://h1:p1,h2:p2   a fixed list of provider addresses
//
// Every adapter must pass the conformance suite in registry/registrytest.
//
// # Governance layout
//
// Consumer records (see [ConsumerKey]) are ordinary instances of the
// consumer key, so every backend stores them where it stores a provider's
// instances, under the service name followed by "@consumers", with port 0
// when the consumer gives none. Rule documents (see [RuleStore]) are kept
// persistently and apart from the instances, in every registry that ships
// with Storks:
//
//	inproc      in memory, shared by every handle of the registry
//	etcd        the key <base-path>/rules/<service>/<version>/<group>, without
//	            a lease (each part url.PathEscape'd, an empty version or group
//	            an empty part)
//	Consul      the KV entry storks/rules/<service>/v=<version>/g=<group>
//	            (each part url.PathEscape'd)
//	ZooKeeper   the persistent znode <base>/<escaped key>/rule, beside the
//	            key's providers node
//
// The adapters' package documentation describes each layout, its
// permissions and how its rule watches ride out an outage: none reports an
// outage as a deleted document. direct:// and static:// keep no rules.
//
// # When the server cannot be reached
//
// A provider must be able to start while its registry is down, as it
// survives losing it later. So the networked adapters follow one rule:
//
//   - A URL or configuration that is wrong fails Open at once: a bad host,
//     port or parameter, a file (CA, certificate, key) that cannot be read,
//     with an [*InputError] naming the part. So does a server that answers
//     but rejects the client or speaks another protocol (wrong credentials,
//     TLS that does not match, an HTTP server on the port), naming the
//     address: these are mistakes that waiting will not fix.
//   - A server that cannot be reached does not fail Open. Open logs one
//     warning naming the address (with any password redacted) and the
//     cause, such as "connection refused", and returns a registry that keeps
//     connecting in the background and works, without anyone calling Open
//     again, once the server answers. A refused connection makes Open
//     return at once; a host that does not answer takes the adapter's dial
//     timeout.
//   - While the server cannot be reached, Register, Deregister, Discover
//     and Services fail fast, with an error naming the address and the
//     cause: a refused connection in milliseconds, not after a timeout (a
//     host that does not answer may take the dial timeout, or the call's
//     context). Watch returns a watcher all the same; its first Next waits
//     for the first list, and if its context ends first it returns the
//     context's error together with why there is no list (see
//     [Feed.Failing]). Watches that have a list keep it through outages, as
//     they always did.
//   - A Register that failed is not retried by the adapter behind the
//     caller's back: the caller (the runtime) retries. Registrations that
//     succeeded are kept alive through outages, as they always were.
//
// The context given to Open bounds Open itself: if it ends before Open knows
// whether the server can be reached, Open fails with its error. Tools that
// want to fail fast on a wrong port need nothing else: their first call
// fails with "connection refused".
// registrytest.CheckRefused and registrytest.RunStartWhileDown check the
// rule.
//
// # Writing an adapter
//
// Every method of an adapter that takes a context starts with [Check], which
// rejects a nil context with an [*InputError], a closed registry with
// [ErrClosed] and invalid arguments with their validation error, and then
// returns the context's error, in that order.
//
// An adapter's [Watcher] is a [Feed], or a type that embeds one: the adapter
// only produces complete instance lists, and the Feed implements Next and
// Stop. The rules:
//
//   - The adapter calls [NewFeed] with the context given to Watch; the feed
//     ends with that context's error when it is done.
//   - The adapter calls [Feed.Publish] with every new list: complete, sorted
//     by ID, and never modified afterwards (nor the Metadata maps of its
//     instances), since the Feed keeps it and copies it only on the way out.
//     Publish never blocks, so a backend loop, or a writer holding a lock,
//     may call it; an unchanged list may be published again. If the list is
//     known when Watch returns, the adapter publishes it before returning,
//     even if it is empty, and the first Next returns it at once; otherwise
//     the first Next waits for the first Publish.
//   - [Feed.End] ends the watch with an error, which Next returns from then
//     on; the first End wins. Stop is End(ErrClosed), Close calls
//     End(ErrClosed) on the watchers of the registry, and the end of the
//     Watch context is End(ctx.Err()).
//   - The adapter releases what a watch holds (its goroutine, its entry in
//     the registry's set of watchers) in a function registered with
//     [Feed.OnEnd] once the watch is registered; End calls it outside the
//     Feed's lock. A backend goroutine can also select on [Feed.Done].
//   - Next may be called from one goroutine at a time; every other method of
//     a Feed is safe for concurrent use. Next returns the latest published
//     list if it differs from the one it returned last, and otherwise
//     blocks until it does, the feed ends or its own context is done.
package registry
