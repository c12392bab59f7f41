package runtime

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A draining connection sends no new call: it may be about to close (it
// found itself idle), and a call written now could run on the provider and
// still fail here. The call is refused before it is sent, as not run, so it
// goes to another instance.
func TestDrainingConnectionSendsNoNewCall(t *testing.T) {
	c, err := NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client, server := net.Pipe()
	received := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, server)
		received <- n
	}()
	cc := &clientConn{cl: c, addr: "pipe", c: client, w: connWriter{conn: client}, pending: make(map[uint64]*call)}
	cc.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	o, err := cc.invoke(ctx, "test.Echo", "/test.Echo/Echo", "Echo", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if o != outNotRun || err == nil {
		t.Errorf("invoke on a draining connection: outcome %d, err %v; want not run", o, err)
	}
	client.Close()
	if n := <-received; n != 0 {
		t.Errorf("%d bytes sent on a draining connection", n)
	}
}
