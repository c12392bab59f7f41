// Package mdns is the mdns:// registry: zero-configuration discovery on
// one local network with Multicast DNS and DNS-Based Service Discovery
// (RFC 6762, RFC 6763), interoperable with standard DNS-SD software
// (Avahi, Apple's mDNSResponder and dns-sd, python-zeroconf). There is no
// server: every registry is a full mDNS responder for the instances it
// registers and a querier with a cache for what it watches.
//
// Importing the package adds the scheme to [registry.Open]:
//
//	import _ "github.com/storks-rpc/storks/registry/mdns"
//
//	mdns://                    every interface that is up and multicast-capable
//	mdns://?iface=eth0         one interface (iface=lo: this host only)
//	mdns://?ttl=30s            record TTL (default 120s; whole seconds, 1s-75m)
//	mdns://?domain=local       the mDNS domain (default local)
//
// # How a service key is announced
//
// Each registered instance is its own DNS-SD service instance:
//
//   - Service type: "_storks-XXXXXXXX._tcp", see [ServiceType]. The key
//     ("group/service:version") is hashed, because RFC 6763 §7.2 allows
//     service names of 15 bytes at most and only letters, digits and
//     hyphens, and every version and group must get a type of its own; any
//     service name fits, "helloworld.Greeter@consumers" included.
//   - Instance name: the instance ID, when it is valid UTF-8 of at most 58
//     bytes without control characters; otherwise a readable prefix of it
//     and 8 hex digits of its SHA-256. Two providers that claim the same
//     name (the same key and ID) do not collide: the second finds the first
//     while probing and renames its instance "ID (2)", "ID (3)", ... (RFC
//     6762 §9); consumers then list the ID once (the instance whose name
//     sorts first).
//   - SRV: port, and a host name of the registry's own,
//     "storks-<random tag>-<address in hex>.local.", with an A or AAAA
//     record of the instance's IP address, so that two registries on one
//     host never claim the same host name. An address with a host name
//     ("localhost:8080") is announced as the SRV target itself, without an
//     address record.
//   - TXT: one "key=value" string per entry (RFC 6763 §6.3), in this order:
//     txtvers=1, svc=<service> (required), ver=<version> and grp=<group>
//     (left out when empty), id=<ID> (default: the instance name),
//     weight=<n> (default registry.DefaultWeight), then m.<key>=<value> for
//     each metadata entry, sorted by key. A string holds at most 255 bytes:
//     a longer value goes on in the strings right after it, each "+=<more>".
//     Register rejects, with an [*registry.InputError], metadata keys that
//     are not printable US-ASCII or contain '=' (RFC 6763 §6.4), keys too
//     long for one string, and a record over 8000 bytes (the whole answer
//     must fit in one mDNS packet, RFC 6762 §17). Keys compare
//     case-insensitively in DNS-SD: metadata keys that differ only in case
//     reach Storks consumers intact, other software may merge them.
//
// Consumers check the key in the TXT record, so a hash collision between
// two keys never mixes their instances.
//
// To announce a Storks provider from other software, register the type
// ServiceType(key) with at least svc= (and ver=, grp= as the key has them)
// in the TXT record: for example, for helloworld.Greeter,
//
//	avahi-publish -s "provider 1" _storks-cwec2wwh._tcp 20880 svc=helloworld.Greeter id=p1
//
// The interop tests do this with python-zeroconf.
//
// # Protocol
//
// Register probes the instance and host names (three probes 250 ms apart,
// RFC 6762 §8.1; with the unicast-response bit clear, since a unicast reply
// to port 5353 would reach only one of the programs that share it, §15.1),
// resolves conflicts, announces the records twice one second apart (§8.3)
// and returns after the first announcement, about a second for a new
// instance; a change to a registered instance is announced at once (the
// cache-flush bit replaces the old SRV and TXT records). The registry
// answers queries for its records (shared records after 20-120 ms, §6),
// with known-answer suppression (§7.1), and answers legacy unicast queries
// (§6.7), such as dig -p 5353 @224.0.0.251.
//
// Deregister and Close send goodbye packets (TTL 0, §10.1): consumers
// drop the instance as soon as the packet arrives (the record itself is
// kept hidden for the second §10.1 asks). A provider that dies without a
// goodbye (SIGKILL, a lost host) disappears when its records' TTL runs out:
// consumers refresh the records they use at 80, 85, 90 and 95% of their
// TTL (§5.2), a live provider answers, a dead one does not.
//
// Watch browses the key's service type continuously (queries 1, 2, 4, ...
// seconds apart, up to an hour, with known answers, §5.2) and reports every
// change: instances announced, updated, said goodbye to or expired. The
// first Next waits up to 400 ms for the answers to the first query.
// Discover browses the same way and answers from the cache (the first call
// for a key waits those 400 ms). Services, the [registry.Lister], browses
// the DNS-SD service type enumeration (§9) and then every Storks type, so
// that `storks registry ls mdns://` lists the keys seen on the network.
//
// Every goroutine (the socket reader, the timer of queries and expiries,
// probes, announcements and delayed answers) belongs to the registry and
// ends in Close. Packets that are malformed or hostile (truncated,
// compression loops, lengths past the end, another class, opcode or
// response code, responses not from port 5353) are ignored record by
// record without panicking, and the cache is bounded.
//
// # Limits
//
//   - One local network: mDNS is link-local multicast (224.0.0.251, IP TTL
//     255) and routers do not forward it. Providers and consumers must share
//     a link (or use a DNS-SD gateway, which this package is not).
//   - Multicast must work on the interfaces used: some cloud networks and
//     container networks drop it. On Linux, the loopback interface needs no
//     MULTICAST flag for this package's sockets (the tests check, and set
//     it up as root if need be: ip link set lo multicast on; ip route add
//     224.0.0.0/4 dev lo).
//   - No authentication and no encryption: anyone on the link can see the
//     instances (TXT records included, so no secrets in metadata) and can
//     announce instances of any key or send goodbyes for them. Use it where
//     the network is trusted, for development, labs and appliances.
//   - The transport is IPv4 multicast (224.0.0.251); instances with IPv6
//     addresses are announced (AAAA records) over it, but a link without
//     IPv4 multicast is not served (no ff02::fb socket yet). Zoned IPv6
//     addresses (fe80::1%eth0) are rejected: an AAAA record cannot carry
//     the zone.
//   - The interfaces are chosen when the registry opens: one that comes up
//     later is not used until the registry is opened again.
//   - A provider that dies without a goodbye stays listed for up to the TTL
//     (120 s by default); lower it with ?ttl= at the cost of more refresh
//     queries.
//
// # Why miekg/dns and golang.org/x/net/ipv4
//
// The wire format is github.com/miekg/dns (the DNS message library most Go
// DNS software uses, fuzzed and complete: names, compression, every record
// type), and the sockets are golang.org/x/net/ipv4, which joins the group
// per interface, sets the multicast interface of each packet (what makes
// the loopback interface work) and reports the interface a packet came in
// on. The mDNS and DNS-SD logic is this package's own, because the Go mDNS
// libraries checked lack parts the registry needs:
//
//   - github.com/hashicorp/mdns (v1.0.x): a server announces one service
//     zone; its probes never look at the answers (no conflict resolution);
//     it sends without choosing the multicast interface; and its client is
//     a one-shot lookup with a timeout, with no continuous browse, no cache,
//     no TTL expiry and no removals, so a consumer cannot see a provider go.
//   - github.com/pion/mdns: host name resolution (.local A/AAAA records for
//     WebRTC ICE); it answers no PTR, SRV or TXT queries, so no DNS-SD
//     (pion/mdns#253 proposes adding it).
//
// rpcx's mDNS plugin is the cautionary tale the design answers: one TXT
// string holding every service (the 255-byte limit overflows), every
// service's address returned to every client, the host name as the
// instance name (two servers on one host collide), an empty browse wiping
// the list, and a panic on an empty TXT record.
package mdns
