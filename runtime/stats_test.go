package runtime_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// recorder is a StatsHandler that records every event, and on the client
// side attaches a metadata pair in TagCall, as a tracer would.
type recorder struct {
	mu     sync.Mutex
	events []storks.CallEvent
	tagged map[string]string // server side: the "x-tag" metadata a call arrived with, by method
}

func (r *recorder) TagCall(ctx context.Context, info *storks.CallInfo) context.Context {
	if info.Client {
		return storks.NewOutgoingContext(ctx, storks.Metadata{"x-tag": "from-" + info.FullMethod})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tagged == nil {
		r.tagged = make(map[string]string)
	}
	r.tagged[info.FullMethod] = storks.FromIncomingContext(ctx)["x-tag"]
	return ctx
}

func (r *recorder) HandleCall(_ context.Context, ev storks.CallEvent) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) kinds() []storks.CallEventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []storks.CallEventKind
	for _, e := range r.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *recorder) ends() []storks.CallEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []storks.CallEvent
	for _, e := range r.events {
		if e.Kind == storks.CallEnd {
			out = append(out, e)
		}
	}
	return out
}

func TestStatsUnaryCallBothSides(t *testing.T) {
	reg := newRegistry(t)
	srec, crec := new(recorder), new(recorder)
	srv, _ := startProvider(t, reg, &echoImpl{name: "p1"}, []storks.ServerOption{storks.WithStatsHandler(srec)}, storks.WithVersion("1.0"))
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithStatsHandler(crec)}, storks.WithVersion("1.0"))
	if got, err := callEcho(context.Background(), ref, "hi"); err != nil || got != "p1:hi" {
		t.Fatalf("got %q, %v", got, err)
	}
	want := []storks.CallEventKind{storks.CallBegin, storks.CallAttempt, storks.CallOutPayload, storks.CallInPayload, storks.CallAttemptEnd, storks.CallEnd}
	if got := crec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("client events %v, want %v", got, want)
	}
	// The server's CallEnd follows its reply: wait for it.
	waitFor(t, func() bool { return len(srec.ends()) == 1 })
	want = []storks.CallEventKind{storks.CallBegin, storks.CallInPayload, storks.CallOutPayload, storks.CallEnd}
	if got := srec.kinds(); !slices.Equal(got, want) {
		t.Fatalf("server events %v, want %v", got, want)
	}
	ce, se := crec.ends()[0], srec.ends()[0]
	if ce.Addr != srv.Addr() || ce.Attempt != 1 || ce.Code != storks.CodeOK || ce.Err != nil || ce.Duration <= 0 {
		t.Errorf("client end %+v", ce)
	}
	if !ce.Info.Client || ce.Info.FullMethod != echoMethod || ce.Info.Key.Version != "1.0" {
		t.Errorf("client info %+v", *ce.Info)
	}
	if se.Info.Client || se.Info.FullMethod != echoMethod || se.Info.Key.Version != "1.0" || se.Info.Protocol != storks.ProtocolStorks || se.Info.Peer == "" || se.Rejected {
		t.Errorf("server end %+v, info %+v", se, *se.Info)
	}
	for _, e := range srec.events {
		if e.Kind == storks.CallInPayload && e.Size != len("hi")+2 {
			t.Errorf("server in-payload size %d, want %d", e.Size, len("hi")+2)
		}
	}
	if got := srec.tagged[echoMethod]; got != "from-"+echoMethod {
		t.Errorf("metadata attached in the client's TagCall arrived as %q", got)
	}
}

func TestStatsServerRejections(t *testing.T) {
	reg := newRegistry(t)
	srec := new(recorder)
	srv, _ := startProvider(t, reg, &echoImpl{}, []storks.ServerOption{storks.WithStatsHandler(srec)})
	_, ref := refer(t, reg, nil)
	err := ref.Invoke(context.Background(), "/"+echoService+"/Nope", wrapperspb.String("x"), new(wrapperspb.StringValue))
	wantCode(t, err, storks.CodeUnimplemented, "unknown method")
	// The client sends a call refused unexecuted once more: one or two ends.
	waitFor(t, func() bool { return len(srec.ends()) >= 1 })
	e := srec.ends()[0]
	if !e.Rejected || e.Code != storks.CodeUnimplemented || e.Info.FullMethod != "/"+echoService+"/Nope" || e.Info.Key.Service != echoService {
		t.Fatalf("rejected end %+v info %+v", e, *e.Info)
	}

	// A gRPC client's call to an unknown method is reported too.
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/"+echoService+"/Nope", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if err == nil {
		t.Fatal("gRPC call of an unknown method succeeded")
	}
	if err := conn.Invoke(context.Background(), echoMethod, wrapperspb.String("x"), new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		n := 0
		for _, e := range srec.ends() {
			if e.Info.Protocol == storks.ProtocolGRPC {
				n++
			}
		}
		return n == 2
	})
	var grpcEnds []storks.CallEvent
	for _, e := range srec.ends() {
		if e.Info.Protocol == storks.ProtocolGRPC {
			grpcEnds = append(grpcEnds, e)
		}
	}
	if len(grpcEnds) != 2 || !grpcEnds[0].Rejected || grpcEnds[0].Code != storks.CodeUnimplemented || grpcEnds[1].Rejected || grpcEnds[1].Code != storks.CodeOK {
		t.Fatalf("gRPC ends %+v", grpcEnds)
	}
}

