package runtime_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The stream test service: "test.Stream", hand-written descriptors over
// wrapper messages, as echoDesc for unary calls.
const streamService = "test.Stream"

const (
	countMethod = "/" + streamService + "/Count" // server-streaming: n messages "0".."n-1"
	sumMethod   = "/" + streamService + "/Sum"   // client-streaming: the sum of the values
	chatMethod  = "/" + streamService + "/Chat"  // bidi: echoes each message, prefixed
)

type streamServer interface {
	Count(*wrapperspb.Int64Value, storks.ServerStreamingServer[wrapperspb.StringValue]) error
	Sum(storks.ClientStreamingServer[wrapperspb.Int64Value, wrapperspb.Int64Value]) error
	Chat(storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error
}

// streamImpl implements streamServer; the hooks replace a method's default.
type streamImpl struct {
	count func(*wrapperspb.Int64Value, storks.ServerStreamingServer[wrapperspb.StringValue]) error
	chat  func(storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error
}

func (s *streamImpl) Count(in *wrapperspb.Int64Value, st storks.ServerStreamingServer[wrapperspb.StringValue]) error {
	if s.count != nil {
		return s.count(in, st)
	}
	for i := range in.GetValue() {
		if err := st.Send(wrapperspb.String(strconv.FormatInt(i, 10))); err != nil {
			return err
		}
	}
	return nil
}

func (s *streamImpl) Sum(st storks.ClientStreamingServer[wrapperspb.Int64Value, wrapperspb.Int64Value]) error {
	var sum int64
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return st.SendAndClose(wrapperspb.Int64(sum))
		}
		if err != nil {
			return err
		}
		sum += m.GetValue()
	}
}

func (s *streamImpl) Chat(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
	if s.chat != nil {
		return s.chat(st)
	}
	for {
		m, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := st.Send(m); err != nil {
			return err
		}
	}
}

var streamDesc = storks.ServiceDesc{
	ServiceName: streamService,
	HandlerType: (*streamServer)(nil),
	Methods:     echoDesc.Methods, // a unary method too: Echo
	Streams: []storks.StreamDesc{
		{
			StreamName: "Count",
			Handler: func(srv any, stream storks.ServerStream) error {
				m := new(wrapperspb.Int64Value)
				if err := stream.RecvMsg(m); err != nil {
					return err
				}
				return srv.(streamServer).Count(m, &storks.GenericServerStream[wrapperspb.Int64Value, wrapperspb.StringValue]{ServerStream: stream})
			},
			ServerStreams: true,
		},
		{
			StreamName: "Sum",
			Handler: func(srv any, stream storks.ServerStream) error {
				return srv.(streamServer).Sum(&storks.GenericServerStream[wrapperspb.Int64Value, wrapperspb.Int64Value]{ServerStream: stream})
			},
			ClientStreams: true,
		},
		{
			StreamName: "Chat",
			Handler: func(srv any, stream storks.ServerStream) error {
				return srv.(streamServer).Chat(&storks.GenericServerStream[wrapperspb.BytesValue, wrapperspb.BytesValue]{ServerStream: stream})
			},
			ServerStreams: true,
			ClientStreams: true,
		},
	},
}

// streamBoth is streamImpl with the unary Echo of echoDesc.
type streamBoth struct {
	streamImpl
	echoImpl
}

// The client side, as generated code does it.
func openCount(ctx context.Context, inv storks.Invoker, n int64, opts ...storks.CallOption) (storks.ServerStreamingClient[wrapperspb.StringValue], error) {
	cs, err := inv.NewStream(ctx, &streamDesc.Streams[0], countMethod, opts...)
	if err != nil {
		return nil, err
	}
	x := &storks.GenericClientStream[wrapperspb.Int64Value, wrapperspb.StringValue]{ClientStream: cs}
	if err := x.SendMsg(wrapperspb.Int64(n)); err != nil {
		return nil, err
	}
	if err := x.CloseSend(); err != nil {
		return nil, err
	}
	return x, nil
}

func openSum(ctx context.Context, inv storks.Invoker, opts ...storks.CallOption) (storks.ClientStreamingClient[wrapperspb.Int64Value, wrapperspb.Int64Value], error) {
	cs, err := inv.NewStream(ctx, &streamDesc.Streams[1], sumMethod, opts...)
	if err != nil {
		return nil, err
	}
	return &storks.GenericClientStream[wrapperspb.Int64Value, wrapperspb.Int64Value]{ClientStream: cs}, nil
}

func openChat(ctx context.Context, inv storks.Invoker, opts ...storks.CallOption) (storks.BidiStreamingClient[wrapperspb.BytesValue, wrapperspb.BytesValue], error) {
	cs, err := inv.NewStream(ctx, &streamDesc.Streams[2], chatMethod, opts...)
	if err != nil {
		return nil, err
	}
	return &storks.GenericClientStream[wrapperspb.BytesValue, wrapperspb.BytesValue]{ClientStream: cs}, nil
}

// startStreamProvider exports impl (as test.Stream) on a new server on
// 127.0.0.1.
func startStreamProvider(t testing.TB, reg registry.Registry, impl *streamBoth, sopts ...storks.ServerOption) *storks.Server {
	t.Helper()
	srv := storks.NewServer(append([]storks.ServerOption{storks.WithRegistry(reg), storks.WithShutdownWait(50 * time.Millisecond)}, sopts...)...)
	ex, err := srv.Export(&streamDesc, impl)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	waitFor(t, func() bool { return srv.Addr() != "" && ex.State() != storks.ExportRegistering })
	return srv
}

// referStream refers test.Stream; remote unless local is set.
func referStream(t testing.TB, reg registry.Registry, local bool, copts ...storks.ClientOption) *storks.Reference {
	t.Helper()
	cli := newClient(t, append([]storks.ClientOption{storks.WithRegistry(reg)}, copts...)...)
	var ropts []storks.ReferOption
	if !local {
		ropts = append(ropts, storks.WithRemote())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ref, err := cli.Refer(ctx, streamService, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// recvAll receives until the stream ends and returns the values and the
// final error (nil for io.EOF).
func recvAll(st storks.ServerStreamingClient[wrapperspb.StringValue]) ([]string, error) {
	var out []string
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m.GetValue())
	}
}

// modes runs f remote and local (in-process).
func modes(t *testing.T, f func(t *testing.T, local bool)) {
	for _, local := range []bool{false, true} {
		name := "remote"
		if local {
			name = "local"
		}
		t.Run(name, func(t *testing.T) { f(t, local) })
	}
}
