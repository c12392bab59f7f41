package impl_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/storks-rpc/storks/examples/gen/common/v1"
	echov1 "github.com/storks-rpc/storks/examples/gen/echo/v1"
	"github.com/storks-rpc/storks/examples/impl"
	storks "github.com/storks-rpc/storks/runtime"
)

// pipeInvoker is a storks.Invoker whose streams run the method's StreamDesc
// handler on srv in a goroutine and pass messages in memory. It checks the
// generated client methods, StreamDescs and handlers with the
// implementations, without the runtime's wire side.
type pipeInvoker struct{ srv any }

func (pipeInvoker) Invoke(_ context.Context, method string, _, _ any, _ ...storks.CallOption) error {
	return storks.Errorf(storks.CodeUnimplemented, "%s: pipeInvoker has streams only", method)
}

func (p pipeInvoker) NewStream(ctx context.Context, desc *storks.StreamDesc, _ string, _ ...storks.CallOption) (storks.ClientStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &pipe{ctx: ctx, toServer: make(chan proto.Message), toClient: make(chan proto.Message), done: make(chan struct{})}
	go func() {
		s.err = desc.Handler(p.srv, serverSide{s})
		close(s.done)
		cancel()
	}()
	return clientSide{s}, nil
}

// pipe is one stream. Both channels are unbuffered, so every message the
// handler sent was received once done is closed.
type pipe struct {
	ctx       context.Context
	toServer  chan proto.Message // closed by CloseSend
	closeOnce sync.Once
	toClient  chan proto.Message
	done      chan struct{} // closed when the handler has returned err
	err       error
}

type clientSide struct{ *pipe }

func (clientSide) Header() (storks.Metadata, error) { return nil, nil }
func (clientSide) Trailer() storks.Metadata         { return nil }
func (c clientSide) Context() context.Context       { return c.ctx }

func (c clientSide) CloseSend() error {
	c.closeOnce.Do(func() { close(c.toServer) })
	return nil
}

func (c clientSide) SendMsg(m any) error {
	select {
	case c.toServer <- proto.Clone(m.(proto.Message)):
		return nil
	case <-c.done:
		return io.EOF
	}
}

func (c clientSide) RecvMsg(m any) error {
	select {
	case got := <-c.toClient:
		proto.Merge(m.(proto.Message), got)
		return nil
	case <-c.done:
		if c.err != nil {
			return c.err
		}
		return io.EOF
	}
}

type serverSide struct{ *pipe }

func (serverSide) SetHeader(storks.Metadata) error  { return nil }
func (serverSide) SendHeader(storks.Metadata) error { return nil }
func (serverSide) SetTrailer(storks.Metadata)       {}
func (s serverSide) Context() context.Context       { return s.ctx }

func (s serverSide) SendMsg(m any) error {
	select {
	case s.toClient <- proto.Clone(m.(proto.Message)):
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s serverSide) RecvMsg(m any) error {
	select {
	case got, ok := <-s.toServer:
		if !ok {
			return io.EOF
		}
		proto.Merge(m.(proto.Message), got)
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recvAll receives the bodies of every response, then the error that ends
// the stream (nil for io.EOF).
func recvAll(s storks.ServerStreamingClient[commonv1.Text]) ([]string, error) {
	var bodies []string
	for {
		t, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return bodies, nil
		}
		if err != nil {
			return bodies, err
		}
		bodies = append(bodies, t.GetBody())
	}
}

func TestCount(t *testing.T) {
	ctx := testContext(t)
	client := echov1.NewEchoClient(pipeInvoker{srv: &impl.Echo{Name: "p"}})

	// The grpc-go name of the stream type is an alias of it.
	var stream echov1.Echo_CountClient
	stream, err := client.Count(ctx, &echov1.CountRequest{Text: "hi", Times: 3})
	if err != nil {
		t.Fatal(err)
	}
	got, err := recvAll(stream)
	if want := []string{"hi 1", "hi 2", "hi 3"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Count = %q, %v; want %q", got, err, want)
	}

	stream, err = client.Count(ctx, &echov1.CountRequest{Text: "hi", Times: impl.MaxCount + 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := recvAll(stream); len(got) != 0 || storks.CodeOf(err) != storks.CodeInvalidArgument {
		t.Errorf("Count of too many = %q, %v; want InvalidArgument", got, err)
	}
}

func TestCollect(t *testing.T) {
	ctx := testContext(t)
	client := echov1.NewEchoClient(pipeInvoker{srv: &impl.Echo{Name: "p"}})
	stream, err := client.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"a", "bc", "", "d"} {
		if err := stream.Send(&commonv1.Text{Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := stream.CloseAndRecv(); err != nil || r.GetBody() != "abcd" {
		t.Errorf("Collect = %v, %v; want abcd", r, err)
	}
}

func TestChat(t *testing.T) {
	ctx := testContext(t)
	client := echov1.NewEchoClient(pipeInvoker{srv: &impl.Echo{Name: "p"}})
	stream, err := client.Chat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each text comes back before the next is sent.
	for _, body := range []string{"one", "two", "three"} {
		if err := stream.Send(&commonv1.Text{Body: body}); err != nil {
			t.Fatal(err)
		}
		if r, err := stream.Recv(); err != nil || r.GetBody() != body {
			t.Fatalf("Chat answered %q with %v, %v", body, r, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after CloseSend = %v, %v; want io.EOF", r, err)
	}
}

// TestUnimplementedStreams checks that a server without the streaming
// methods answers them with CodeUnimplemented.
func TestUnimplementedStreams(t *testing.T) {
	ctx := testContext(t)
	client := echov1.NewEchoClient(pipeInvoker{srv: &struct{ echov1.UnimplementedEchoServer }{}})
	count, err := client.Count(ctx, &echov1.CountRequest{Text: "hi", Times: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recvAll(count); storks.CodeOf(err) != storks.CodeUnimplemented {
		t.Errorf("Count: %v, want Unimplemented", err)
	}
	collect, err := client.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := collect.CloseAndRecv(); storks.CodeOf(err) != storks.CodeUnimplemented {
		t.Errorf("Collect: %v, want Unimplemented", err)
	}
}

// TestEchoStreamDescs checks Echo_ServiceDesc.Streams: the streaming
// methods in declaration order, each with who streams.
func TestEchoStreamDescs(t *testing.T) {
	type desc struct {
		name                         string
		serverStreams, clientStreams bool
	}
	var got []desc
	for _, s := range echov1.Echo_ServiceDesc.Streams {
		got = append(got, desc{s.StreamName, s.ServerStreams, s.ClientStreams})
	}
	want := []desc{{"Count", true, false}, {"Collect", false, true}, {"Chat", true, true}}
	if !slices.Equal(got, want) {
		t.Errorf("Streams %+v, want %+v", got, want)
	}
	for _, m := range echov1.Echo_ServiceDesc.Methods {
		if m.Name == "Count" || m.Name == "Collect" || m.Name == "Chat" {
			t.Errorf("streaming method %s in Methods", m.Name)
		}
	}
}
