// Package impl holds the implementations of the example services, shared by
// the provider program and the end-to-end tests.
package impl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/examples/gen/greeter/v1"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Greeter answers SayHello with a greeting and its own name, so callers can
// see which provider served them.
type Greeter struct {
	greeterv1.UnimplementedGreeterServer
	// Name identifies the provider in replies.
	Name string
	// Calls counts the SayHello calls served.
	Calls atomic.Int64
	// Hooks, optional: see Hooks.
	Hooks
}

// Hooks are optional behaviours of the example services for fault tests.
type Hooks struct {
	// OnCall, if set, is called with the method's name and the request's
	// name (SayHello) or body (Echo) when the handler runs.
	OnCall func(method, name string)
	// Latency, if set, is how long SayHello and Echo take to answer; the
	// call's context cuts it short.
	Latency time.Duration
}

// run applies the hooks to one call.
func (h *Hooks) run(ctx context.Context, method, name string) error {
	if h.OnCall != nil {
		h.OnCall(method, name)
	}
	if h.Latency > 0 {
		t := time.NewTimer(h.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// SayHello greets in.Name.
func (g *Greeter) SayHello(ctx context.Context, in *greeterv1.HelloRequest) (*greeterv1.HelloReply, error) {
	g.Calls.Add(1)
	if in.GetName() == "" {
		return nil, storks.Errorf(storks.CodeInvalidArgument, "name is required")
	}
	if err := g.run(ctx, "SayHello", in.GetName()); err != nil {
		return nil, err
	}
	return &greeterv1.HelloReply{Message: "Hello, " + in.GetName(), Provider: g.Name}, nil
}

// Fail fails with the code and message of the request.
func (g *Greeter) Fail(ctx context.Context, in *greeterv1.FailRequest) (*greeterv1.FailReply, error) {
	return nil, storks.NewError(storks.Code(in.GetCode()), in.GetMessage())
}

// Echo implements the echo service over the shared common messages.
type Echo struct {
	echov1.UnimplementedEchoServer
	Name string
	// Hooks, optional: see Hooks.
	Hooks
}

// Echo returns its input.
func (e *Echo) Echo(ctx context.Context, in *commonv1.Text) (*commonv1.Text, error) {
	if err := e.run(ctx, "Echo", in.GetBody()); err != nil {
		return nil, err
	}
	return &commonv1.Text{Body: in.GetBody()}, nil
}

// Now returns the provider's clock.
func (e *Echo) Now(ctx context.Context, _ *emptypb.Empty) (*timestamppb.Timestamp, error) {
	return timestamppb.Now(), nil
}

// Stamp returns its input with the provider's name and clock.
func (e *Echo) Stamp(ctx context.Context, in *commonv1.Text) (*commonv1.Stamped, error) {
	return &commonv1.Stamped{Text: in, Provider: e.Name, Time: timestamppb.New(time.Now())}, nil
}

// MaxCount is the most copies Count streams.
const MaxCount = 1000

// Count streams in.Text back in.Times times, numbered from 1: "text 1",
// "text 2", ... It stops early if the call's context ends.
func (e *Echo) Count(in *echov1.CountRequest, stream storks.ServerStreamingServer[commonv1.Text]) error {
	if in.GetTimes() < 0 || in.GetTimes() > MaxCount {
		return storks.Errorf(storks.CodeInvalidArgument, "times is %d, want 0 to %d", in.GetTimes(), MaxCount)
	}
	for i := int32(1); i <= in.GetTimes(); i++ {
		if err := stream.Context().Err(); err != nil {
			return err
		}
		if err := stream.Send(&commonv1.Text{Body: fmt.Sprintf("%s %d", in.GetText(), i)}); err != nil {
			return err
		}
	}
	return nil
}

// Collect receives texts until the client has sent the last, and answers
// with their bodies concatenated.
func (e *Echo) Collect(stream storks.ClientStreamingServer[commonv1.Text, commonv1.Text]) error {
	var b strings.Builder
	for {
		t, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&commonv1.Text{Body: b.String()})
		}
		if err != nil {
			return err
		}
		b.WriteString(t.GetBody())
	}
}

// Chat sends back each text it receives, until the client has sent the
// last.
func (e *Echo) Chat(stream storks.BidiStreamingServer[commonv1.Text, commonv1.Text]) error {
	for {
		t, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&commonv1.Text{Body: t.GetBody()}); err != nil {
			return err
		}
	}
}

// String describes the provider.
func (g *Greeter) String() string { return fmt.Sprintf("greeter %s", g.Name) }
