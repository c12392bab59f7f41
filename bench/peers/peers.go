// Package peers starts each RPC framework of the benchmark (server and
// client in this process, over loopback TCP) and the plain-TCP reference
// rows, behind one small interface the driver runs.
package peers

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/storks-rpc/storks/bench/internal/hist"
	"github.com/storks-rpc/storks/bench/payload"
)

// Kind says what a row is compared as.
type Kind int

const (
	// Subject is Storks, the framework under test.
	Subject Kind = iota
	// Peer is another RPC framework; "the best peer" is the best of these.
	Peer
	// Reference is a plain-Go TCP row: a physical limit, not an RPC framework.
	Reference
	// Interop is another framework's client calling a Storks server: it
	// is compared with that framework's own server, and is never "the
	// best peer".
	Interop
	// Instrumented is a row with OpenTelemetry on (peers/otel.go),
	// compared with the other instrumented rows and with its own
	// uninstrumented row; never "the best peer".
	Instrumented
)

func (k Kind) String() string {
	switch k {
	case Subject:
		return "subject"
	case Peer:
		return "peer"
	case Interop:
		return "interop"
	case Instrumented:
		return "instrumented"
	}
	return "reference"
}

// Spec describes one row.
type Spec struct {
	Name   string // row name in the results
	Kind   Kind
	Config string // how it is configured, for RESULTS.md
	// StreamOnly rows run in the streaming scenarios only (their
	// instance's NewCaller fails).
	StreamOnly bool
	Start      func() (Instance, error)
}

// Instance is a running server and its client.
type Instance interface {
	// NewCaller returns what one calling goroutine uses to make calls
	// with payload p. It is called before the measured window.
	NewCaller(p *payload.Payload) (Caller, error)
	// Close stops the client and the server.
	Close() error
}

// Caller makes calls for one goroutine and checks every reply.
type Caller interface {
	Call(ctx context.Context) error
	Close() error
}

// Pipeliner is implemented by instances whose calls are not made by
// blocking callers but by a pipeline that keeps depth requests in flight
// (the pipelined reference). The driver uses it instead of NewCaller.
type Pipeliner interface {
	NewPipeline(p *payload.Payload, depth int) (Pipeline, error)
}

// Pipeline runs calls until stop is set, recording every call's latency
// (request written to response read) in h. It returns the number of calls
// completed and the first error.
type Pipeline interface {
	Run(start <-chan struct{}, stop *atomic.Bool, h *hist.H) (calls int64, err error)
	Close() error
}

// All returns every row in the order they are reported.
func All() []Spec {
	return []Spec{
		storksSpec(),
		grpcSpec(),
		grpcStorksSpec(),
		storksOTelSpec(),
		grpcOTelSpec(),
		rpcxSpec(),
		kitexSpec(),
		kitexMuxSpec(),
		kitexGRPCSpec(),
		tcpPingPongSpec(),
		tcpMuxSpec(),
		tcpPipelinedSpec(),
	}
}

// MuxReference is the name of the plain multiplexed-and-batched reference
// row that the results compare against.
const MuxReference = "tcp-mux"

func listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	return ln, nil
}

// closers closes several things, returning the first error.
type closers []func() error

func (cs closers) Close() error {
	var first error
	for i := len(cs) - 1; i >= 0; i-- {
		if err := cs[i](); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// noClose is the Close of callers that share their instance's client.
type noClose struct{}

func (noClose) Close() error { return nil }
