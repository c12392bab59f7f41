package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

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
