package grpcgo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/common/v1"
	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Echo's server-streaming, client-streaming and bidi-streaming methods
// serve a grpc-go client, to the end of each stream.
func TestStreams(t *testing.T) {
	p := startProvider(t, "inproc://", "streams")
	e := echov1.NewEchoClient(dial(t, p.addr))

	t.Run("Count", func(t *testing.T) {
		for _, n := range []int32{0, 1, 5, 1000} {
			s, err := e.Count(timeout(t, 30*time.Second), &echov1.CountRequest{Text: "tick", Times: n})
			if err != nil {
				t.Fatalf("Count(%d): %v", n, err)
			}
			for i := int32(1); ; i++ {
				m, err := s.Recv()
				if errors.Is(err, io.EOF) {
					if i != n+1 {
						t.Errorf("Count(%d) ended after %d messages", n, i-1)
					}
					break
				}
				if err != nil {
					t.Fatalf("Count(%d): message %d: %v", n, i, err)
				}
				if want := fmt.Sprintf("tick %d", i); m.GetBody() != want {
					t.Fatalf("Count(%d): message %d is %q, want %q", n, i, m.GetBody(), want)
				}
			}
		}
		// The handler's error ends the stream with its code.
		s, err := e.Count(timeout(t, 10*time.Second), &echov1.CountRequest{Text: "x", Times: 1001})
		if err == nil {
			_, err = s.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Count(1001): %v, want code InvalidArgument", err)
		}
	})

	t.Run("Collect", func(t *testing.T) {
		for _, parts := range [][]string{nil, {"a"}, {"a", "b", "c"}, strings.Split(strings.Repeat("x", 300), "")} {
			s, err := e.Collect(timeout(t, 30*time.Second))
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			for _, part := range parts {
				if err := s.Send(&commonv1.Text{Body: part}); err != nil {
					t.Fatalf("Collect: Send: %v", err)
				}
			}
			out, err := s.CloseAndRecv()
			if err != nil {
				t.Fatalf("Collect(%d parts): CloseAndRecv: %v", len(parts), err)
			}
			if want := strings.Join(parts, ""); out.GetBody() != want {
				t.Errorf("Collect(%d parts) = %q, want %q", len(parts), out.GetBody(), want)
			}
		}
	})

	t.Run("Chat", func(t *testing.T) {
		s, err := e.Chat(timeout(t, 30*time.Second))
		if err != nil {
			t.Fatalf("Chat: %v", err)
		}
		for i := range 50 {
			body := fmt.Sprintf("ping %d", i)
			if err := s.Send(&commonv1.Text{Body: body}); err != nil {
				t.Fatalf("Chat: Send %d: %v", i, err)
			}
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("Chat: Recv %d: %v", i, err)
			}
			if m.GetBody() != body {
				t.Fatalf("Chat: reply %d is %q, want %q", i, m.GetBody(), body)
			}
		}
		// Sends ahead of the receives, then the end of the client's side.
		for i := range 20 {
			if err := s.Send(&commonv1.Text{Body: fmt.Sprint(i)}); err != nil {
				t.Fatalf("Chat: Send: %v", err)
			}
		}
		if err := s.CloseSend(); err != nil {
			t.Fatalf("Chat: CloseSend: %v", err)
		}
		for i := range 20 {
			m, err := s.Recv()
			if err != nil || m.GetBody() != fmt.Sprint(i) {
				t.Fatalf("Chat: Recv after CloseSend: %v, %v; want %d", m, err, i)
			}
		}
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("Chat: Recv after the last reply: %v, want io.EOF", err)
		}
	})
}

// A client that cancels a stream midway sees Canceled, of every kind of
// stream, and the provider goes on serving on the same connection.
func TestStreamCancel(t *testing.T) {
	p := startProvider(t, "inproc://", "cancel")
	e := echov1.NewEchoClient(dial(t, p.addr))

	t.Run("Count", func(t *testing.T) {
		ctx, cancel := context.WithCancel(timeout(t, 30*time.Second))
		defer cancel()
		// 1000 copies of 16 KiB, far more than HTTP/2 flow control lets
		// the provider send ahead of a client that reads three: the stream
		// cannot end before the cancel.
		s, err := e.Count(ctx, &echov1.CountRequest{Text: strings.Repeat("t", 16<<10), Times: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := s.Recv(); err != nil {
				t.Fatalf("Recv: %v", err)
			}
		}
		cancel()
		for {
			_, err := s.Recv()
			if err == nil {
				continue // messages already on their way
			}
			if status.Code(err) != codes.Canceled {
				t.Errorf("Recv after cancel: %v, want code Canceled", err)
			}
			break
		}
	})

	t.Run("Collect", func(t *testing.T) {
		ctx, cancel := context.WithCancel(timeout(t, 30*time.Second))
		defer cancel()
		s, err := e.Collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"a", "b"} {
			if err := s.Send(&commonv1.Text{Body: part}); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		// Not CloseAndRecv: the end of the client's side might still
		// overtake the cancel (grpc-go notices it in the background), and
		// the provider answer.
		cancel()
		if err := s.RecvMsg(new(commonv1.Text)); status.Code(err) != codes.Canceled {
			t.Errorf("RecvMsg after cancel: %v, want code Canceled", err)
		}
	})

	t.Run("Chat", func(t *testing.T) {
		ctx, cancel := context.WithCancel(timeout(t, 30*time.Second))
		defer cancel()
		s, err := e.Chat(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&commonv1.Text{Body: "one"}); err != nil {
			t.Fatalf("Send: %v", err)
		}
		if m, err := s.Recv(); err != nil || m.GetBody() != "one" {
			t.Fatalf("Recv: %v, %v", m, err)
		}
		cancel()
		if _, err := s.Recv(); status.Code(err) != codes.Canceled {
			t.Errorf("Recv after cancel: %v, want code Canceled", err)
		}
	})

	// Each stream the client cancelled is over for the provider too: a
	// fresh stream and a unary call are served as usual.
	s, err := e.Count(timeout(t, 10*time.Second), &echov1.CountRequest{Text: "again", Times: 2})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Count after the cancelled streams: %v", err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("Count(2) after the cancelled streams gave %d messages", n)
	}
	if _, err := e.Echo(timeout(t, 10*time.Second), &commonv1.Text{Body: "still here"}); err != nil {
		t.Errorf("Echo after the cancelled streams: %v", err)
	}
}
