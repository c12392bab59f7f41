package runtime

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// DefaultFrameTimeout is how long a server waits for the rest of a frame once
// its first byte has arrived, and how long one write of replies to a client
// may take. A client that trickles a frame, announces a large frame and then
// stalls, or stops reading its replies is disconnected after it.
const DefaultFrameTimeout = 30 * time.Second

// DefaultIdleTimeout is how long a server keeps a connection that has no call
// running and sends no request. It then sends goaway, so the client closes
// the connection and dials again on its next call; nothing is lost.
const DefaultIdleTimeout = 5 * time.Minute

// DefaultMaxConcurrentRequests is the number of requests one connection may
// have running on a server at once.
const DefaultMaxConcurrentRequests = 10000

// serverSecurity is the part of serverConfig set by the options in this file.
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

func (c *serverConfig) invalid(format string, args ...any) {
	c.sec.errs = append(c.sec.errs, Errorf(CodeInvalidArgument, format, args...))
}

type tlsOption struct{ c *tls.Config }

func (o tlsOption) applyServer(c *serverConfig) {
	if o.c == nil {
		c.invalid("WithTLSConfig: the *tls.Config is nil")
		return
	}
	c.sec.tls = o.c.Clone()
}

// clientTLS is the part of clientConfig set by WithTLSConfig.
type clientTLS struct {
	config *tls.Config
	err    error // a bad option; every dial fails with it
}

func (o tlsOption) applyClient(c *clientConfig) {
	if o.c == nil {
		c.tls = clientTLS{err: Errorf(CodeInvalidArgument, "WithTLSConfig: the *tls.Config is nil")}
		return
	}
	c.tls = clientTLS{config: o.c.Clone()}
}

// WithTLSConfig makes a Server accept only TLS connections, and a Client
// speak TLS to every provider, with the standard crypto/tls configuration.
//
// A server's config needs a certificate (Certificates, GetCertificate or
// GetConfigForClient); for mutual TLS set ClientAuth and ClientCAs. A client
// verifies the provider with RootCAs (the system pool if nil); when ServerName
// is empty it is set to the host of the provider's registered address, so a
// certificate must name the host or IP address providers register. For mutual
// TLS give the client Certificates. The config is cloned; later changes to it
// have no effect.
//
// A plaintext client calling a TLS server gets CodeUnavailable saying that
// the server requires TLS; a TLS client calling a plaintext server, or one
// that does not trust the server's certificate, gets CodeUnavailable naming
// the TLS handshake failure. Calls to a service exported in the same process
// do not use the network and so do not use TLS.
func WithTLSConfig(c *tls.Config) interface {
	ServerOption
	ClientOption
} {
	return tlsOption{c}
}

// WithFrameTimeout sets how long a server waits for the rest of a frame once
// its first byte has arrived (and for a TLS handshake to complete), and how
// long one write of replies to a client may block (default
// DefaultFrameTimeout). A connection that exceeds it is closed and the reason
// logged: this is what frees a server from clients that trickle bytes,
// announce a large frame and stall, or stop reading. Zero disables it; a
// negative value makes Serve fail.
func WithFrameTimeout(d time.Duration) ServerOption {
	return serverFunc(func(c *serverConfig) {
		if d < 0 {
			c.invalid("WithFrameTimeout: frame timeout %v must not be negative (0 disables it)", d)
			return
		}
		c.sec.frameTimeout = d
	})
}

// WithIdleTimeout sets how long a server keeps a connection on which no call
// is running and no request arrives (default DefaultIdleTimeout). Pings do
// not count as activity. The server then sends goaway: a Storks client
// closes the connection once its last reply is in and dials again for its
// next call, so no call fails. A client that keeps the connection open
// anyway is disconnected one frame timeout later. Zero disables it; a
// negative value makes Serve fail.
func WithIdleTimeout(d time.Duration) ServerOption {
	return serverFunc(func(c *serverConfig) {
		if d < 0 {
			c.invalid("WithIdleTimeout: idle timeout %v must not be negative (0 disables it)", d)
			return
		}
		c.sec.idleTimeout = d
	})
}

// WithMaxConcurrentRequests caps the requests one connection may have
// running on the server at once (default DefaultMaxConcurrentRequests). A
// request over the cap is not run and not queued: it is answered at once
// with CodeResourceExhausted, flagged as not executed. Zero removes the cap;
// a negative value makes Serve fail.
func WithMaxConcurrentRequests(n int) ServerOption {
	return serverFunc(func(c *serverConfig) {
		if n < 0 {
			c.invalid("WithMaxConcurrentRequests: limit %d must not be negative (0 means no limit)", n)
			return
		}
		c.sec.maxConcurrent = n
	})
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

// describeTLSError adds a hint to a client's TLS handshake error.
func describeTLSError(err error) string {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fmt.Sprintf("%v (the provider does not seem to speak TLS)", err)
	}
	return err.Error()
}
