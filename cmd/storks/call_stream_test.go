package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/storks-rpc/storks/internal/gen"
	storks "github.com/storks-rpc/storks/runtime"
)

// The streaming service of testdata/callstream/v1/callstream.proto, served
// with a hand-written descriptor over dynamicpb messages: no generated
// code.
const (
	streamsProtoDir = "cmd/storks/testdata" // from the module root, where the binary runs
	streamsProto    = "callstream/v1/callstream.proto"
	streamsService  = "storks.test.callstream.v1.Streams"
	countMethod     = streamsService + "/Count"
	sumMethod       = streamsService + "/Sum"
	chatMethod      = streamsService + "/Chat"
	itemType        = "storks.test.callstream.v1.Item"
)

// streamProvider serves the Streams service on 127.0.0.1.
type streamProvider struct {
	addr string

	countReq, item protoreflect.MessageDescriptor

	mu       sync.Mutex
	metadata []storks.Metadata     // the incoming metadata of every stream
	ends     map[string]chan error // each handler's return, by its stream's metadata "id"
}

func (p *streamProvider) lastMetadata() storks.Metadata {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.metadata) == 0 {
		return nil
	}
	return p.metadata[len(p.metadata)-1]
}

// endOf returns the channel that gets what the handler of the stream with
// metadata id=id returns.
func (p *streamProvider) endOf(id string) chan error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.ends[id]
	if ch == nil {
		ch = make(chan error, 1)
		p.ends[id] = ch
	}
	return ch
}

// waitEnd returns what the handler of the stream sent with -H id=ID
// returned.
func (p *streamProvider) waitEnd(t *testing.T, id string) error {
	t.Helper()
	select {
	case err := <-p.endOf(id):
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no stream handler ended within 30s")
		return nil
	}
}

func (p *streamProvider) newItem(n int64, text string) *dynamicpb.Message {
	m := dynamicpb.NewMessage(p.item)
	m.Set(p.item.Fields().ByName("n"), protoreflect.ValueOfInt64(n))
	m.Set(p.item.Fields().ByName("text"), protoreflect.ValueOfString(text))
	return m
}

func (p *streamProvider) fields(m *dynamicpb.Message) (int64, string) {
	return m.Get(p.item.Fields().ByName("n")).Int(), m.Get(p.item.Fields().ByName("text")).String()
}

func (p *streamProvider) count(_ any, st storks.ServerStream) error {
	req := dynamicpb.NewMessage(p.countReq)
	if err := st.RecvMsg(req); err != nil {
		return err
	}
	get := func(name string) protoreflect.Value {
		return req.Get(p.countReq.Fields().ByName(protoreflect.Name(name)))
	}
	n := get("n").Int()
	if err := st.SetHeader(storks.Metadata{"served-by": "p1"}); err != nil {
		return err
	}
	st.SetTrailer(storks.Metadata{"count": strconv.FormatInt(n, 10)})
	for i := int64(1); i <= n; i++ {
		if err := st.SendMsg(p.newItem(i, fmt.Sprint("item ", i))); err != nil {
			return err
		}
	}
	if get("hang").Bool() {
		<-st.Context().Done()
		return st.Context().Err()
	}
	if c := get("code").Int(); c != 0 {
		return storks.Errorf(storks.Code(c), "%s", get("message").String())
	}
	return nil
}

func (p *streamProvider) sum(_ any, st storks.ServerStream) error {
	var (
		sum   int64
		texts []string
	)
	for {
		m := dynamicpb.NewMessage(p.item)
		err := st.RecvMsg(m)
		if err == io.EOF {
			return st.SendMsg(p.newItem(sum, strings.Join(texts, " ")))
		}
		if err != nil {
			return err
		}
		n, text := p.fields(m)
		sum += n
		texts = append(texts, text)
	}
}

func (p *streamProvider) chat(_ any, st storks.ServerStream) error {
	if err := st.SetHeader(storks.Metadata{"served-by": "p1"}); err != nil {
		return err
	}
	for {
		m := dynamicpb.NewMessage(p.item)
		err := st.RecvMsg(m)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n, text := p.fields(m)
		if err := st.SendMsg(p.newItem(n, "echo: "+text)); err != nil {
			return err
		}
	}
}

