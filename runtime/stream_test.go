package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestStreamKinds(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		startStreamProvider(t, reg, &streamBoth{})
		ref := referStream(t, reg, local)
		if got := ref.InProcess(); got != local {
			t.Fatalf("InProcess = %v, want %v", got, local)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		// Server-streaming.
		st, err := openCount(ctx, ref, 100)
		if err != nil {
			t.Fatal(err)
		}
		got, err := recvAll(st)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 100 || got[0] != "0" || got[99] != "99" {
			t.Fatalf("Count(100) got %d messages: %v", len(got), got)
		}

		// Client-streaming.
		sum, err := openSum(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		for i := range int64(1000) {
			want += i
			if err := sum.Send(wrapperspb.Int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		res, err := sum.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if res.GetValue() != want {
			t.Fatalf("Sum = %d, want %d", res.GetValue(), want)
		}

		// Bidi: one at a time, in order.
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			msg := []byte("m" + strconv.Itoa(i))
			if err := chat.Send(wrapperspb.Bytes(msg)); err != nil {
				t.Fatal(err)
			}
			r, err := chat.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(r.GetValue(), msg) {
				t.Fatalf("Chat echoed %q, want %q", r.GetValue(), msg)
			}
		}
		if err := chat.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := chat.Recv(); err != io.EOF {
			t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
		}

		// The unary method of the same service still works.
		if _, err := callEchoMethod(ctx, ref, "/"+streamService+"/Echo", "x"); err != nil {
			t.Fatal(err)
		}
	})
}

func callEchoMethod(ctx context.Context, inv storks.Invoker, method, s string) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := inv.Invoke(ctx, method, wrapperspb.String(s), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

// Headers, trailers and a status travel; metadata reaches the handler.
func TestStreamMetadataAndStatus(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		impl := &streamBoth{}
		impl.count = func(in *wrapperspb.Int64Value, st storks.ServerStreamingServer[wrapperspb.StringValue]) error {
			md := storks.FromIncomingContext(st.Context())
			if err := st.SetHeader(storks.Metadata{"h": "head-" + md["who"]}); err != nil {
				return err
			}
			st.SetTrailer(storks.Metadata{"t": "tail"})
			if err := st.Send(wrapperspb.String("one")); err != nil {
				return err
			}
			if err := st.SetHeader(storks.Metadata{"late": "x"}); err == nil {
				return errors.New("SetHeader after Send succeeded")
			}
			return storks.Errorf(storks.CodeFailedPrecondition, "stopped after %d", in.GetValue())
		}
		startStreamProvider(t, reg, impl)
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := openCount(ctx, ref, 7, storks.WithCallMetadata(storks.Metadata{"who": "me"}))
		if err != nil {
			t.Fatal(err)
		}
		h, err := st.Header()
		if err != nil {
			t.Fatal(err)
		}
		if h["h"] != "head-me" {
			t.Fatalf("header = %v", h)
		}
		got, err := recvAll(st)
		if len(got) != 1 || got[0] != "one" {
			t.Fatalf("messages = %v", got)
		}
		wantCode(t, err, storks.CodeFailedPrecondition, "stopped after 7")
		if tr := st.Trailer(); tr["t"] != "tail" {
			t.Fatalf("trailer = %v", tr)
		}
	})
}

// Cancelling the client's context ends the handler's context on the server.
func TestStreamCancelReachesHandler(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		ended := make(chan time.Time, 1)
		impl := &streamBoth{}
		impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
			<-st.Context().Done()
			ended <- time.Now()
			return st.Context().Err()
		}
		startStreamProvider(t, reg, impl)
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithCancel(context.Background())
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := chat.Send(wrapperspb.Bytes([]byte("x"))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		start := time.Now()
		cancel()
		select {
		case at := <-ended:
			t.Logf("the handler's context ended %v after the client cancelled", at.Sub(start))
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's context did not end within 5s of the client's cancel")
		}
		_, err = chat.Recv()
		wantCode(t, err, storks.CodeCanceled, "")
	})
}

// A deadline ends the stream on both sides.
func TestStreamDeadline(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		handlerErr := make(chan error, 1)
		impl := &streamBoth{}
		impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
			_, err := st.Recv() // the client sends nothing
			handlerErr <- err
			return err
		}
		startStreamProvider(t, reg, impl)
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		_, err = chat.Recv()
		wantCode(t, err, storks.CodeDeadlineExceeded, "")
		select {
		case err := <-handlerErr:
			if c := storks.CodeOf(err); c != storks.CodeDeadlineExceeded && c != storks.CodeCanceled {
				t.Fatalf("handler's Recv = %v, want its deadline to end it", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the handler's Recv did not return within 5s of the deadline")
		}
	})
}

// Half-close: the server sees io.EOF after every message, and may still
// send after it.
func TestStreamHalfCloseOrdering(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		impl := &streamBoth{}
		impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
			var n int
			for {
				_, err := st.Recv()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				n++
			}
			// After the client's half-close, the server sends.
			for i := range 3 {
				if err := st.Send(wrapperspb.Bytes([]byte(strconv.Itoa(n + i)))); err != nil {
					return err
				}
			}
			return nil
		}
		startStreamProvider(t, reg, impl)
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := chat.Send(wrapperspb.Bytes([]byte("x"))); err != nil {
				t.Fatal(err)
			}
		}
		chat.CloseSend()
		if err := chat.Send(wrapperspb.Bytes([]byte("late"))); err == nil {
			t.Fatal("Send after CloseSend succeeded")
		}
		var got []string
		for {
			m, err := chat.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(m.GetValue()))
		}
		if len(got) != 3 || got[0] != "10" || got[2] != "12" {
			t.Fatalf("after half-close got %v, want [10 11 12]", got)
		}
	})
}

