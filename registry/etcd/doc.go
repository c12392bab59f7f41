// Package etcd is the etcd v3 adapter of the Storks service registry. Importing
// it adds the "etcd" scheme to registry.Open:
//
//	import _ "github.com/storks-rpc/storks/registry/etcd"
//
//	r, err := registry.Open(ctx, "etcd://10.0.0.1:2379,10.0.0.2:2379/storks?ttl=10s")
//
// Programs that prefer code to URLs call [New] with a [Config].
//
// # URL
//
//	etcd://[user:password@]host:port[,host:port...][/base-path][?ttl=D&dial-timeout=D&tls=true&ca=F&cert=F&key=F&server-name=N]
//
// The parts are:
//
//   - host:port: the client endpoints of the etcd members, comma-separated
//     (host names, IPv4, or one bracketed IPv6 address; registry.Open parses
//     the URL with net/url, which does not accept a list of IPv6 hosts: use
//     [New] for that). At least one; each needs a port from 1 to 65535.
//   - base-path: the key prefix of every instance, default /storks. No
//     empty, "." or ".." segments; a trailing slash is ignored.
//   - ttl: the lease TTL, a Go duration that is a whole number of seconds
//     from 1s to 1h, default 10s. It is how long the instances of a process
//     that died (or that lost the server) stay visible.
//   - dial-timeout: a positive Go duration up to 5m, default 5s. It bounds
//     each attempt to connect to a member, and how long Open waits for a
//     member to answer a read (see Starting while etcd is down).
//   - user:password: the etcd user to authenticate as, for clusters with
//     authentication enabled ([Config.Username], [Config.Password]);
//     percent-encode reserved characters (etcd://storks:p%40ss@host:2379).
//     The user needs read and write permission on the keys under
//     base-path.
//   - tls: true to talk TLS to the members, verifying their certificates
//     against the system's roots; ca, cert, key and server-name imply it.
//   - ca: a PEM file of the CA certificates to verify the members with,
//     instead of the system's.
//   - cert and key: PEM files of a client certificate and its key, for
//     clusters that require client certificates (--client-cert-auth).
//   - server-name: the name the members' certificates must hold, when it
//     is not the endpoint's host.
//
// The files are read by Open. [Config.TLS] takes any *tls.Config instead.
// Any other query parameter, a user info without a password, a fragment,
// an empty host, a bad port or a bad duration is rejected with a
// *registry.InputError naming the part.
//
// # Credentials
//
// The password never appears in errors, logs, or when a [Config] or
// [Registry] is printed (String, %v, %#v and slog show "user:redacted@");
// use registry.RedactURL to log a URL. When a member answers, Open reports,
// without it, a wrong user or password ("authentication as user "storks"
// failed"), a cluster that requires authentication when none is given, a
// user without permission on base-path, and for TLS what went wrong (unknown
// certificate authority, a certificate for another name, a client
// certificate required, a plain client on a TLS port). When Open could not
// check the credentials because no member could be reached, the first call
// once one can reports a wrong user or password the same way.
//
// etcd's auth tokens expire (by default after 5 minutes without use, or
// at the TTL of a JWT token). The client authenticates again whenever the
// server answers that its token is invalid, for every request and every
// new stream, so long-lived registries keep working: registrations,
// reads, leases and watches are all tested with tokens that expire after
// one second. One case the client does not cover is a new watch on a
// stream opened with a token that has expired since (etcd's client shares
// one stream among the watches of a process); the adapter moves new
// watches to a new stream when that happens.
//
// # Starting while etcd is down
//
// Open fails only for what waiting will not fix (see the rule in package
// registry): a bad URL or Config, a file it cannot read, and a member that
// answers but rejects the client or is not etcd (wrong credentials or
// permissions, TLS that does not match, HTTP/1 on the port). If no endpoint
// accepts a connection, or one does but no member answers a read within
// dial-timeout and nothing is found wrong, Open logs one warning naming the
// endpoints and the cause and returns a registry that keeps connecting in
// the background (gRPC's reconnect backoff, capped as below):
//
//   - The registry records the outcome of every attempt to connect to an
//     endpoint. While the client has no connection ready, Register,
//     Deregister, Discover and Services fail as soon as the last attempt
//     to connect to every endpoint failed, with an error naming the
//     endpoints and the dial error ("connect: connection refused"), which
//     takes milliseconds for a refused connection and up to dial-timeout
//     for a host that does not answer. Right after the cluster comes back,
//     they may fail until the client tried again (within the backoff cap);
//     then they work.
//   - Watch returns a watcher, which lists the prefix once it can; its
//     first Next waits for that list, or returns its context's error with
//     the cause.
//   - Host names are resolved at each attempt, so a name that does not
//     resolve yet is retried like a refused connection.
//   - With credentials, the client normally authenticates before Open
//     returns; when no endpoint can be reached it starts without a token
//     instead, and authenticates with its first request that a member
//     answers (etcd refuses it with "user name is empty", on which clientv3
//     authenticates and retries, as it does whenever its token is cleared).
//
// A Register that failed is not retried; one that succeeded is kept alive
// through outages as described below.
//
// The registry dials the endpoints itself (plain TCP, with TLS added by
// gRPC), so gRPC's HTTPS_PROXY support does not apply to it.
//
// # Data layout
//
// Each instance is one key,
//
//	<base-path>/<url.PathEscape(key.String())>/<url.PathEscape(instance ID)>
//
// for example /storks/blue%2Fhelloworld.Greeter:1.0.0/node-1, whose value is
// a JSON object: {"service", "version", "group", "id", "addr", "weight",
// "metadata", "registered"} (empty fields left out, but "weight" is always
// written, 0 included, and a record without it reads as DefaultWeight;
// "registered" is the RFC 3339 time of the Register call). Values that do not decode, or that
// name another service or ID than their key, are logged once and ignored.
//
// A consumer record (an instance of registry.ConsumerKey, whose address
// may have port 0) is an instance like any other, under the escaped
// consumer key ("helloworld.Greeter@consumers"; '@' is not escaped), kept
// alive by the same lease.
//
// # Governance rules
//
// The Registry implements registry.RuleStore. The rule document of a
// service key is one key without a lease, so that it survives every
// client, its instances and their leases:
//
//	<base-path>/rules/<url.PathEscape(service)>/<url.PathEscape(version)>/<url.PathEscape(group)>
//
// an empty version or group being an empty part, for example
// /storks/rules/helloworld.Greeter/1.0.0/ (no group) or
// /storks/rules/helloworld.Greeter// (neither). The value is the document,
// as given to PutRule. Rules lists the keys under <base-path>/rules/ (keys
// only); keys there that are not rule keys are ignored, as are those keys
// under the prefix of a service called "rules" (whose instances keys have
// one part after it, not three). WatchRule reads the key and watches it
// from the next revision; on a watch error, a compaction or a lost leader
// it keeps its document, reads the key again with backoff and watches from
// there, so an outage never shows as a deleted document. The user of an
// authenticated cluster needs read and write permission on the rules
// prefix too, which a grant on <base-path>/ gives.
//
// # Registrations and leases
//
// A Registry holds one lease, shared by all the instances it registers: it
// is granted on the first Register and kept alive with KeepAlive. One lease
// per client rather than one per instance because the instances of a process
// live and die with that process, so they should expire together; because
// etcd's cost is per lease (one keepalive per lease every TTL/3), and a
// provider exporting many services should not multiply it; and because a
// single keeper can then restore everything in one pass. All instances of a
// Registry share its TTL.
//
// A keeper goroutine owns the lease. When the KeepAlive channel closes (the
// lease expired or was revoked, or no keepalive answer came for a whole TTL
// because the server was unreachable) or a put answers "requested lease not
// found", it grants a new lease and puts every registration again. Every
// TTL (at most every 30s) it also asks the server which keys are attached to
// the lease (LeaseTimeToLive with keys), and puts back those that were
// deleted behind its back while the lease lived. It retries every failure with capped,
// jittered exponential backoff (100ms doubling up to TTL/3, at most 5s),
// forever, until Deregister or Close: unlike the keepers of kratos#3883 or
// rpcx#420 it never gives up. After the server comes back, instances are
// registered again within about one backoff step (the gRPC reconnect
// backoff is capped the same way, instead of gRPC's 2 minutes).
//
// Register returns once the key is written; Deregister deletes it (whichever
// client registered it; if its owner is still running, it stops keeping it
// only when it deregisters it too, otherwise it puts it back within a TTL).
// Register, Deregister and the keeper's writes are serialized, so a re-put
// never resurrects an instance being deregistered. Close stops the keeper
// without revoking the lease: the server deletes the instances one TTL
// later, which is also what happens when the process dies.
//
// # Discovery and watches
//
// Discover is one linearizable range read of the service's prefix. Watch
// reads the prefix before it returns (bounded by its context and
// Config.RequestTimeout), so the first Next returns that list at once; it
// fails if the cluster refuses the read (credentials, permissions), and if
// the cluster cannot be reached the watch lists the prefix once it can,
// with backoff. Then it watches the prefix from the next revision (with
// clientv3.WithRequireLeader, so that a member cut off from its cluster
// cancels the watch instead of leaving it silently stale). On any watch
// error, cancellation by the server, compaction (ErrCompacted) or closed
// channel, the watcher keeps its last list, reads the prefix again with
// backoff and watches from the new revision; it never ends by itself. A
// changed list is delivered once the re-read succeeds; an unchanged one is
// not delivered at all. While the connection is down the client resumes
// the watch by itself, from where it was, once it is back. Failures (and
// the loss of the connection) are logged once when they start and once when
// they end (Config.Logger, default slog.Default()).
//
// # Timeouts and concurrency
//
// Every method is safe for concurrent use and takes a context; calls whose
// context has no deadline are bounded by Config.RequestTimeout (10s). A
// Watcher's Next may be called from one goroutine at a time, Stop from any.
// Every goroutine the package starts (the keeper, a connection monitor and
// one per watch and rule watch) ends with Close, which also closes the connection.
package etcd