func startStreamProvider(t *testing.T) *streamProvider {
	t.Helper()
	res, err := gen.Compile(context.Background(), gen.Config{ImportPaths: []string{"testdata"}}, []string{streamsProto})
	if err != nil {
		t.Fatal(err)
	}
	msgs := res.Linked[0].Messages()
	p := &streamProvider{
		countReq: msgs.ByName("CountRequest"),
		item:     msgs.ByName("Item"),
		ends:     make(map[string]chan error),
	}
	srv := storks.NewServer(
		storks.WithShutdownWait(0),
		storks.WithStreamServerInterceptor(func(srv any, ss storks.ServerStream, info *storks.StreamServerInfo, h storks.StreamHandler) error {
			p.mu.Lock()
			p.metadata = append(p.metadata, maps.Clone(storks.FromIncomingContext(ss.Context())))
			p.mu.Unlock()
			err := h(srv, ss)
			if id := storks.FromIncomingContext(ss.Context())["id"]; id != "" {
				p.endOf(id) <- err
			}
			return err
		}),
	)
	desc := &storks.ServiceDesc{
		ServiceName: streamsService,
		Streams: []storks.StreamDesc{
			{StreamName: "Count", Handler: p.count, ServerStreams: true},
			{StreamName: "Sum", Handler: p.sum, ClientStreams: true},
			{StreamName: "Chat", Handler: p.chat, ServerStreams: true, ClientStreams: true},
		},
	}
	if _, err := srv.Export(desc, p); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	done := make(chan struct{})
	go func() { srv.Serve(lis); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return p
}

// checkStreamFailure checks that r printed stdout, then failed with exit
// code 1 and one line "storks: ..." containing want on stderr.
func checkStreamFailure(t *testing.T, r result, stdout, want string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("exit code %d, want 1\n%s", r.code, r)
	}
	if r.stdout != stdout {
		t.Errorf("stdout %q, want %q", r.stdout, stdout)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "storks: ") || !strings.Contains(r.stderr, want) {
		t.Errorf("stderr is not one line \"storks: ...%s...\":\n%s", want, r.stderr)
	}
}

