package peers

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/bench/internal/hist"
	"github.com/storks-rpc/storks/bench/payload"
	"github.com/storks-rpc/storks/bench/reference"
)

func tcpPingPongSpec() Spec {
	return Spec{
		Name:   "tcp-pingpong",
		Kind:   Reference,
		Config: "plain Go: one TCP connection per caller, write request, read reply; raw bytes, no marshal",
		Start:  func() (Instance, error) { return startTCP(tcpPingPong) },
	}
}

func tcpMuxSpec() Spec {
	return Spec{
		Name:   MuxReference,
		Kind:   Reference,
		Config: "plain Go: one TCP connection; request IDs; one writer goroutine batching everything queued; one reader dispatching; raw bytes, no marshal",
		Start:  func() (Instance, error) { return startTCP(tcpMux) },
	}
}

func tcpPipelinedSpec() Spec {
	return Spec{
		Name:   "tcp-pipelined",
		Kind:   Reference,
		Config: "plain Go: one TCP connection; up to <callers> requests in flight written back to back; replies in order; raw bytes, no marshal",
		Start:  func() (Instance, error) { return startTCP(tcpPipelined) },
	}
}

type tcpMode int

const (
	tcpPingPong tcpMode = iota
	tcpMux
	tcpPipelined
)

type tcpInstance struct {
	closers
	mode tcpMode
	srv  *reference.Server
	mux  *reference.Mux
}

func startTCP(mode tcpMode) (Instance, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	srv := reference.NewServer(ln)
	in := &tcpInstance{mode: mode, srv: srv, closers: closers{srv.Close}}
	if mode == tcpMux {
		m, err := reference.DialMux(srv.Addr())
		if err != nil {
			in.Close()
			return nil, err
		}
		in.mux = m
		in.closers = append(in.closers, m.Close)
	}
	return in, nil
}

type tcpPingPongCaller struct {
	c *reference.PingPong
	p *payload.Payload
}

func (c *tcpPingPongCaller) Call(context.Context) error {
	b, err := c.c.Call()
	if err != nil {
		return err
	}
	return c.p.CheckBytes(b)
}

func (c *tcpPingPongCaller) Close() error { return c.c.Close() }

type tcpMuxCaller struct {
	s *reference.Slot
	p *payload.Payload
}

func (c *tcpMuxCaller) Call(context.Context) error {
	b, err := c.s.Call()
	if err != nil {
		return err
	}
	return c.p.CheckBytes(b)
}

func (c *tcpMuxCaller) Close() error { c.s.Release(); return nil }

func (in *tcpInstance) NewCaller(p *payload.Payload) (Caller, error) {
	in.srv.SetReply(p.Size, p.ReplyBytes)
	switch in.mode {
	case tcpMux:
		return &tcpMuxCaller{s: in.mux.NewSlot(p.RequestBytes, p.Reply), p: p}, nil
	case tcpPingPong:
		c, err := reference.DialPingPong(in.srv.Addr(), p.RequestBytes, p.Reply)
		if err != nil {
			return nil, err
		}
		return &tcpPingPongCaller{c: c, p: p}, nil
	}
	// Pipelined used as a plain caller (depth 1), for tests.
	c, err := reference.DialPingPong(in.srv.Addr(), p.RequestBytes, p.Reply)
	if err != nil {
		return nil, err
	}
	return &tcpPingPongCaller{c: c, p: p}, nil
}

// NewPipeline implements Pipeliner for the pipelined row only.
func (in *tcpInstance) NewPipeline(p *payload.Payload, depth int) (Pipeline, error) {
	if in.mode != tcpPipelined {
		return nil, nil
	}
	in.srv.SetReply(p.Size, p.ReplyBytes)
	pl, err := reference.DialPipeline(in.srv.Addr(), p.RequestBytes, p.Reply, depth)
	if err != nil {
		return nil, err
	}
	return &tcpPipeline{pl: pl, p: p}, nil
}

type tcpPipeline struct {
	pl *reference.Pipeline
	p  *payload.Payload
}

var epoch = time.Now()

func (t *tcpPipeline) Run(start <-chan struct{}, stop *atomic.Bool, h *hist.H) (int64, error) {
	now := func() int64 { return int64(time.Since(epoch)) }
	return t.pl.Run(start, stop, now, func(body []byte, sent int64) error {
		h.Record(time.Duration(now() - sent))
		return t.p.CheckBytes(body)
	})
}

func (t *tcpPipeline) Close() error { return t.pl.Close() }
