package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

	storks "github.com/storks-rpc/storks/runtime"
)

// MetadataKey is the call metadata key that carries the credentials.
const MetadataKey = "authorization"

// scheme is the authentication scheme of MetadataKey's value (RFC 6750);
// it is matched without regard to case.
const scheme = "Bearer"

// A Verifier decides whether token, the bearer token of a call to
// info.FullMethod, is acceptable. It returns the context the handler runs
// with (ctx itself, or ctx carrying the caller's identity) or an error. A
// *storks.Error is returned to the caller as it is (use
// CodeUnauthenticated or CodePermissionDenied); any other error becomes
// CodeUnauthenticated "invalid bearer token", so that its text, which may
// quote the token, never reaches the caller. A Verifier must be safe for
// concurrent use.
type Verifier func(ctx context.Context, token string, info *storks.UnaryServerInfo) (context.Context, error)

// ServerOption configures NewServerInterceptor.
type ServerOption func(*serverConfig)

type serverConfig struct {
	digests  [][sha256.Size]byte
	empty    bool
	verifier Verifier
}

// WithTokens accepts calls carrying any of tokens. Tokens are compared in
// constant time (through their SHA-256 digests, so the comparison reveals
// neither the content nor the length of a token).
func WithTokens(tokens ...string) ServerOption {
	return func(c *serverConfig) {
		for _, t := range tokens {
			if t == "" {
				c.empty = true
				continue
			}
			c.digests = append(c.digests, sha256.Sum256([]byte(t)))
		}
	}
}

// WithVerifier checks tokens that WithTokens did not accept with v.
func WithVerifier(v Verifier) ServerOption {
	return func(c *serverConfig) { c.verifier = v }
}

// NewServerInterceptor returns the server half: a call whose metadata does
// not carry "authorization: Bearer <token>" with a token accepted by
// WithTokens or WithVerifier fails with CodeUnauthenticated, and its
// handler never runs. It returns an error if no token or verifier is given,
// or if a token is empty.
func NewServerInterceptor(opts ...ServerOption) (storks.UnaryServerInterceptor, error) {
	c, err := newServerConfig("NewServerInterceptor", opts)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, req any, info *storks.UnaryServerInfo, handler storks.UnaryHandler) (any, error) {
		vctx, err := c.check(ctx, info)
		if err != nil {
			return nil, err
		}
		return handler(vctx, req)
	}, nil
}

// NewStreamServerInterceptor is NewServerInterceptor for streams: a stream
// opened without an accepted bearer token fails with CodeUnauthenticated
// before its handler runs, and the handler's stream has the context the
// Verifier returned. Give a server both (WithServerInterceptor and
// WithStreamServerInterceptor) so that no method goes unchecked. The
// Verifier gets a *storks.UnaryServerInfo with the stream's server, method
// and key.
func NewStreamServerInterceptor(opts ...ServerOption) (storks.StreamServerInterceptor, error) {
	c, err := newServerConfig("NewStreamServerInterceptor", opts)
	if err != nil {
		return nil, err
	}
	return func(srv any, ss storks.ServerStream, info *storks.StreamServerInfo, handler storks.StreamHandler) error {
		ctx := ss.Context()
		vctx, err := c.check(ctx, &storks.UnaryServerInfo{Server: info.Server, FullMethod: info.FullMethod, Key: info.Key})
		if err != nil {
			return err
		}
		if vctx != ctx {
			ss = &ctxStream{ServerStream: ss, ctx: vctx}
		}
		return handler(srv, ss)
	}, nil
}

