package runtime

import (
	"context"
	"io"
)

// Streams: the user-facing API of client-, server- and bidi-streaming
// methods. The shapes follow grpc-go's (stream_interfaces.go), so generated
// code and handlers read the same: a generated client method opens a stream
// with Invoker.NewStream and wraps it in GenericClientStream, whose Send,
// Recv, CloseAndRecv methods are typed; a generated handler wraps the
// ServerStream it is given in GenericServerStream.
//
// The wire side is in clientstream.go and serverstream.go, the in-process
// side in localstream.go; docs/protocol.md describes the frames.
//
// The leak rule (grpc-go's stream.go, and ours): a client stream holds its
// resources until one of these happens: RecvMsg returns an error (io.EOF
// after a status OK, or the status), the context it was opened with ends,
// or the connection breaks. A caller that drops a stream without any of
// them keeps its slot until the context ends: open every stream with a
// context that ends (one with a deadline, or cancelled when the caller is
// done). Unlike grpc-go, a stream whose server has ended it (status sent)
// releases everything on the client once the end frame arrives, whether or
// not the caller reads it.

// StreamDesc describes one streaming method of a service. Generated code
// builds one per streaming method, in ServiceDesc.Streams.
type StreamDesc struct {
	// StreamName is the method's proto name, without the service
	// ("Watch").
	StreamName string
	// Handler runs the method on srv: it reads the requests from stream
	// and sends the responses. Its return ends the stream: nil with
	// status OK, an error with that error's code and message.
	Handler StreamHandler
	// ServerStreams and ClientStreams say which side sends a stream of
	// messages: both for a bidi-streaming method, ServerStreams only for
	// a server-streaming one (the client sends one request), ClientStreams
	// only for a client-streaming one (the server sends one response).
	ServerStreams bool
	ClientStreams bool
}

// StreamHandler runs a streaming method against the implementation srv.
type StreamHandler func(srv any, stream ServerStream) error

// ClientStream is the client side of a stream, as Invoker.NewStream returns
// it. Generated code wraps it in GenericClientStream.
//
// SendMsg and CloseSend may be called from one goroutine while RecvMsg is
// called from another, but neither method may be called from two
// goroutines at once. Header and Trailer are safe from any goroutine.
type ClientStream interface {
	// Header returns the metadata the server sent at the start of the
	// stream, waiting for it if need be. It returns an error only if the
	// stream ended before the server sent any (the status, as RecvMsg
	// returns it; an empty header when the stream ended with status OK).
	Header() (Metadata, error)
	// Trailer returns the metadata the server sent with the stream's
	// status. It is complete only once RecvMsg has returned an error.
	Trailer() Metadata
	// CloseSend tells the server the client sends no more messages
	// (half-close). Messages the server sends may still be received.
	CloseSend() error
	// Context returns the stream's context: the one NewStream was given,
	// ended too when the stream ends.
	Context() context.Context
	// SendMsg sends m. It blocks while the server's window for this stream
	// (or the connection) is full, until the server reads, the stream ends
	// or its context does. An error means the stream is broken: SendMsg
	// returns io.EOF when the server has ended the stream (RecvMsg returns
	// the status), and the stream's error otherwise. A nil error means the
	// message was queued for sending, not that the server received it.
	SendMsg(m any) error
	// RecvMsg receives the next message into m, waiting for it. It returns
	// io.EOF when the server ended the stream with status OK, and the
	// status as an *Error otherwise.
	RecvMsg(m any) error
}

// ServerStream is the server side of a stream, as a StreamHandler gets it.
// Generated code wraps it in GenericServerStream.
//
// SendMsg may be called from one goroutine while RecvMsg is called from
// another, but neither from two at once. The stream ends when the handler
// returns: it must not be used after that.
type ServerStream interface {
	// SetHeader merges md into the header sent before the first message,
	// or with the status if the handler sends no message. It fails once
	// the header was sent.
	SetHeader(md Metadata) error
	// SendHeader sends the header now, with md merged into it. It fails if
	// the header was sent already.
	SendHeader(md Metadata) error
	// SetTrailer merges md into the trailer sent with the status.
	SetTrailer(md Metadata)
	// Context returns the stream's context, carrying the client's
	// metadata (IncomingMetadata). It ends when the client cancels or
	// resets the stream, its deadline passes, or the connection or server
	// closes.
	Context() context.Context
	// SendMsg sends m, waiting while the client's window is full.
	SendMsg(m any) error
	// RecvMsg receives the next message from the client into m. It
	// returns io.EOF once the client has half-closed the stream and every
	// message was received.
	RecvMsg(m any) error
}

// Streamer opens a stream, remote or local: what a stream client
// interceptor is given to call.
type Streamer func(ctx context.Context, desc *StreamDesc, method string) (ClientStream, error)

