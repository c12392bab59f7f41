package runtime

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// DefaultMaxMessageSize is the largest frame body either side accepts unless
// configured otherwise: 4 MiB, as in gRPC.
const DefaultMaxMessageSize = 4 << 20

// ServerOption configures a Server: NewServer accepts it.
type ServerOption interface{ applyServer(*serverConfig) }

// ClientOption configures a Client: NewClient accepts it.
type ClientOption interface{ applyClient(*clientConfig) }

// ExportOption configures one export: Server.Export accepts it.
type ExportOption interface{ applyExport(*exportConfig) }

// ReferOption configures one reference: Client.Refer accepts it.
type ReferOption interface{ applyRefer(*referConfig) }

// CallOption configures one call: it is passed to a generated client's
// methods or to Reference.Invoke.
type CallOption interface{ applyCall(*callConfig) }

// Option configures both sides: NewServer and NewClient accept it.
// WithMaxMessageSize, WithLogger, WithCodec and WithTLSConfig return one.
type Option interface {
	ServerOption
	ClientOption
}

// RegistryOption is accepted by NewServer, where every export is registered
// in the registry, and by NewClient and Refer, where providers are
// discovered from it (Refer's overrides the client's). WithRegistry returns
// one.
type RegistryOption interface {
	ServerOption
	ClientOption
	ReferOption
}

// ServiceKeyOption sets part of a service key: Export and Refer accept it,
// and a reference reaches the exports whose key is the same. WithVersion
// and WithGroup return one.
type ServiceKeyOption interface {
	ExportOption
	ReferOption
}

// PolicyOption sets a call policy on a Client, as the default of all its
// references, or on one reference (Refer), overriding the client's:
// NewClient and Refer accept it. WithDefaultTimeout returns one; a FailMode
// is one too, and also a CallOption.
type PolicyOption interface {
	ClientOption
	ReferOption
}

type serverConfig struct {
	registry       registry.Registry
	advertise      string
	maxMessageSize int
	interceptors   []UnaryServerInterceptor
	shutdownWait   time.Duration
	logger         *slog.Logger
	codec          Codec
	sec            serverSecurity
}

type clientConfig struct {
	registry       registry.Registry
	maxMessageSize int
	interceptors   []UnaryClientInterceptor
	logger         *slog.Logger
	codec          Codec
	dialTimeout    time.Duration
	tls            clientTLS // tls.go
	resilience     clientResilience
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
	resilience     referResilience
}

type callConfig struct {
	metadata   Metadata
	resilience callResilience
}

// serverSecurity is the part of serverConfig set by WithTLSConfig (tls.go)
// and the connection limits (limits.go), with the errors of invalid options.
type serverSecurity struct {
	tls           *tls.Config
	frameTimeout  time.Duration // 0: none
	idleTimeout   time.Duration // 0: none
	maxConcurrent int           // 0: no limit
	errs          []error       // invalid options, returned by Serve
}

func defaultServerSecurity() serverSecurity {
	return serverSecurity{
		frameTimeout:  DefaultFrameTimeout,
		idleTimeout:   DefaultIdleTimeout,
		maxConcurrent: DefaultMaxConcurrentRequests,
	}
}

// clientResilience is the part of clientConfig set by the fail mode and
// default timeout (failmode.go) and by the ejection and observer options
// (health.go).
type clientResilience struct {
	fail           FailMode
	defaultTimeout time.Duration
	ejection       EjectionPolicy
	observer       func(Event)
}

// referResilience is the part of referConfig set by the options in
// failmode.go.
type referResilience struct {
	fail           FailMode
	defaultTimeout time.Duration
	timeoutSet     bool
	idempotent     []string
}

// callResilience is the part of callConfig set by the options in
// failmode.go.
type callResilience struct {
	fail       FailMode
	idempotent bool
}

func (c callResilience) set() bool { return c.fail.kind != failUnset || c.idempotent }

func (c *serverConfig) invalid(format string, args ...any) {
	c.sec.errs = append(c.sec.errs, Errorf(CodeInvalidArgument, format, args...))
}

