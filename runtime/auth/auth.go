package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/storks-rpc/storks/runtime"
)

// MetadataKey is the call metadata key that carries the credentials.
const MetadataKey = "authorization"

// scheme is the authentication scheme of MetadataKey's value (RFC 6750);
// it is matched without regard to case.
const scheme = "Bearer"

// A Verifier decides whether token, the bearer token of a call to
// info.FullMethod, is acceptable. It returns the context the handler runs
// with (ctx itself, or ctx carrying the caller's identity) or an error. A
// *runtime.Error is returned to the caller as it is (use
// CodeUnauthenticated or CodePermissionDenied); any other error becomes
// CodeUnauthenticated "invalid bearer token", so that its text, which may
// quote the token, never reaches the caller. A Verifier must be safe for
// concurrent use.
type Verifier func(ctx context.Context, token string, info *runtime.UnaryServerInfo) (context.Context, error)

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
func NewServerInterceptor(opts ...ServerOption) (runtime.UnaryServerInterceptor, error) {
	var c serverConfig
	for _, o := range opts {
		o(&c)
	}
	if c.empty {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "auth: WithTokens: a token is empty")
	}
	if len(c.digests) == 0 && c.verifier == nil {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "auth: NewServerInterceptor: no tokens and no verifier; give WithTokens or WithVerifier")
	}
	return func(ctx context.Context, req any, info *runtime.UnaryServerInfo, handler runtime.UnaryHandler) (any, error) {
		token, err := bearer(runtime.FromIncomingContext(ctx))
		if err != nil {
			return nil, err
		}
		if c.match(token) {
			return handler(ctx, req)
		}
		if c.verifier == nil {
			return nil, errInvalid
		}
		vctx, err := c.verifier(ctx, token, info)
		if err != nil {
			var re *runtime.Error
			if errors.As(err, &re) {
				return nil, re
			}
			return nil, errInvalid
		}
		if vctx == nil {
			vctx = ctx
		}
		return handler(vctx, req)
	}, nil
}

var errInvalid = runtime.NewError(runtime.CodeUnauthenticated, "invalid bearer token")

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
func bearer(md runtime.Metadata) (string, error) {
	v, ok := md[MetadataKey]
	if !ok {
		return "", runtime.NewError(runtime.CodeUnauthenticated, `missing credentials: the call has no "authorization: Bearer <token>" metadata`)
	}
	s, token, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(s, scheme) {
		return "", runtime.NewError(runtime.CodeUnauthenticated, `the "authorization" metadata is not a bearer token (want "Bearer <token>")`)
	}
	if token == "" {
		return "", runtime.NewError(runtime.CodeUnauthenticated, "the bearer token is empty")
	}
	return token, nil
}

// NewClientInterceptor returns the client half: every call carries
// "authorization: Bearer <token>", unless the call already carries
// authorization metadata (set with runtime.NewOutgoingContext or
// runtime.WithCallMetadata), which is then sent as it is. It returns an
// error if token is empty or contains a line break.
func NewClientInterceptor(token string) (runtime.UnaryClientInterceptor, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	md := runtime.Metadata{MetadataKey: scheme + " " + token}
	return func(ctx context.Context, method string, req, reply any, invoker runtime.UnaryInvoker) (any, error) {
		if _, set := runtime.OutgoingMetadata(ctx)[MetadataKey]; !set {
			ctx = runtime.NewOutgoingContext(ctx, md)
		}
		return invoker(ctx, method, req, reply)
	}, nil
}

// NewClientInterceptorFunc is NewClientInterceptor with a token obtained
// for each call from source, for tokens that expire and are renewed. An
// error from source fails the call with CodeUnauthenticated (the error's
// code, if it is a *runtime.Error) before anything is sent.
func NewClientInterceptorFunc(source func(ctx context.Context) (string, error)) (runtime.UnaryClientInterceptor, error) {
	if source == nil {
		return nil, runtime.Errorf(runtime.CodeInvalidArgument, "auth: NewClientInterceptorFunc: token source is nil")
	}
	return func(ctx context.Context, method string, req, reply any, invoker runtime.UnaryInvoker) (any, error) {
		if _, set := runtime.OutgoingMetadata(ctx)[MetadataKey]; !set {
			token, err := source(ctx)
			if err != nil {
				var re *runtime.Error
				if errors.As(err, &re) {
					return nil, re
				}
				return nil, runtime.Errorf(runtime.CodeUnauthenticated, "call %s: no bearer token: %v", method, err)
			}
			if err := checkToken(token); err != nil {
				return nil, runtime.Errorf(runtime.CodeUnauthenticated, "call %s: the token source returned an unusable token: %s", method, err.(*runtime.Error).Message)
			}
			ctx = runtime.NewOutgoingContext(ctx, runtime.Metadata{MetadataKey: scheme + " " + token})
		}
		return invoker(ctx, method, req, reply)
	}, nil
}

func checkToken(token string) error {
	if token == "" {
		return runtime.Errorf(runtime.CodeInvalidArgument, "auth: token is empty")
	}
	if strings.ContainsAny(token, "\r\n") {
		return runtime.Errorf(runtime.CodeInvalidArgument, "auth: token contains a line break")
	}
	return nil
}
