// Package chaos holds the fault tests of Storks: real provider processes
// (the examples/provider program) behind real registries (an embedded etcd,
// a ZooKeeper server), a consumer under load, and a fault injected while
// the load runs: SIGKILL, SIGSTOP and SIGCONT, a rolling restart with
// SIGTERM, a registry server stopped for three times its TTL. Each test
// checks the promise it is named after and logs its figures (calls made,
// failed, retried, time to ejection, ...); run them with
//
//	go test -v ./internal/chaos
//
// to see the figures. The package has no API; it exists for its tests.
package chaos
