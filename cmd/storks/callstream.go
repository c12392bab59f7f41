package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	storks "github.com/storks-rpc/storks/runtime"
)

// Streaming methods: a server-streaming call sends the one request of the
// JSON argument; a client- or bidi-streaming call sends one request per
// line of its source (standard input, a file or the argument) as it reads
// them. Every response is printed as one line of JSON as soon as it
// arrives, while the requests are still being sent: a bidi call is
// interactive.

// requestSource yields the requests of a stream: io.EOF after the last.
type requestSource interface {
	next() (proto.Message, error)
}

// oneRequest is the source of a server-streaming call.
type oneRequest struct {
	m    proto.Message
	sent bool
}

func (s *oneRequest) next() (proto.Message, error) {
	if s.sent {
		return nil, io.EOF
	}
	s.sent = true
	return s.m, nil
}

var lineOne = regexp.MustCompile(`\(line 1:(\d+)\)`)

// lineSource reads one request per line, skipping blank lines, as the
// lines arrive.
type lineSource struct {
	r         *bufio.Reader
	closer    io.Closer // the file, if any; closed at EOF
	name      string    // "standard input", the file's name, "the JSON argument"
	line      int
	desc      protoreflect.MessageDescriptor
	unmarshal protojson.UnmarshalOptions
}

func (s *lineSource) next() (proto.Message, error) {
	for {
		b, err := s.r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("reading the requests from %s: %w", s.name, err)
		}
		if len(b) > 0 {
			s.line++
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			m := dynamicpb.NewMessage(s.desc)
			if uerr := s.unmarshal.Unmarshal(b, m); uerr != nil {
				// The JSON is one line: protojson's "(line 1:7)" is
				// a column.
				msg := lineOne.ReplaceAllString(trimProto(uerr), "(column $1)")
				return nil, fmt.Errorf("line %d of %s: not a %s in JSON: %s", s.line, s.name, s.desc.FullName(), msg)
			}
			return m, nil
		}
		if err == io.EOF {
			if s.closer != nil {
				s.closer.Close()
			}
			return nil, io.EOF
		}
	}
}

// streamCall is a call of a streaming method.
type streamCall struct {
	method  protoreflect.MethodDescriptor
	full    string // "/package.Service/Method"
	out     io.Writer
	errOut  io.Writer
	marshal protojson.MarshalOptions
	verbose bool
}

// run opens the stream, sends the requests of src from another goroutine,
// and prints the responses as they arrive, then returns the stream's
// status (nil for OK), or why sending the requests failed. Until the stream
// is open, setup bounds it too (the default --timeout, when a stream has
// no deadline of its own).
func (c *streamCall) run(ctx, setup context.Context, ref *storks.Reference, src requestSource, opts []storks.CallOption) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(setup, func() { cancel(setup.Err()) })
	cs, err := ref.NewStream(ctx, &storks.StreamDesc{
		StreamName:    string(c.method.Name()),
		ServerStreams: c.method.IsStreamingServer(),
		ClientStreams: c.method.IsStreamingClient(),
	}, c.full, opts...)
	stop()
	if err != nil {
		if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			return storks.Errorf(storks.CodeDeadlineExceeded, "open stream %s: deadline exceeded", c.full)
		}
		return err
	}

	// The sender: a failure to read or parse a request cancels the
	// stream, and is what the call reports.
	var (
		mu      sync.Mutex
		sendErr error
	)
	go func() {
		if err := sendAll(cs, src); err != nil {
			mu.Lock()
			sendErr = err
			mu.Unlock()
			cancel(err)
		}
	}()
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return sendErr
	}

	if c.verbose {
		if md, err := cs.Header(); err == nil {
			printMetadata(c.errOut, "header", md)
		}
	}
	n := 0
	var status error
	for {
		m := dynamicpb.NewMessage(c.method.Output())
		if err := cs.RecvMsg(m); err != nil {
			if err != io.EOF {
				status = err
			}
			break
		}
		n++
		if err := c.print(m); err != nil {
			cancel(err)
			return err
		}
	}
	if c.verbose {
		printMetadata(c.errOut, "trailer", cs.Trailer())
	}
	if err := failed(); err != nil {
		return err
	}
	if status == nil && n == 0 && !c.method.IsStreamingServer() {
		return storks.Errorf(storks.CodeInternal, "the server ended a client-streaming call with status OK but sent no response")
	}
	return status
}

// sendAll sends every request of src, then half-closes the stream. It
// returns nil when the stream ends first: the receiving side reports why.
func sendAll(cs storks.ClientStream, src requestSource) error {
	for {
		m, err := src.next()
		if err == io.EOF {
			return cs.CloseSend()
		}
		if err != nil {
			return err
		}
		if err := cs.SendMsg(m); err != nil {
			return nil
		}
	}
}

// print writes m as one line of JSON.
func (c *streamCall) print(m proto.Message) error {
	b, err := c.marshal.Marshal(m)
	if err != nil {
		return fmt.Errorf("printing a response as JSON: %s", trimProto(err))
	}
	// protojson varies its whitespace on purpose, even on one line;
	// compact it ourselves, so that the output is stable.
	var line bytes.Buffer
	if err := json.Compact(&line, b); err != nil {
		return fmt.Errorf("printing a response as JSON: %w", err)
	}
	line.WriteByte('\n')
	_, err = c.out.Write(line.Bytes())
	return err
}

// printMetadata writes md as "header key: value" lines, sorted by key.
func printMetadata(w io.Writer, what string, md storks.Metadata) {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(md)) {
		fmt.Fprintf(&b, "%s %s: %s\n", what, k, md[k])
	}
	io.WriteString(w, b.String())
}
