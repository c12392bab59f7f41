package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Server reflection: without --proto, call and describe learn the services
// and messages of their target from the gRPC server reflection service
// (grpc.reflection.v1, or v1alpha for older servers) that every Storks
// provider serves on its port, as many gRPC servers do.

// reflectStream is the stream of one reflection conversation: v1 and
// v1alpha messages are the same on the wire, so the v1 types serve both.
type reflectStream = grpc.BidiStreamingClient[rpb.ServerReflectionRequest, rpb.ServerReflectionResponse]

// reflectSession is a conversation with the reflection service of one server.
// Everything it does is bounded by the ctx given to openReflection.
type reflectSession struct {
	addr     string
	timeout  time.Duration // the --timeout of the ctx, for messages
	ctx      context.Context
	conn     *grpc.ClientConn
	stream   reflectStream
	cancel   context.CancelFunc // ends stream
	services []string           // as listed, sorted

	// files are the files received so far, by name; asked are the files
	// asked for by name.
	files map[string]*descriptorpb.FileDescriptorProto
	asked map[string]bool
}

// openReflection starts a reflection conversation with the server at addr
// and lists its services. ctx bounds the whole conversation; its deadline
// comes from a --timeout of timeout. The connection is plaintext, like the
// Storks connections of this tool.
func openReflection(ctx context.Context, addr string, timeout time.Duration) (*reflectSession, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, &reflectError{addr: addr, reason: err.Error()}
	}
	r := &reflectSession{
		addr:    addr,
		timeout: timeout,
		ctx:     ctx,
		conn:    conn,
		files:   make(map[string]*descriptorpb.FileDescriptorProto),
		asked:   make(map[string]bool),
	}
	opens := []func(context.Context) (reflectStream, error){
		func(ctx context.Context) (reflectStream, error) {
			return rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		},
		func(ctx context.Context) (reflectStream, error) {
			cs, err := conn.NewStream(ctx, &rpbalpha.ServerReflection_ServiceDesc.Streams[0],
				rpbalpha.ServerReflection_ServerReflectionInfo_FullMethodName)
			if err != nil {
				return nil, err
			}
			return &grpc.GenericClientStream[rpb.ServerReflectionRequest, rpb.ServerReflectionResponse]{ClientStream: cs}, nil
		},
	}
	for _, open := range opens {
		sctx, cancel := context.WithCancel(ctx)
		r.stream, r.cancel = nil, cancel
		st, err := open(sctx)
		if err == nil {
			r.stream = st
			var resp *rpb.ServerReflectionResponse
			resp, err = r.roundTrip(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_ListServices{ListServices: "*"},
			})
			if err == nil {
				for _, s := range resp.GetListServicesResponse().GetService() {
					r.services = append(r.services, s.GetName())
				}
				slices.Sort(r.services)
				return r, nil
			}
		}
		cancel()
		if status.Code(err) != codes.Unimplemented {
			conn.Close()
			return nil, r.failed(err)
		}
	}
	conn.Close()
	return nil, &reflectError{addr: addr, noReflection: true}
}

// Close ends the conversation and closes its connection.
func (r *reflectSession) Close() error {
	r.stream.CloseSend()
	r.cancel()
	return r.conn.Close()
}

// roundTrip sends one request and returns its answer; an error response
// is returned as a status error of its code.
func (r *reflectSession) roundTrip(req *rpb.ServerReflectionRequest) (*rpb.ServerReflectionResponse, error) {
	if err := r.stream.Send(req); err != nil && err != io.EOF {
		return nil, err
	}
	// On io.EOF from Send, Recv returns why the stream ended.
	resp, err := r.stream.Recv()
	if err == io.EOF {
		return nil, status.Error(codes.Unavailable, "the server ended the reflection stream")
	}
	if err != nil {
		return nil, err
	}
	if e := resp.GetErrorResponse(); e != nil {
		return nil, status.Error(codes.Code(e.GetErrorCode()), e.GetErrorMessage())
	}
	return resp, nil
}

