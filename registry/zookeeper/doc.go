// Package zookeeper is the Apache ZooKeeper adapter of the Storks service
// registry: providers announce their instances as ephemeral znodes and
// consumers discover and watch them, through [registry.Registry].
//
// Import it for its side effect to make the "zookeeper" URL scheme available
// to [registry.Open]:
//
//	import _ "github.com/storks-rpc/storks/registry/zookeeper"
//
//	r, err := registry.Open(ctx, "zookeeper://10.0.0.1:2181,10.0.0.2:2181/storks?session-timeout=10s")
//
// or build a registry from a [Config] with [New].
//
// # URL
//
//	zookeeper://[user:password@]host:port[,host:port...][/base-path][?session-timeout=D&dial-timeout=D&world-read=false]
//
// where
//
//   - host:port: the servers of the ensemble, comma-separated; the port
//     defaults to 2181. IPv6 addresses need brackets, and since Go's URL
//     parser rejects several bracketed hosts in one URL, list IPv6 servers
//     through [Config] instead.
//   - base-path: the znode under which everything is stored; "" or "/"
//     means /storks ([DefaultBasePath]). It may not be under /zookeeper.
//   - session-timeout: the ZooKeeper session timeout requested from the
//     server, a Go duration (default 10s). The server clamps it to its
//     [minSessionTimeout, maxSessionTimeout], by default 2 to 20 ticks. It is
//     the time after which the instances of a provider that died (or lost
//     its network) disappear.
//   - dial-timeout: how long Open waits for the first session (see Starting
//     while ZooKeeper is down), and how long a call (Register, Deregister,
//     Discover) waits for the servers when its context has no deadline
//     (default 5s).
//   - user:password: digest credentials ([Config.Username],
//     [Config.Password]); see Credentials below. Percent-encode reserved
//     characters; the user may not contain ':'.
//   - world-read: false makes the znodes readable with the credentials
//     only ([Config.NoWorldRead]); it needs credentials.
//
// Any other query parameter, a user info without a password, or a fragment
// is an error.
//
// # Starting while ZooKeeper is down
//
// Open fails only for what waiting will not fix (see the rule in package
// registry): a bad URL or Config; a server name that does not resolve (the
// ZooKeeper client resolves the names once, when Open makes it, and never
// again, so such a registry could never connect); and a server that answers
// in another protocol (HTTP, TLS), naming it. If every server refuses the
// connection (or does not answer within dial-timeout), or no session is
// established within dial-timeout, Open logs one warning naming the servers
// and the cause and returns a registry that keeps connecting in the
// background (the client tries the servers in turn, one round a second):
//
//   - The registry records the outcome of every attempt to connect to a
//     server. While it has no session and the last attempt to connect to
//     every server failed, Register, Deregister, Discover and Services fail
//     at once, with an error naming the servers and the dial error
//     ("connect: connection refused"); Discover returns the last known list
//     instead if it has one. Otherwise (a connection is open, the session is
//     being established) they wait and retry as below. A Register that
//     failed is not made later; a Deregister that failed keeps trying in the
//     background, as below.
//   - Watch returns a watcher, which reads the list once there is a
//     session; its first Next waits for it, or returns its context's error
//     with the cause.
//   - With credentials, they are added to the first session before
//     anything else uses it.
//
// # Credentials
//
// With credentials, the registry adds them to its session with
// ZooKeeper's digest scheme (AddAuth("digest", "user:password")) before it
// does anything else; the ZooKeeper client sends them again first thing on
// every reconnection, and in every new session after an expiry, so the
// registrations it re-creates there have the same identity (tested by
// expiring sessions on a real server). Every znode the registry creates
// (the instance nodes and their parents) gets the ACL
//
//	digest:user:base64(sha1(user:password)) with every permission
//	world:anyone with read permission (unless world-read=false)
//
// so only clients with the same credentials can register under those
// parents, update, delete or take over an instance, while consumers read
// with or without them (with world-read=false, only with them). Without
// credentials, znodes are created open to everyone (world:anyone, every
// permission), as before. Parents that already exist keep their ACLs: a
// tree created without credentials stays writable by everyone until an
// administrator sets its ACLs (setAcl -R).
//
// ZooKeeper's digest scheme does not check a password when it is added:
// a wrong password, like another user, is an identity that the ACLs do not
// match. So it is found out when the servers refuse a request (zk.ErrNoAuth),
// which the registry's errors and logs then explain, naming the user and
// the base path. The password never appears in errors, logs, or when a
// Config or Registry is printed (String, %v, %#v and slog show
// "user:redacted@").
//
// # Layout
//
// Instance ID in of service key k lives at
//
//	<base>/<escape(k.String())>/providers/<escape(ID)>
//
// as an ephemeral znode whose data is the instance as JSON:
//
//	{"key":{"service":"helloworld.Greeter","version":"1.0","group":"blue"},
//	 "id":"host-1:8080","addr":"10.0.0.5:8080","weight":100,"metadata":{"zone":"a"}}
//
// "weight" is always written, 0 included; data without it (written before
// weight 0 meant zero) reads as registry.DefaultWeight.
//
// escape keeps ASCII letters, digits and "-_.~:@" and writes every other byte
// as %XX, so any ID fits in one path segment. The parent znodes are created
// as persistent nodes when needed and are never deleted by the adapter.
//
// A consumer record (an instance of registry.ConsumerKey, whose address
// may have port 0) is an ephemeral instance node like any other, under its
// consumer key: <base>/helloworld.Greeter@consumers/providers/<ID> ('@' is
// not escaped). It is re-created in every new session like a provider's.
//
// # Governance rules
//
// The Registry implements registry.RuleStore. The rule document of service
// key k is the data of the persistent znode
//
//	<base>/<escape(k.String())>/rule
//
// beside the providers node of k, so it belongs to no session: it survives
// the instances of k, their sessions and their expiry. PutRule sets it,
// creating it and its parents (persistent, with the ACL above) when
// missing; DeleteRule deletes it. It is a node of its own rather than a
// child of a shared "rules" node so that it cannot clash with the nodes of
// a service whose key escapes to "rules" or "providers". Rules reads the
// children of <base> and asks whether each has a rule node (one request
// per key, like Services). WatchRule reads the node with a data watch
// (GetW), or an exists watch (ExistsW) while it is missing, and reads it
// again and re-arms the watch after every event, after every reconnection
// and in every new session; while the servers cannot be reached it keeps
// its document (an outage never shows as a deletion) and retries with
// backoff. ZooKeeper's default jute.maxbuffer (1 MiB) holds
// registry.MaxRuleSize.
//
// # Guarantees
//
//   - Registrations live as long as the Registry that made them: the
//     ephemeral node belongs to the registry's session. When the session
//     expires (a long network partition, or the server expired it) the
//     client opens a new session and every registration is re-created in it
//     with capped, jittered backoff, until Deregister or Close. A node of the
//     same instance ID left behind by an older session (a restarted
//     provider whose old session has not timed out yet, or one of this
//     registry's own earlier sessions) is replaced atomically (delete and
//     create in one multi-op), so consumers never see a gap.
//   - Registering an ID again replaces its data in place. A node deleted by
//     another client while this registry's session lives (a Deregister from
//     elsewhere) is taken as a deliberate removal and not re-created;
//     neither is a node that another session took over by registering the
//     same ID (the last Register wins).
//   - If Register returns an error, the previous state is restored in the
//     background: a new instance is removed again (only if its node is this
//     registry's), an update goes back to the previous data. A Deregister
//     that returned an error keeps trying to delete the node in the
//     background until Close.
//   - Watches never give up: a watch keeps its last list while the servers
//     are unreachable or the session is being replaced, re-reads everything
//     when the connection or the session comes back and delivers the list
//     if it changed. Next never returns a transient error. Child watches on
//     the providers node and data watches on every instance node are re-armed
//     after every event, so data updates are seen as well as arrivals and
//     departures.
//   - Discover reads the servers. If they cannot be reached and this
//     registry has seen the key before (an earlier Discover or a watch), it
//     returns that last known list after waiting up to a second (less if
//     its context expires first; at once if no server accepts a
//     connection) instead of an error; otherwise it retries until its
//     context is done (or the dial timeout passed, or no server accepts a
//     connection) and returns an error naming the servers.
//   - Registry also implements [registry.Lister]: Services lists the keys
//     under the base path that have at least one instance node.
//   - Nothing blocks forever: New is bounded by its context and the dial
//     timeout; every call is bounded by its context (and by the dial
//     timeout when the context has none), and fails at once when no server
//     accepts a connection.
//   - Close stops every goroutine of the registry and of its ZooKeeper
//     client and closes the session, so the server removes this registry's
//     instances at once. (A provider that dies without Close disappears
//     after the session timeout.)
//
// Failures are logged through the [Config.Logger] (slog.Default() if nil)
// once per change of state (connection lost, reconnected, session replaced,
// a registration or watch failing and recovering), never once per retry. The
// ZooKeeper client library's own log lines go to the same logger at Debug
// level.
//
// # Concurrency
//
// A Registry is safe for concurrent use. It holds one ZooKeeper session.
// Each registration, each watch and each rule watch has one goroutine, and one more follows
// the session state; all of them end when Close returns. A watcher's Next
// may be called from one goroutine at a time and Stop from any.
package zookeeper