func TestStatsFailoverReportsEachAttempt(t *testing.T) {
	reg := newRegistry(t)
	bad := &echoImpl{hook: func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return nil, storks.Errorf(storks.CodeUnavailable, "overloaded")
	}}
	badSrv, _ := startProvider(t, reg, bad, nil)
	goodSrv, _ := startProvider(t, reg, &echoImpl{name: "good"}, nil)
	crec := new(recorder)
	_, ref := refer(t, reg, []storks.ClientOption{storks.WithStatsHandler(crec)}, storks.Failover(2), storks.WithIdempotentMethods("Echo"))
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	// Round robin: within a few calls one goes to the bad provider first.
	for i := 0; i < 10; i++ {
		if _, err := callEcho(context.Background(), ref, "x"); err != nil {
			t.Fatal(err)
		}
	}
	var twice *storks.CallEvent
	for _, e := range crec.ends() {
		if e.Attempt == 2 {
			twice = &e
			break
		}
	}
	if twice == nil {
		t.Fatal("no call made two attempts")
	}
	if twice.Addr != goodSrv.Addr() || twice.Code != storks.CodeOK {
		t.Fatalf("end of the failed-over call %+v", *twice)
	}
	var attempts []storks.CallEvent
	crec.mu.Lock()
	for _, e := range crec.events {
		if e.Kind == storks.CallAttemptEnd && e.Info == twice.Info {
			attempts = append(attempts, e)
		}
	}
	crec.mu.Unlock()
	if len(attempts) != 2 || attempts[0].Addr != badSrv.Addr() || attempts[0].Code != storks.CodeUnavailable ||
		attempts[1].Addr != goodSrv.Addr() || attempts[1].Attempt != 2 || attempts[1].Err != nil {
		t.Fatalf("attempts %+v", attempts)
	}
}

func TestWithStatsHandlerRejectsNil(t *testing.T) {
	if _, err := storks.NewClient(storks.WithStatsHandler(nil)); err == nil || storks.CodeOf(err) != storks.CodeInvalidArgument {
		t.Fatal("WithStatsHandler(nil) accepted")
	}
}

// TestStatsNoHandlerAllocs: without a stats handler a call allocates what
// it did before the seam existed (5 allocations, client and server
// together: BenchmarkUnary).
func TestStatsNoHandlerAllocs(t *testing.T) {
	if raceOn {
		t.Skip("the race detector allocates")
	}
	reg := newRegistry(t)
	srv := storks.NewServer(storks.WithRegistry(reg))
	if _, err := srv.Export(&bytesDesc, bytesImpl{}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Close()
	cli := newClient(t, storks.WithRegistry(reg))
	ref, err := cli.Refer(context.Background(), "bench.Bytes", storks.WithRemote())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(ref.Providers()) == 1 })
	msg := &wrapperspb.BytesValue{Value: make([]byte, 578)}
	reply := new(wrapperspb.BytesValue)
	ctx := context.Background()
	call := func() {
		if err := ref.Invoke(ctx, "/bench.Bytes/Echo", msg, reply); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		call()
	}
	time.Sleep(10 * time.Millisecond)
	if n := testing.AllocsPerRun(2000, call); n > 5.5 {
		t.Fatalf("a call without a stats handler makes %.1f allocations, want at most 5", n)
	}
}

func TestStatsServerStreamBothSides(t *testing.T) {
	reg := newRegistry(t)
	srec, crec := new(recorder), new(recorder)
	startStreamProvider(t, reg, &streamBoth{}, storks.WithStatsHandler(srec))
	ref := referStream(t, reg, false, storks.WithStatsHandler(crec))
	st, err := openCount(context.Background(), ref, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := recvAll(st); err != nil || len(got) != 3 {
		t.Fatalf("got %v, %v", got, err)
	}
	waitFor(t, func() bool { return len(srec.ends()) == 1 && len(crec.ends()) == 1 })
	count := func(r *recorder, k storks.CallEventKind) int {
		n := 0
		for _, got := range r.kinds() {
			if got == k {
				n++
			}
		}
		return n
	}
	// One request in, three replies out on the server; the mirror on the client.
	if in, out := count(srec, storks.CallInPayload), count(srec, storks.CallOutPayload); in != 1 || out != 3 {
		t.Errorf("server payloads in %d out %d", in, out)
	}
	if in, out := count(crec, storks.CallInPayload), count(crec, storks.CallOutPayload); in != 3 || out != 1 {
		t.Errorf("client payloads in %d out %d", in, out)
	}
	se, ce := srec.ends()[0], crec.ends()[0]
	if !se.Info.Stream || se.Code != storks.CodeOK || !ce.Info.Stream || ce.Code != storks.CodeOK || ce.Attempt != 1 || ce.Addr == "" {
		t.Fatalf("server end %+v, client end %+v", se, ce)
	}
	if got := srec.tagged[countMethod]; got != "from-"+countMethod {
		t.Errorf("metadata attached in the client's TagCall arrived as %q", got)
	}
}
