package runtime_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// benchStreamRef starts a stream provider whose Chat handler sends n
// messages of size bytes when the request says "push", and echoes
// otherwise.
func benchStreamRef(b *testing.B, size int) *storks.Reference {
	b.Helper()
	reg := newRegistry(b)
	msg := wrapperspb.Bytes(bytes.Repeat([]byte{'x'}, size))
	impl := &streamBoth{}
	impl.count = func(in *wrapperspb.Int64Value, st storks.ServerStreamingServer[wrapperspb.StringValue]) error {
		return nil
	}
	impl.chat = func(st storks.BidiStreamingServer[wrapperspb.BytesValue, wrapperspb.BytesValue]) error {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if string(m.GetValue()) == "push" {
			for {
				if err := st.Send(msg); err != nil {
					return nil
				}
			}
		}
		for {
			if err := st.Send(m); err != nil {
				return err
			}
			if m, err = st.Recv(); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
	}
	startStreamProvider(b, reg, impl, storks.WithMaxConcurrentStreams(1000))
	return referStream(b, reg, false)
}

// BenchmarkStreamPush: messages/s of one server-pushed stream per caller.
func BenchmarkStreamPush(b *testing.B) {
	for _, bc := range []struct {
		name    string
		size    int
		streams int
	}{{"581B/streams=1", 578, 1}, {"581B/streams=64", 578, 64}, {"1MiB/streams=1", 1 << 20, 1}} {
		b.Run(bc.name, func(b *testing.B) {
			ref := benchStreamRef(b, bc.size)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			per := b.N/bc.streams + 1
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range bc.streams {
				wg.Add(1)
				go func() {
					defer wg.Done()
					chat, err := openChat(ctx, ref)
					if err != nil {
						b.Error(err)
						return
					}
					chat.Send(wrapperspb.Bytes([]byte("push")))
					m := new(wrapperspb.BytesValue)
					for range per {
						if err := chat.RecvMsg(m); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkStreamBidi: send one, receive one, over 64 streams.
func BenchmarkStreamBidi(b *testing.B) {
	ref := benchStreamRef(b, 578)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg := wrapperspb.Bytes(bytes.Repeat([]byte{'x'}, 578))
	const streams = 64
	per := b.N/streams + 1
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chat, err := openChat(ctx, ref)
			if err != nil {
				b.Error(err)
				return
			}
			m := new(wrapperspb.BytesValue)
			for range per {
				if err := chat.Send(msg); err != nil {
					b.Error(err)
					return
				}
				if err := chat.RecvMsg(m); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
