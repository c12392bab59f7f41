package runtime

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
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

// CallPolicyOption is a call policy that a single call can set too:
// NewClient, Refer and a call (a generated method or Invoke) accept it, the
// call's overriding the reference's and the reference's the client's.
// WithWaitForProvider returns one.
type CallPolicyOption interface {
	PolicyOption
	CallOption
}

type serverConfig struct {
	optionErrors
	registry                 registry.Registry
	advertise                string
	maxMessageSize           int
	interceptors             []UnaryServerInterceptor
	streamServerInterceptors []StreamServerInterceptor
	shutdownWait             time.Duration
	maxStreams               int // WithMaxConcurrentStreams
	logger                   *slog.Logger
	codec                    Codec
	sec                      serverSecurity
	grpc                     grpcConfig // grpc.go

	// Serve and Export fail when a registration fails, instead of
	// retrying it in the background (register.go).
	registrationRequired bool

	loadReport *LoadReport // WithLoadReport; loadreport.go

	stats StatsHandler // WithStatsHandler; stats.go
}

type clientConfig struct {
	optionErrors
	registry                 registry.Registry
	maxMessageSize           int
	interceptors             []UnaryClientInterceptor
	streamClientInterceptors []StreamClientInterceptor
	logger                   *slog.Logger
	codec                    Codec
	dialTimeout              time.Duration
	tls                      *tls.Config // nil: plaintext
	resilience               clientResilience
	gov                      govConfig    // governance.go
	stats                    StatsHandler // WithStatsHandler; stats.go
}

type exportConfig struct {
	optionErrors
	version, group string
	weight         *int // nil: registry.DefaultWeight
	metadata       map[string]string
	delay          time.Duration
}

type referConfig struct {
	optionErrors
	version, group string
	balancer       BalancerFactory
	remote         bool
	localZeroCopy  bool
	registry       registry.Registry
	resilience     referResilience
	gov            govConfig // governance.go
}

type callConfig struct {
	optionErrors
	metadata   Metadata
	hashKey    string // WithHashKey
	resilience callResilience
}

// serverSecurity is the part of serverConfig set by WithTLSConfig (tls.go)
// and the connection limits (limits.go).
type serverSecurity struct {
	tls           *tls.Config
	frameTimeout  time.Duration // 0: none
	idleTimeout   time.Duration // 0: none
	maxConcurrent int           // 0: no limit
	maxConns      int           // 0: no limit; connlimit.go
	maxConnsPerIP int           // 0: no limit
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

	waitForProvider bool // discovery.go
}

// referResilience is the part of referConfig set by the options in
// failmode.go.
type referResilience struct {
	fail           FailMode
	defaultTimeout time.Duration
	timeoutSet     bool
	idempotent     []string

	waitForProvider bool // discovery.go
}

// callResilience is the part of callConfig set by the options in
// failmode.go.
type callResilience struct {
	fail       FailMode
	idempotent bool

	waitForProvider bool // discovery.go
}

func (c callResilience) set() bool {
	return c.fail.kind != failUnset || c.idempotent || c.waitForProvider
}

// Every option is checked, and a bad one is reported by the constructor or
// call it is given to, never by a panic later. An option constructor given
// a bad value returns a rejected option (reject). The few checks that can
// only be made when an option is applied (a server's WithTLSConfig needs a
// certificate; WithCallMetadata checks the map it copies) or once all are
// (WithIdempotentMethods' full names, by Refer) record their error with
// invalid, and applyOptions records a nil option. All of them land in the
// optionErrors of the config being built; NewServer (through Export and
// Serve), NewClient, Export, Refer and Invoke report the first, a
// CodeInvalidArgument *Error whose message starts with the option's name.

// optionErrors records the first invalid option given to a constructor or a
// call. Every config embeds one.
type optionErrors struct{ first *Error }

// record keeps err if it is the first error.
func (e *optionErrors) record(err *Error) {
	if e.first == nil {
		e.first = err
	}
}

// invalid records that option was given a value it cannot take.
func (e *optionErrors) invalid(option, format string, args ...any) {
	e.record(optionError(option, format, args...))
}

// err returns the first error recorded, or nil.
func (e *optionErrors) err() error {
	if e.first == nil {
		return nil
	}
	return e.first
}

func optionError(option, format string, args ...any) *Error {
	return &Error{Code: CodeInvalidArgument, Message: option + ": " + fmt.Sprintf(format, args...)}
}

// rejectedOption is what an option constructor returns for a bad value:
// whatever it is applied to records its error.
type rejectedOption struct{ err *Error }

// reject returns an option that fails the constructor or call it is given
// to with an error naming option.
func reject(option, format string, args ...any) rejectedOption {
	return rejectedOption{optionError(option, format, args...)}
}

func (o rejectedOption) applyServer(c *serverConfig) { c.record(o.err) }

func (o rejectedOption) applyClient(c *clientConfig) { c.record(o.err) }

func (o rejectedOption) applyExport(c *exportConfig) { c.record(o.err) }

