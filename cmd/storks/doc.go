// Command storks is the Storks command-line tool:
//
//	storks generate   compile .proto files and generate Go code, without protoc
//	storks call       call a method of a running service, with JSON in and out
//	storks describe   list a server's services, or show one in proto syntax
//	storks registry   list (ls) and follow (watch) the providers in a registry
//	storks dev        run an embedded etcd for local development
//	storks version    print the versions of storks and its generators
//	storks completion print shell completion scripts
//
// Every command has --help with examples. Errors are printed as one line,
// "storks: <what went wrong>", and make storks exit with status 1 (2 for a
// bad command line). "storks registry watch" and "storks dev" run until
// interrupted and then exit with status 0.
//
// Registry URLs are those of registry.Open; the etcd, Consul and ZooKeeper
// schemes are available once package registry/all links their adapters in.
// --registry defaults to $STORKS_REGISTRY.
package main