// ctxStream is a server stream with the context a Verifier returned.
type ctxStream struct {
	storks.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func newServerConfig(name string, opts []ServerOption) (*serverConfig, error) {
	var c serverConfig
	for _, o := range opts {
		o(&c)
	}
	if c.empty {
		return nil, storks.Errorf(storks.CodeInvalidArgument, "auth: WithTokens: a token is empty")
	}
	if len(c.digests) == 0 && c.verifier == nil {
		return nil, storks.Errorf(storks.CodeInvalidArgument, "auth: %s: no tokens and no verifier; give WithTokens or WithVerifier", name)
	}
	return &c, nil
}

// check accepts or refuses the call with ctx's metadata, and returns the
// context its handler runs with.
func (c *serverConfig) check(ctx context.Context, info *storks.UnaryServerInfo) (context.Context, error) {
	token, err := bearer(storks.FromIncomingContext(ctx))
	if err != nil {
		return nil, err
	}
	if c.match(token) {
		return ctx, nil
	}
	if c.verifier == nil {
		return nil, errInvalid
	}
	vctx, err := c.verifier(ctx, token, info)
	if err != nil {
		var re *storks.Error
		if errors.As(err, &re) {
			return nil, re
		}
		return nil, errInvalid
	}
	if vctx == nil {
		vctx = ctx
	}
	return vctx, nil
}

var errInvalid = storks.NewError(storks.CodeUnauthenticated, "invalid bearer token")

// match compares token with every configured token in constant time.
func (c *serverConfig) match(token string) bool {
	if len(c.digests) == 0 {
		return false
	}
	d := sha256.Sum256([]byte(token))
	ok := 0
	for i := range c.digests {
		ok |= subtle.ConstantTimeCompare(d[:], c.digests[i][:])
	}
	return ok == 1
}

// bearer extracts the token from the call's metadata.
func bearer(md storks.Metadata) (string, error) {
	v, ok := md[MetadataKey]
	if !ok {
		return "", storks.NewError(storks.CodeUnauthenticated, `missing credentials: the call has no "authorization: Bearer <token>" metadata`)
	}
	s, token, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(s, scheme) {
		return "", storks.NewError(storks.CodeUnauthenticated, `the "authorization" metadata is not a bearer token (want "Bearer <token>")`)
	}
	if token == "" {
		return "", storks.NewError(storks.CodeUnauthenticated, "the bearer token is empty")
	}
	return token, nil
}

// NewClientInterceptor returns the client half: every call carries
// "authorization: Bearer <token>", unless the call already carries
// authorization metadata (set with storks.NewOutgoingContext or
// storks.WithCallMetadata), which is then sent as it is. It returns an
// error if token is empty or contains a line break.
func NewClientInterceptor(token string) (storks.UnaryClientInterceptor, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	md := storks.Metadata{MetadataKey: scheme + " " + token}
	return func(ctx context.Context, method string, req, reply any, invoker storks.UnaryInvoker) error {
		if _, set := storks.OutgoingMetadata(ctx)[MetadataKey]; !set {
			ctx = storks.NewOutgoingContext(ctx, md)
		}
		return invoker(ctx, method, req, reply)
	}, nil
}

// NewStreamClientInterceptor is NewClientInterceptor for streams: every
// stream opened carries "authorization: Bearer <token>" unless its context
// carries authorization metadata already.
func NewStreamClientInterceptor(token string) (storks.StreamClientInterceptor, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	md := storks.Metadata{MetadataKey: scheme + " " + token}
	return func(ctx context.Context, desc *storks.StreamDesc, method string, streamer storks.Streamer) (storks.ClientStream, error) {
		if _, set := storks.OutgoingMetadata(ctx)[MetadataKey]; !set {
			ctx = storks.NewOutgoingContext(ctx, md)
		}
		return streamer(ctx, desc, method)
	}, nil
}

// NewClientInterceptorFunc is NewClientInterceptor with a token obtained
// for each call from source, for tokens that expire and are renewed. An
// error from source fails the call with CodeUnauthenticated (the error's
// code, if it is a *storks.Error) before anything is sent.
func NewClientInterceptorFunc(source func(ctx context.Context) (string, error)) (storks.UnaryClientInterceptor, error) {
	if source == nil {
		return nil, storks.Errorf(storks.CodeInvalidArgument, "auth: NewClientInterceptorFunc: token source is nil")
	}
	return func(ctx context.Context, method string, req, reply any, invoker storks.UnaryInvoker) error {
		if _, set := storks.OutgoingMetadata(ctx)[MetadataKey]; !set {
			token, err := source(ctx)
			if err != nil {
				var re *storks.Error
				if errors.As(err, &re) {
					return re
				}
				return storks.Errorf(storks.CodeUnauthenticated, "call %s: no bearer token: %v", method, err)
			}
			if err := checkToken(token); err != nil {
				return storks.Errorf(storks.CodeUnauthenticated, "call %s: the token source returned an unusable token: %s", method, err.(*storks.Error).Message)
			}
			ctx = storks.NewOutgoingContext(ctx, storks.Metadata{MetadataKey: scheme + " " + token})
		}
		return invoker(ctx, method, req, reply)
	}, nil
}

func checkToken(token string) error {
	if token == "" {
		return storks.Errorf(storks.CodeInvalidArgument, "auth: token is empty")
	}
	if strings.ContainsAny(token, "\r\n") {
		return storks.Errorf(storks.CodeInvalidArgument, "auth: token contains a line break")
	}
	return nil
}