// failed describes a failed request of the conversation.
func (r *reflectSession) failed(err error) error {
	if errors.Is(r.ctx.Err(), context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded {
		return &reflectError{addr: r.addr, reason: fmt.Sprintf("no answer within --timeout %v", r.timeout)}
	}
	if r.ctx.Err() != nil {
		return &reflectError{addr: r.addr, reason: "interrupted"}
	}
	st := status.Convert(err)
	return &reflectError{addr: r.addr, reason: st.Code().String() + ": " + st.Message()}
}

// errSymbolNotFound is the error of fileOf for a symbol the server does
// not know.
var errSymbolNotFound = errors.New("symbol not found")

// fileOf fetches the file that declares symbol (a service, method,
// message, enum...) and every file it imports, transitively.
func (r *reflectSession) fileOf(symbol string) error {
	resp, err := r.roundTrip(&rpb.ServerReflectionRequest{
		MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: symbol},
	})
	if status.Code(err) == codes.NotFound {
		return errSymbolNotFound
	}
	if err != nil {
		return r.failed(err)
	}
	if err := r.add(resp); err != nil {
		return err
	}
	return r.fetchImports()
}

// add keeps the files of a file descriptor response. The server sends a
// file's imports along with it, but only those it has not sent before in
// the conversation.
func (r *reflectSession) add(resp *rpb.ServerReflectionResponse) error {
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := new(descriptorpb.FileDescriptorProto)
		if err := proto.Unmarshal(b, fd); err != nil {
			return fmt.Errorf("%s sent a malformed file descriptor: %s", r.addr, trimProto(err))
		}
		if _, ok := r.files[fd.GetName()]; !ok {
			r.files[fd.GetName()] = fd
		}
	}
	return nil
}

// fetchImports asks for the imports that have not come yet, by file name,
// until every file's imports are there. An import the server does not
// have is taken from this binary if it has it (the well-known types).
func (r *reflectSession) fetchImports() error {
	for {
		var missing []string
		importer := make(map[string]string)
		for _, name := range slices.Sorted(maps.Keys(r.files)) {
			for _, dep := range r.files[name].GetDependency() {
				if _, ok := r.files[dep]; !ok && !r.asked[dep] && importer[dep] == "" {
					missing = append(missing, dep)
					importer[dep] = name
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		for _, dep := range missing {
			r.asked[dep] = true
			resp, err := r.roundTrip(&rpb.ServerReflectionRequest{
				MessageRequest: &rpb.ServerReflectionRequest_FileByFilename{FileByFilename: dep},
			})
			switch {
			case status.Code(err) == codes.NotFound:
				fd, gerr := protoregistry.GlobalFiles.FindFileByPath(dep)
				if gerr != nil {
					return fmt.Errorf("%s's reflection has no file %q, which %s imports", r.addr, dep, importer[dep])
				}
				r.files[dep] = protodesc.ToFileDescriptorProto(fd)
			case err != nil:
				return r.failed(err)
			default:
				if err := r.add(resp); err != nil {
					return err
				}
			}
		}
	}
}

// registry links the files received into descriptors.
func (r *reflectSession) registry() (*protoregistry.Files, error) {
	set := &descriptorpb.FileDescriptorSet{}
	for _, name := range slices.Sorted(maps.Keys(r.files)) {
		set.File = append(set.File, r.files[name])
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("the descriptors from %s's reflection do not link: %s", r.addr, trimProto(err))
	}
	return files, nil
}

// reflectError is why the reflection of a server could not be read.
type reflectError struct {
	addr         string
	reason       string
	noReflection bool // the server answers gRPC, but not reflection
}

func (e *reflectError) Error() string {
	if e.noReflection {
		return fmt.Sprintf("%s answers gRPC but not its reflection (grpc.reflection.v1 and v1alpha are unimplemented); give --proto FILE.proto", e.addr)
	}
	return fmt.Sprintf("%s does not answer gRPC reflection (%s); give --proto FILE.proto", e.addr, strings.TrimSpace(e.reason))
}