func TestCallStream(t *testing.T) {
	p := startStreamProvider(t)
	base := []string{"call", "--addr", p.addr, "-I", streamsProtoDir, "--proto", streamsProto}
	args := func(more ...string) []string { return append(base[:len(base):len(base)], more...) }

	t.Run("server-streaming", func(t *testing.T) {
		r := runStorks(t, args("-H", "trace=abc", countMethod, `{"n": 3}`)...)
		mustSucceed(t, r)
		want := `{"n":"1","text":"item 1"}` + "\n" + `{"n":"2","text":"item 2"}` + "\n" + `{"n":"3","text":"item 3"}` + "\n"
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
		if md := p.lastMetadata(); md["trace"] != "abc" {
			t.Errorf("provider saw metadata %v, want trace=abc", md)
		}
	})

	t.Run("verbose", func(t *testing.T) {
		r := runStorks(t, args("-v", "/"+countMethod, `{"n": 1}`)...)
		if r.code != 0 || r.stdout != `{"n":"1","text":"item 1"}`+"\n" {
			t.Fatalf("want one item and success, got %s", r)
		}
		if want := "header served-by: p1\ntrailer count: 1\n"; r.stderr != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
	})

	t.Run("error status", func(t *testing.T) {
		r := runStorks(t, args(countMethod, `{"n": 2, "code": 5, "message": "no more \"items\""}`)...)
		checkStreamFailure(t, r, `{"n":"1","text":"item 1"}`+"\n"+`{"n":"2","text":"item 2"}`+"\n",
			`storks: call failed: NotFound: no more "items"`+"\n")
	})

	t.Run("client-streaming from stdin", func(t *testing.T) {
		in := "{\"n\": 1, \"text\": \"a\"}\n\n  \n{\"n\":2,\"text\":\"b\"}\n{\"n\": 3, \"text\": \"c\"}" // no final newline
		r := storksStdin(t, []byte(in), args(sumMethod, "-")...)
		mustSucceed(t, r)
		if want := `{"n":"6","text":"a b c"}` + "\n"; r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
		// Without an argument, the requests come from stdin too; none is
		// none, and --emit-defaults prints the empty reply's fields.
		r = storksStdin(t, []byte{}, args("--emit-defaults", sumMethod)...)
		mustSucceed(t, r)
		if want := `{"n":"0","text":""}` + "\n"; r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
	})

	t.Run("client-streaming from a file and the argument", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "items.jsonl")
		if err := os.WriteFile(file, []byte("{\"n\": 10}\n{\"n\": 20, \"text\": \"x\"}\n\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runStorks(t, args(sumMethod, "@"+file)...)
		mustSucceed(t, r)
		if want := `{"n":"30","text":" x"}` + "\n"; r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
		r = runStorks(t, args(sumMethod, "{\"n\": 4}\n{\"n\": 5}")...)
		mustSucceed(t, r)
		if want := `{"n":"9","text":" "}` + "\n"; r.stdout != want {
			t.Errorf("stdout %q, want %q", r.stdout, want)
		}
		r = runStorks(t, args(sumMethod, "@"+file+".missing")...)
		checkOneLineError(t, r, 1, "storks: reading the requests from "+file+".missing: no such file or directory")
	})

	t.Run("bad line", func(t *testing.T) {
		in := "{\"n\": 1, \"text\": \"a\"}\n\n{\"n\": oops}\n{\"text\": \"never sent\"}\n"
		r := storksStdin(t, []byte(in), args("-H", "id=bad", chatMethod)...)
		// The first request may be echoed before the stream is cancelled.
		if r.stdout != "" && r.stdout != `{"n":"1","text":"echo: a"}`+"\n" {
			t.Errorf("stdout %q", r.stdout)
		}
		checkStreamFailure(t, r, r.stdout, "storks: line 3 of standard input: not a "+itemType+" in JSON: syntax error (column 7): ")
		// The stream was cancelled, not half-closed: the handler's
		// RecvMsg failed, with the reset the cancellation sends
		// (Canceled), or, if the process exited before its connection
		// wrote that (the reset is queued without waiting), with the
		// closed connection (Unavailable).
		if err := p.waitEnd(t, "bad"); storks.CodeOf(err) != storks.CodeCanceled && storks.CodeOf(err) != storks.CodeUnavailable {
			t.Errorf("the handler returned %v, want a Canceled or Unavailable error", err)
		}

		file := filepath.Join(t.TempDir(), "bad.jsonl")
		if err := os.WriteFile(file, []byte("{\"n\": 1}\n{\"nope\": 1}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r = runStorks(t, args(sumMethod, "@"+file)...)
		checkStreamFailure(t, r, "", "storks: line 2 of "+file+": not a "+itemType+` in JSON: `)
		if !strings.Contains(r.stderr, "nope") {
			t.Errorf("stderr does not name the unknown field:\n%s", r.stderr)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		r := runStorks(t, args("--timeout", "1s", countMethod, `{"n": 1, "hang": true}`)...)
		checkStreamFailure(t, r, `{"n":"1","text":"item 1"}`+"\n", "storks: call failed: DeadlineExceeded: ")
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("the stream ended after %v, want about 1s", d)
		}
	})
}

// A bidi call is interactive: the reply to a line is printed before the
// next line is written, long before standard input ends.
func TestCallStreamBidiInteractive(t *testing.T) {
	p := startStreamProvider(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := storksCmd(ctx, "call", "-v", "-H", "id=bidi", "--addr", p.addr, "-I", streamsProtoDir, "--proto", streamsProto, chatMethod)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	out := newLineReader(stdout)
	for i := range 3 {
		if _, err := fmt.Fprintf(stdin, "{\"n\": %d, \"text\": \"line %d\"}\n", i+1, i+1); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"n":"%d","text":"echo: line %d"}`, i+1, i+1)
		if got := out.waitFor(t, i, "the reply to line "+strconv.Itoa(i+1), func(string) bool { return true }); got != i || lineAt(out, i) != want {
			t.Fatalf("line %d of the output is %q, want %q; output:\n%s", got+1, lineAt(out, got), want, out)
		}
	}
	stdin.Close()
	err = cmd.Wait()
	if err != nil {
		var ee interface{ ExitCode() int }
		if errors.As(err, &ee) {
			t.Fatalf("exit %d; stderr:\n%s", ee.ExitCode(), stderr.String())
		}
		t.Fatal(err)
	}
	out.waitDone(t)
	if got := out.String(); strings.Count(got, "\n") != 2 {
		t.Errorf("output is not the three replies:\n%s", got)
	}
	// Chat sends a header, and no trailer.
	if got, want := stderr.String(), "header served-by: p1\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if err := p.waitEnd(t, "bidi"); err != nil {
		t.Errorf("the handler returned %v, want nil (the client half-closed)", err)
	}
}

// waitDone waits until the output ends.
func (lr *lineReader) waitDone(t *testing.T) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		lr.mu.Lock()
		done, cond := lr.done, lr.cond
		lr.mu.Unlock()
		if done {
			return
		}
		select {
		case <-cond:
		case <-deadline:
			t.Fatalf("output did not end within 30s:\n%s", lr)
		}
	}
}

func lineAt(lr *lineReader, i int) string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if i < len(lr.lines) {
		return lr.lines[i]
	}
	return ""
}
