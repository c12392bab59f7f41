// Package auth is a bearer-token authentication interceptor pair for Storks.
//
// The client half adds "authorization: Bearer <token>" to the metadata of
// every call; the server half admits a call only when that metadata carries a
// token it accepts, and otherwise answers CodeUnauthenticated without running
// the handler. Static tokens are compared in constant time; a Verifier checks
// anything else (signed tokens, a token service), and may put the caller's
// identity in the handler's context.
//
//	srvAuth, err := auth.NewServerInterceptor(auth.WithTokens(os.Getenv("STORKS_TOKEN")))
//	srv := storks.NewServer(storks.WithServerInterceptor(srvAuth), ...)
//
//	cliAuth, err := auth.NewClientInterceptor(os.Getenv("STORKS_TOKEN"))
//	cli, err := storks.NewClient(storks.WithClientInterceptor(cliAuth), ...)
//
// Streams have their own pair, NewStreamServerInterceptor (give it to
// storks.WithStreamServerInterceptor as well, or streaming methods go
// unchecked) and NewStreamClientInterceptor. Server interceptors run for
// in-process calls and for gRPC clients too, so a call that skips the
// network, or comes in over gRPC with "authorization: Bearer <token>"
// metadata, is checked the same way. Tokens travel in call metadata: use
// storks.WithTLSConfig on both sides so that they cannot be read off the
// network. Neither half logs a token or puts one in an error.
package auth