// StreamClientInterceptor wraps the opening of every stream made through a
// Client's references. It must call streamer to open the stream, or return
// an error instead; it may wrap the ClientStream it returns, to see every
// message.
type StreamClientInterceptor func(ctx context.Context, desc *StreamDesc, method string, streamer Streamer) (ClientStream, error)

// StreamServerInfo describes the stream a stream server interceptor sees.
type StreamServerInfo struct {
	// Server is the exported implementation.
	Server any
	// FullMethod is "/package.Service/Method".
	FullMethod string
	// Key is the service key the stream was addressed to.
	Key ServiceKey
	// IsClientStream and IsServerStream are the StreamDesc's ClientStreams
	// and ServerStreams.
	IsClientStream, IsServerStream bool
}

// StreamServerInterceptor wraps the handling of every stream on a server,
// remote or local. It must call handler to run the method, or return an
// error instead; it may pass handler a ServerStream that wraps ss.
type StreamServerInterceptor func(srv any, ss ServerStream, info *StreamServerInfo, handler StreamHandler) error

// ServerStreamingClient is the client side of a server-streaming method:
// the request was sent when the generated method returned it; Recv returns
// each response, then io.EOF.
type ServerStreamingClient[Res any] interface {
	Recv() (*Res, error)
	ClientStream
}

// ClientStreamingClient is the client side of a client-streaming method:
// Send each request, then CloseAndRecv for the response.
type ClientStreamingClient[Req any, Res any] interface {
	Send(*Req) error
	CloseAndRecv() (*Res, error)
	ClientStream
}

// BidiStreamingClient is the client side of a bidi-streaming method.
type BidiStreamingClient[Req any, Res any] interface {
	Send(*Req) error
	Recv() (*Res, error)
	ClientStream
}

// ServerStreamingServer is the server side of a server-streaming method:
// the handler got the request as an argument and sends each response.
type ServerStreamingServer[Res any] interface {
	Send(*Res) error
	ServerStream
}

// ClientStreamingServer is the server side of a client-streaming method:
// Recv each request until io.EOF, then SendAndClose the response.
type ClientStreamingServer[Req any, Res any] interface {
	Recv() (*Req, error)
	SendAndClose(*Res) error
	ServerStream
}

// BidiStreamingServer is the server side of a bidi-streaming method.
type BidiStreamingServer[Req any, Res any] interface {
	Recv() (*Req, error)
	Send(*Res) error
	ServerStream
}

// GenericClientStream gives a ClientStream the typed methods of
// ServerStreamingClient, ClientStreamingClient and BidiStreamingClient.
// Generated code makes one per stream.
type GenericClientStream[Req any, Res any] struct {
	ClientStream
}

var (
	_ ServerStreamingClient[int]      = (*GenericClientStream[int, int])(nil)
	_ ClientStreamingClient[int, int] = (*GenericClientStream[int, int])(nil)
	_ BidiStreamingClient[int, int]   = (*GenericClientStream[int, int])(nil)
)

// Send sends m.
func (x *GenericClientStream[Req, Res]) Send(m *Req) error { return x.ClientStream.SendMsg(m) }

// Recv receives the next response; io.EOF after the last one.
func (x *GenericClientStream[Req, Res]) Recv() (*Res, error) {
	m := new(Res)
	if err := x.ClientStream.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}

// CloseAndRecv half-closes the stream and receives the single response of
// a client-streaming method. A server that sends no response, or more than
// one, is an error.
func (x *GenericClientStream[Req, Res]) CloseAndRecv() (*Res, error) {
	if err := x.ClientStream.CloseSend(); err != nil {
		return nil, err
	}
	m := new(Res)
	if err := x.ClientStream.RecvMsg(m); err != nil {
		if err == io.EOF {
			return nil, Errorf(CodeInternal, "the server ended a client-streaming call with status OK but sent no response")
		}
		return nil, err
	}
	return m, nil
}

// GenericServerStream gives a ServerStream the typed methods of
// ServerStreamingServer, ClientStreamingServer and BidiStreamingServer.
// Generated handlers make one per stream.
type GenericServerStream[Req any, Res any] struct {
	ServerStream
}

var (
	_ ServerStreamingServer[int]      = (*GenericServerStream[int, int])(nil)
	_ ClientStreamingServer[int, int] = (*GenericServerStream[int, int])(nil)
	_ BidiStreamingServer[int, int]   = (*GenericServerStream[int, int])(nil)
)

// Send sends m.
func (x *GenericServerStream[Req, Res]) Send(m *Res) error { return x.ServerStream.SendMsg(m) }

// SendAndClose sends the single response of a client-streaming method; the
// handler then returns nil.
func (x *GenericServerStream[Req, Res]) SendAndClose(m *Res) error { return x.ServerStream.SendMsg(m) }

// Recv receives the next request; io.EOF once the client has sent its last.
func (x *GenericServerStream[Req, Res]) Recv() (*Req, error) {
	m := new(Req)
	if err := x.ServerStream.RecvMsg(m); err != nil {
		return nil, err
	}
	return m, nil
}
