// Package testservers starts real registry servers for tests: each on free
// loopback ports with a temporary data directory of its own, removed when
// the test ends, and each able to Stop and Start again on the same ports and
// data (for outage tests).
//
// When a server cannot be started, the test fails if the environment
// variable CI is "true" and is skipped otherwise, with a message saying what
// is missing and how to install it.
//
// Servers:
//   - StartEtcd: an etcd embedded in the test process, nothing to install.
//   - StartConsul: a real Consul agent in -dev mode, the binary built from
//     the module proxy as a tool of tools/go.mod (`make deps-consul`), or
//     $CONSUL_BIN.
//   - StartZooKeeper: Debian's zookeeper package (`apt-get install
//     zookeeper`; Java is needed).
package testservers
