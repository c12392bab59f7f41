package runtime_test

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fakeProvider speaks just enough of the wire protocol (docs/protocol.md)
// to misbehave on purpose: it answers, drops the connection after reading a
// request, or never answers, as its mode says; and it answers pings only
// while pingOK is set. Replies are StringValues "<name>:<request value>"
// (any request whose field 1 is a string works, and so does any reply type
// whose field 1 is a string).
type fakeProvider struct {
	name string
	lis  net.Listener

	mode   atomic.Int32 // fakeAnswer, fakeDrop, fakeHang, fakeDropOnce
	pingOK atomic.Bool

	requests atomic.Int64 // request frames read
	pings    atomic.Int64 // ping frames read
	cancels  atomic.Int64 // cancel frames read

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

const (
	fakeAnswer = iota
	fakeDrop
	fakeHang
	fakeDropOnce // drop the connection of the first request, answer the others
)

func startFake(t testing.TB, name string, mode int) *fakeProvider {
	t.Helper()
	f := &fakeProvider{name: name, lis: listen(t), conns: make(map[net.Conn]struct{})}
	f.mode.Store(int32(mode))
	f.pingOK.Store(true)
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *fakeProvider) addr() string { return f.lis.Addr().String() }

func (f *fakeProvider) close() {
	f.lis.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeProvider) serve() {
	defer f.wg.Done()
	for {
		c, err := f.lis.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go f.conn(c)
	}
}

func (f *fakeProvider) conn(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		c.Close()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
	}()
	var wmu sync.Mutex
	write := func(typ byte, id uint64, body []byte) {
		b := append([]byte{'S', 'K', 1, typ}, binary.BigEndian.AppendUint64(nil, id)...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		wmu.Lock()
		c.Write(append(b, body...))
		wmu.Unlock()
	}
	r := bufio.NewReader(c)
	for {
		var h [16]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		typ, id, n := h[3], binary.BigEndian.Uint64(h[4:12]), binary.BigEndian.Uint32(h[12:16])
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch typ {
		case 4: // ping
			f.pings.Add(1)
			if f.pingOK.Load() {
				write(5, id, nil)
			}
		case 6: // cancel
			f.cancels.Add(1)
		case 1: // request
			n := f.requests.Add(1)
			switch f.mode.Load() {
			case fakeDrop:
				return
			case fakeDropOnce:
				if n == 1 {
					return
				}
			case fakeHang:
				continue
			}
			in := new(wrapperspb.StringValue)
			proto.Unmarshal(requestPayload(body), in)
			out, _ := proto.Marshal(wrapperspb.String(f.name + ":" + in.GetValue()))
			write(2, id, out)
		}
	}
}

// requestPayload skips the request header of a request body.
func requestPayload(b []byte) []byte {
	str := func() {
		n, k := binary.Uvarint(b)
		b = b[k+int(n):]
	}
	str() // key
	str() // method
	_, k := binary.Uvarint(b)
	b = b[k:] // timeout
	pairs, k := binary.Uvarint(b)
	b = b[k:]
	for range pairs {
		str()
		str()
	}
	return b
}
