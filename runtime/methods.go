package runtime

import (
	"sync"
	"sync/atomic"
)

// SupportPackageIsVersion2 is referenced by generated code that calls
// RegisterMethods. Code generated for version 1 still compiles; its
// services' idempotent methods are simply not known to clients unless
// WithIdempotentMethods names them.
const SupportPackageIsVersion2 = true

// methodTable maps full method names, "/package.Service/Method", to whether
// the method is idempotent. It is written by RegisterMethods (in practice
// from init functions of generated code) and read, without locking, only
// when a call has failed and might be retried, and when a call starts under
// Failbackup.
var methodTable struct {
	mu sync.Mutex // serializes writers
	m  atomic.Pointer[map[string]bool]
}

// RegisterMethods records, for every client in this process, which methods
// of desc are idempotent (MethodDesc.Idempotent): a fail mode retries a call
// that may have run only if its method is idempotent (see FailMode).
// Generated code calls it from an init function for every service, with the
// service's ServiceDesc; a hand-written ServiceDesc can be registered the
// same way, or its methods named with WithIdempotentMethods on a reference.
// Registering a service again replaces what was recorded for its methods.
// It is safe for concurrent use.
func RegisterMethods(desc *ServiceDesc) {
	if desc == nil || desc.ServiceName == "" {
		return
	}
	methodTable.mu.Lock()
	defer methodTable.mu.Unlock()
	var old map[string]bool
	if p := methodTable.m.Load(); p != nil {
		old = *p
	}
	m := make(map[string]bool, len(old)+len(desc.Methods))
	for k, v := range old {
		m[k] = v
	}
	prefix := "/" + desc.ServiceName + "/"
	for _, md := range desc.Methods {
		m[prefix+md.Name] = md.Idempotent
	}
	methodTable.m.Store(&m)
}

// registeredIdempotent reports whether method (a full name) was registered
// as idempotent.
func registeredIdempotent(method string) bool {
	p := methodTable.m.Load()
	return p != nil && (*p)[method]
}
