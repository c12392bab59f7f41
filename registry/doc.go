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
package registry
