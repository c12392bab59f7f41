package runtime

import (
	"log/slog"
	"maps"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// DefaultMaxMessageSize is the largest frame body either side accepts unless
// configured otherwise: 4 MiB, as in gRPC.
const DefaultMaxMessageSize = 4 << 20

// DefaultShutdownWait is how long Shutdown waits after deregistering, so that
// consumers learn of the removal before the server stops taking calls.
const DefaultShutdownWait = 2 * time.Second

// ServerOption configures a Server.
type ServerOption interface{ applyServer(*serverConfig) }

// ClientOption configures a Client.
type ClientOption interface{ applyClient(*clientConfig) }

// ExportOption configures one export.
type ExportOption interface{ applyExport(*exportConfig) }

// ReferOption configures one reference.
type ReferOption interface{ applyRefer(*referConfig) }

// CallOption configures one call.
type CallOption interface{ applyCall(*callConfig) }

type serverConfig struct {
	registry       registry.Registry
	advertise      string
	maxMessageSize int
	interceptors   []UnaryServerInterceptor
	shutdownWait   time.Duration
	logger         *slog.Logger
	codec          Codec
	sec            serverSecurity // options_security.go
}

type clientConfig struct {
	registry       registry.Registry
	maxMessageSize int
	interceptors   []UnaryClientInterceptor
	logger         *slog.Logger
	codec          Codec
	dialTimeout    time.Duration
	tls            clientTLS        // options_security.go
	resilience     clientResilience // options_resilience.go
}

type exportConfig struct {
	version, group string
	weight         int
	metadata       map[string]string
	delay          time.Duration
}

type referConfig struct {
	version, group string
	selector       Selector
	remote         bool
	registry       registry.Registry
	resilience     referResilience // options_resilience.go
}

type callConfig struct {
	metadata   Metadata
	resilience callResilience // options_resilience.go
}

type registryOption struct{ r registry.Registry }

func (o registryOption) applyServer(c *serverConfig) { c.registry = o.r }
func (o registryOption) applyClient(c *clientConfig) { c.registry = o.r }
func (o registryOption) applyRefer(c *referConfig)   { c.registry = o.r }

// WithRegistry sets the registry. On a Server every export is registered in
// it; on a Client or a single reference, providers are discovered from it.
func WithRegistry(r registry.Registry) interface {
	ServerOption
	ClientOption
	ReferOption
} {
	return registryOption{r}
}

type maxMessageOption int

func (o maxMessageOption) applyServer(c *serverConfig) { c.maxMessageSize = int(o) }
func (o maxMessageOption) applyClient(c *clientConfig) { c.maxMessageSize = int(o) }

// WithMaxMessageSize sets the largest frame body accepted and sent, in bytes
// (default DefaultMaxMessageSize). A larger frame fails with
// CodeResourceExhausted, naming the size and the limit.
func WithMaxMessageSize(n int) interface {
	ServerOption
	ClientOption
} {
	return maxMessageOption(n)
}

type loggerOption struct{ l *slog.Logger }

func (o loggerOption) applyServer(c *serverConfig) { c.logger = o.l }
func (o loggerOption) applyClient(c *clientConfig) { c.logger = o.l }

// WithLogger sets the logger for connection-level events (bad frames, broken
// connections, registry failures). The default is slog.Default().
func WithLogger(l *slog.Logger) interface {
	ServerOption
	ClientOption
} {
	return loggerOption{l}
}

type codecOption struct{ c Codec }

func (o codecOption) applyServer(c *serverConfig) { c.codec = o.c }
func (o codecOption) applyClient(c *clientConfig) { c.codec = o.c }

// WithCodec replaces the payload codec (protobuf by default). Both sides must
// use the same codec.
func WithCodec(c Codec) interface {
	ServerOption
	ClientOption
} {
	return codecOption{c}
}

type serverFunc func(*serverConfig)

func (f serverFunc) applyServer(c *serverConfig) { f(c) }

// WithAdvertiseAddr sets the host:port registered for every export instead of
// the listener's bound address, for providers behind NAT or in containers.
func WithAdvertiseAddr(addr string) ServerOption {
	return serverFunc(func(c *serverConfig) { c.advertise = addr })
}

// WithServerInterceptor appends unary server interceptors. The first one is
// the outermost.
func WithServerInterceptor(in ...UnaryServerInterceptor) ServerOption {
	return serverFunc(func(c *serverConfig) { c.interceptors = append(c.interceptors, in...) })
}

// WithShutdownWait sets how long Shutdown waits between deregistering and
// refusing new calls (default DefaultShutdownWait).
func WithShutdownWait(d time.Duration) ServerOption {
	return serverFunc(func(c *serverConfig) { c.shutdownWait = d })
}

type clientFunc func(*clientConfig)

func (f clientFunc) applyClient(c *clientConfig) { f(c) }

// WithClientInterceptor appends unary client interceptors. The first one is
// the outermost.
func WithClientInterceptor(in ...UnaryClientInterceptor) ClientOption {
	return clientFunc(func(c *clientConfig) { c.interceptors = append(c.interceptors, in...) })
}

// WithDialTimeout bounds how long connecting to a provider may take
// (default 5s).
func WithDialTimeout(d time.Duration) ClientOption {
	return clientFunc(func(c *clientConfig) { c.dialTimeout = d })
}

type versionOption string

func (o versionOption) applyExport(c *exportConfig) { c.version = string(o) }
func (o versionOption) applyRefer(c *referConfig)   { c.version = string(o) }

// WithVersion sets the version of the service key of an export or reference.
func WithVersion(v string) interface {
	ExportOption
	ReferOption
} {
	return versionOption(v)
}

type groupOption string

func (o groupOption) applyExport(c *exportConfig) { c.group = string(o) }
func (o groupOption) applyRefer(c *referConfig)   { c.group = string(o) }

// WithGroup sets the group of the service key of an export or reference.
func WithGroup(g string) interface {
	ExportOption
	ReferOption
} {
	return groupOption(g)
}

type exportFunc func(*exportConfig)

func (f exportFunc) applyExport(c *exportConfig) { f(c) }

// WithWeight sets the weight registered for an export (default
// registry.DefaultWeight).
func WithWeight(w int) ExportOption {
	return exportFunc(func(c *exportConfig) { c.weight = w })
}

// WithMetadata adds registry metadata to an export.
func WithMetadata(md map[string]string) ExportOption {
	return exportFunc(func(c *exportConfig) {
		if c.metadata == nil {
			c.metadata = make(map[string]string, len(md))
		}
		maps.Copy(c.metadata, md)
	})
}

// WithDelay delays an export: the service neither takes calls nor is
// registered until d has passed (Dubbo's delay), for providers that need to
// warm up.
func WithDelay(d time.Duration) ExportOption {
	return exportFunc(func(c *exportConfig) { c.delay = d })
}

type referFunc func(*referConfig)

func (f referFunc) applyRefer(c *referConfig) { f(c) }

// WithSelector sets how a reference picks an instance per call (default
// RoundRobin).
func WithSelector(s Selector) ReferOption {
	return referFunc(func(c *referConfig) { c.selector = s })
}

// WithRemote makes a reference always go over the network, even when the same
// process exports the service key.
func WithRemote() ReferOption {
	return referFunc(func(c *referConfig) { c.remote = true })
}

type callFunc func(*callConfig)

func (f callFunc) applyCall(c *callConfig) { f(c) }

// WithCallMetadata adds metadata to one call, merged over metadata attached to
// the context with NewOutgoingContext.
func WithCallMetadata(md Metadata) CallOption {
	return callFunc(func(c *callConfig) {
		if c.metadata == nil {
			c.metadata = make(Metadata, len(md))
		}
		maps.Copy(c.metadata, md)
	})
}