// check returns the first configuration error of a server, naming the
// option. NewServer records it; Export and Serve return it.
func (c *serverConfig) check() error {
	if len(c.sec.errs) > 0 {
		return c.sec.errs[0]
	}
	if c.codec == nil {
		return Errorf(CodeInvalidArgument, "WithCodec: codec is nil")
	}
	for i, in := range c.interceptors {
		if in == nil {
			return Errorf(CodeInvalidArgument, "WithServerInterceptor: interceptor %d is nil", i)
		}
	}
	if c.shutdownWait < 0 {
		return Errorf(CodeInvalidArgument, "WithShutdownWait: shutdown wait %v must not be negative", c.shutdownWait)
	}
	if c.maxMessageSize < 0 {
		return Errorf(CodeInvalidArgument, "WithMaxMessageSize: max message size %d must not be negative (0 means the default, %d)", c.maxMessageSize, DefaultMaxMessageSize)
	}
	if t := c.sec.tls; t != nil && len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil {
		return Errorf(CodeInvalidArgument, "WithTLSConfig: the server's tls.Config has no certificate (set Certificates or GetCertificate)")
	}
	return nil
}

type registryOption struct{ r registry.Registry }

func (o registryOption) applyServer(c *serverConfig) { c.registry = o.r }

func (o registryOption) applyClient(c *clientConfig) { c.registry = o.r }

func (o registryOption) applyRefer(c *referConfig) { c.registry = o.r }

// WithRegistry sets the registry. On a Server every export is registered in
// it; on a Client or a single reference, providers are discovered from it.
func WithRegistry(r registry.Registry) RegistryOption {
	return registryOption{r}
}

type maxMessageOption int

func (o maxMessageOption) applyServer(c *serverConfig) { c.maxMessageSize = int(o) }

func (o maxMessageOption) applyClient(c *clientConfig) { c.maxMessageSize = int(o) }

// WithMaxMessageSize sets the largest frame body accepted and sent, in bytes
// (default DefaultMaxMessageSize). A larger frame fails with
// CodeResourceExhausted, naming the size and the limit.
func WithMaxMessageSize(n int) Option {
	return maxMessageOption(n)
}

type loggerOption struct{ l *slog.Logger }

func (o loggerOption) applyServer(c *serverConfig) { c.logger = o.l }

func (o loggerOption) applyClient(c *clientConfig) { c.logger = o.l }

// WithLogger sets the logger for connection-level events (bad frames, broken
// connections, registry failures). The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return loggerOption{l}
}

type codecOption struct{ c Codec }

func (o codecOption) applyServer(c *serverConfig) { c.codec = o.c }

func (o codecOption) applyClient(c *clientConfig) { c.codec = o.c }

// WithCodec replaces the payload codec (protobuf by default). Both sides must
// use the same codec.
func WithCodec(c Codec) Option {
	return codecOption{c}
}

type versionOption string

func (o versionOption) applyExport(c *exportConfig) { c.version = string(o) }

func (o versionOption) applyRefer(c *referConfig) { c.version = string(o) }

// WithVersion sets the version of the service key of an export or reference.
func WithVersion(v string) ServiceKeyOption {
	return versionOption(v)
}

type groupOption string

func (o groupOption) applyExport(c *exportConfig) { c.group = string(o) }

func (o groupOption) applyRefer(c *referConfig) { c.group = string(o) }

// WithGroup sets the group of the service key of an export or reference.
func WithGroup(g string) ServiceKeyOption {
	return groupOption(g)
}

type serverFunc func(*serverConfig)

func (f serverFunc) applyServer(c *serverConfig) { f(c) }

type clientFunc func(*clientConfig)

func (f clientFunc) applyClient(c *clientConfig) { f(c) }

type exportFunc func(*exportConfig)

func (f exportFunc) applyExport(c *exportConfig) { f(c) }

type referFunc func(*referConfig)

func (f referFunc) applyRefer(c *referConfig) { f(c) }

type callFunc func(*callConfig)

func (f callFunc) applyCall(c *callConfig) { f(c) }
