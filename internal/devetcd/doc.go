// Package devetcd runs a single-member etcd server embedded in the calling
// process (go.etcd.io/etcd/server/v3/embed), for local development and
// demos: "storks dev" runs one, and a demo can start one in-process with
//
//	srv, err := devetcd.Start(ctx, devetcd.Config{Listen: "127.0.0.1:0"})
//	if err != nil { ... }
//	defer srv.Close()
//	reg, err := registry.Open(ctx, srv.URL()) // import _ ".../registry/etcd"
//
// It is not a production etcd: one member, no TLS, no authentication, and by
// default its data lives in a temporary directory removed by Close.
package devetcd
