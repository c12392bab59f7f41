package peers

import (
	"context"
	"fmt"

	"github.com/storks-rpc/storks/bench/payload"
)

// StreamKind is the streaming method a streaming scenario runs.
type StreamKind int

const (
	// ServerStreaming is Repeat: the client sends one request, the server
	// handles it once and sends the reply again and again until the client
	// ends the stream. One message is one reply received.
	ServerStreaming StreamKind = iota + 1
	// Bidi is Chat in lockstep: the client sends one message and receives
	// the handled message back before it sends the next. One message is
	// one round trip.
	Bidi
)

func (k StreamKind) String() string {
	switch k {
	case ServerStreaming:
		return "server-streaming"
	case Bidi:
		return "bidi echo"
	}
	return fmt.Sprintf("StreamKind(%d)", int(k))
}

// Streamer is implemented by the instances of rows that have the streaming
// methods (Repeat, Chat) of the benchmark service.
type Streamer interface {
	// NewStream opens one stream of kind, bound to ctx, for payload p, and
	// returns the Caller whose Call receives the next message (server
	// streaming) or sends one message and receives its echo (bidi),
	// checking it. Before it returns, the stream is open and one message
	// was received and checked, so the first Call in the measured window
	// finds the stream flowing. The Caller's Close ends the stream (it
	// cancels its context).
	NewStream(ctx context.Context, kind StreamKind, p *payload.Payload) (Caller, error)
}

// streamCaller is the Caller of one stream, over a peer's generated
// stream: send is nil for server streaming.
type streamCaller[M any] struct {
	cancel context.CancelFunc
	send   func(*M) error // nil for server streaming
	recv   func() (*M, error)
	check  func(*M) error
	req    *M
}

func (c *streamCaller[M]) Call(context.Context) error {
	if c.send != nil {
		if err := c.send(c.req); err != nil {
			return err
		}
	}
	out, err := c.recv()
	if err != nil {
		return err
	}
	return c.check(out)
}

func (c *streamCaller[M]) Close() error {
	c.cancel()
	return nil
}

// start makes the first Call of a new stream caller, before any
// measurement, and ends the stream if it fails.
func (c *streamCaller[M]) start() (Caller, error) {
	if err := c.Call(context.Background()); err != nil {
		c.cancel()
		return nil, fmt.Errorf("first message: %w", err)
	}
	return c, nil
}

// openStream is every row's NewStream: it opens the scenario's stream with
// repeat (server-streaming) or chat (bidi), which wrap the row's generated
// client, and returns it as a Caller whose context it owns.
func openStream[M any](ctx context.Context, kind StreamKind, check func(*M) error, req *M,
	repeat func(context.Context, *M) (recv func() (*M, error), err error),
	chat func(context.Context) (send func(*M) error, recv func() (*M, error), err error),
) (Caller, error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &streamCaller[M]{cancel: cancel, check: check, req: req}
	var err error
	switch kind {
	case ServerStreaming:
		c.recv, err = repeat(ctx, req)
	case Bidi:
		c.send, c.recv, err = chat(ctx)
	default:
		err = fmt.Errorf("no stream of kind %v", kind)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return c.start()
}