// Stream interceptors run in order on both sides, remote and local, and
// may wrap the stream to see every message.
func TestStreamInterceptors(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		var trail []string
		var mu sync.Mutex
		note := func(s string) {
			mu.Lock()
			trail = append(trail, s)
			mu.Unlock()
		}
		var serverRecv atomic.Int64
		sic := func(name string) storks.StreamServerInterceptor {
			return func(srv any, ss storks.ServerStream, info *storks.StreamServerInfo, h storks.StreamHandler) error {
				note(name + " " + info.FullMethod)
				if !info.IsClientStream || !info.IsServerStream {
					t.Errorf("info of Chat: %+v", info)
				}
				return h(srv, &countingServerStream{ServerStream: ss, n: &serverRecv})
			}
		}
		startStreamProvider(t, reg, &streamBoth{}, storks.WithStreamServerInterceptor(sic("s1"), sic("s2")))
		var clientSent atomic.Int64
		cic := func(name string) storks.StreamClientInterceptor {
			return func(ctx context.Context, desc *storks.StreamDesc, method string, streamer storks.Streamer) (storks.ClientStream, error) {
				note(name + " " + method)
				cs, err := streamer(ctx, desc, method)
				if err != nil {
					return nil, err
				}
				return &countingClientStream{ClientStream: cs, n: &clientSent}, nil
			}
		}
		ref := referStream(t, reg, local, storks.WithStreamClientInterceptor(cic("c1"), cic("c2")))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		chat, err := openChat(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			if err := chat.Send(wrapperspb.Bytes([]byte("x"))); err != nil {
				t.Fatal(err)
			}
			if _, err := chat.Recv(); err != nil {
				t.Fatal(err)
			}
		}
		chat.CloseSend()
		if _, err := chat.Recv(); err != io.EOF {
			t.Fatal(err)
		}
		mu.Lock()
		got := strings.Join(trail, ", ")
		mu.Unlock()
		want := "c1 " + chatMethod + ", c2 " + chatMethod + ", s1 " + chatMethod + ", s2 " + chatMethod
		if got != want {
			t.Fatalf("interceptors ran: %s\nwant: %s", got, want)
		}
		// Each client interceptor wraps the stream: both count 5 sends.
		if n := clientSent.Load(); n != 10 {
			t.Fatalf("client wrappers counted %d sends, want 10", n)
		}
		if n := serverRecv.Load(); n != 10 {
			t.Fatalf("server wrappers counted %d receives, want 10", n)
		}
	})
}

type countingClientStream struct {
	storks.ClientStream
	n *atomic.Int64
}

func (c *countingClientStream) SendMsg(m any) error {
	c.n.Add(1)
	return c.ClientStream.SendMsg(m)
}

type countingServerStream struct {
	storks.ServerStream
	n *atomic.Int64
}

func (c *countingServerStream) RecvMsg(m any) error {
	err := c.ServerStream.RecvMsg(m)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// Opening a stream goes to another instance when no connection can be
// made to the first, as a unary call that provably did not run does.
func TestStreamOpenSkipsDeadInstance(t *testing.T) {
	live := startStreamProvider(t, newRegistry(t), &streamBoth{})
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close() // connections to it are refused
	reg, err := registry.NewStatic(deadAddr, live.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cli := newClient(t, storks.WithRegistry(reg))
	ref, err := cli.Refer(context.Background(), streamService, storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 6 {
		st, err := openCount(ctx, ref, 2)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if got, err := recvAll(st); err != nil || len(got) != 2 {
			t.Fatalf("stream %d: %v, %v", i, got, err)
		}
	}
}

// A unary method is not a stream, and an unknown one is neither: both are
// refused as not executed, with Unimplemented.
func TestStreamRefusals(t *testing.T) {
	modes(t, func(t *testing.T, local bool) {
		reg := newRegistry(t)
		startStreamProvider(t, reg, &streamBoth{})
		ref := referStream(t, reg, local)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tc := range []struct{ method, want string }{
			{"/" + streamService + "/Echo", "is unary"},
			{"/" + streamService + "/Nope", "unknown method Nope"},
		} {
			cs, err := ref.NewStream(ctx, &storks.StreamDesc{StreamName: "x", ServerStreams: true}, tc.method)
			if err == nil {
				err = cs.RecvMsg(new(wrapperspb.StringValue))
			}
			wantCode(t, err, storks.CodeUnimplemented, tc.want)
		}
		_, err := ref.NewStream(ctx, &streamDesc.Streams[0], "/other.Service/Count")
		wantCode(t, err, storks.CodeInvalidArgument, "does not belong")
		_, err = ref.NewStream(ctx, &streamDesc.Streams[0], countMethod, nil)
		wantCode(t, err, storks.CodeInvalidArgument, "NewStream: call option 0 is nil")
	})
}