func (o rejectedOption) applyRefer(c *referConfig) { c.record(o.err) }

func (o rejectedOption) applyCall(c *callConfig) { c.record(o.err) }

// applyOptions applies opts in order with apply, recording a nil option as
// an error of caller (the constructor), and returns the first error
// recorded in errs.
func applyOptions[O any](errs *optionErrors, caller string, opts []O, apply func(O)) error {
	for i, o := range opts {
		if any(o) == nil {
			errs.invalid(caller, "option %d is nil", i)
			continue
		}
		apply(o)
	}
	return errs.err()
}

// isNilValue reports whether v is nil or an interface holding a nil
// pointer, function, map, channel or slice.
func isNilValue(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Func, reflect.Map, reflect.Chan, reflect.Slice, reflect.UnsafePointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

type registryOption struct{ r registry.Registry }

func (o registryOption) applyServer(c *serverConfig) { c.registry = o.r }

func (o registryOption) applyClient(c *clientConfig) { c.registry = o.r }

func (o registryOption) applyRefer(c *referConfig) { c.registry = o.r }

// WithRegistry sets the registry. On a Server every export is registered in
// it; on a Client or a single reference, providers are discovered from it. A
// nil registry is an error ("WithRegistry: registry is nil"): a server
// without a registry is made by leaving the option out.
func WithRegistry(r registry.Registry) RegistryOption {
	if isNilValue(r) {
		return reject("WithRegistry", "registry is nil")
	}
	return registryOption{r}
}

type maxMessageOption int

func (o maxMessageOption) applyServer(c *serverConfig) { c.maxMessageSize = int(o) }

func (o maxMessageOption) applyClient(c *clientConfig) { c.maxMessageSize = int(o) }

// WithMaxMessageSize sets the largest frame body accepted and sent, in bytes
// (default DefaultMaxMessageSize; 0 means the default). A larger frame fails
// with CodeResourceExhausted, naming the size and the limit. A negative size,
// or one over 4 GiB - 1 (the most a frame's length field can say), is an
// error.
func WithMaxMessageSize(n int) Option {
	if n < 0 {
		return reject("WithMaxMessageSize", "max message size %d must not be negative (0 means the default, %d)", n, DefaultMaxMessageSize)
	}
	if uint64(n) > maxFrameBody {
		return reject("WithMaxMessageSize", "max message size %d is more than a frame can carry (%d)", n, uint64(maxFrameBody))
	}
	return maxMessageOption(n)
}

// maxFrameBody is the largest body length a frame header can hold.
const maxFrameBody = 1<<32 - 1

type loggerOption struct{ l *slog.Logger }

func (o loggerOption) applyServer(c *serverConfig) { c.logger = o.l }

func (o loggerOption) applyClient(c *clientConfig) { c.logger = o.l }

// WithLogger sets the logger for connection-level events (bad frames, broken
// connections, registry failures). The default is slog.Default(); a nil
// logger is an error.
func WithLogger(l *slog.Logger) Option {
	if l == nil {
		return reject("WithLogger", "logger is nil")
	}
	return loggerOption{l}
}

type codecOption struct{ c Codec }

func (o codecOption) applyServer(c *serverConfig) { c.codec = o.c }

func (o codecOption) applyClient(c *clientConfig) { c.codec = o.c }

// WithCodec replaces the payload codec (protobuf by default). Both sides must
// use the same codec. A nil codec is an error.
func WithCodec(c Codec) Option {
	if isNilValue(c) {
		return reject("WithCodec", "codec is nil")
	}
	return codecOption{c}
}

type versionOption string

func (o versionOption) applyExport(c *exportConfig) { c.version = string(o) }

func (o versionOption) applyRefer(c *referConfig) { c.version = string(o) }

// WithVersion sets the version of the service key of an export or
// reference. A version longer than 255 bytes or containing '/', ':' or
// whitespace is an error.
func WithVersion(v string) ServiceKeyOption {
	if err := (registry.ServiceKey{Service: "s", Version: v}).Validate(); err != nil {
		return reject("WithVersion", "%s", inputReason(err))
	}
	return versionOption(v)
}

type groupOption string

func (o groupOption) applyExport(c *exportConfig) { c.group = string(o) }

func (o groupOption) applyRefer(c *referConfig) { c.group = string(o) }

// WithGroup sets the group of the service key of an export or reference. A
// group longer than 255 bytes or containing '/', ':' or whitespace is an
// error.
func WithGroup(g string) ServiceKeyOption {
	if err := (registry.ServiceKey{Service: "s", Group: g}).Validate(); err != nil {
		return reject("WithGroup", "%s", inputReason(err))
	}
	return groupOption(g)
}

// inputReason is the text of a registry validation error without its
// "registry: " prefix.
func inputReason(err error) string {
	var ie *registry.InputError
	if errors.As(err, &ie) {
		if ie.Value != "" {
			return fmt.Sprintf("%s %q %s", ie.Field, ie.Value, ie.Reason)
		}
		return ie.Field + " " + ie.Reason
	}
	return err.Error()
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
