// Package all links every Storks registry adapter into a program, so that
// registry.Open accepts every URL scheme:
//
//	import _ "github.com/storks-rpc/storks/registry/all"
//
// Programs that use one backend should import only its adapter instead.
package all

import (
	// The networked adapters register their URL schemes in init.
	_ "github.com/storks-rpc/storks/registry/consul"
	_ "github.com/storks-rpc/storks/registry/etcd"
	_ "github.com/storks-rpc/storks/registry/mdns"
	_ "github.com/storks-rpc/storks/registry/zookeeper"
)
