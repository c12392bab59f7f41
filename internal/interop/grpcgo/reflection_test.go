package grpcgo

import (
	"slices"
	"testing"
	"time"

	commonv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/common/v1"
	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Server reflection, v1 and v1alpha, as grpc-go's own clients (grpcurl,
// grpcui, ...) speak it: ListServices names both exported services, and
// the file descriptors it serves are those this client was generated from.
func TestReflection(t *testing.T) {
	p := startProvider(t, "inproc://", "reflection")
	cc := dial(t, p.addr)
	services := []string{greeterv1.Greeter_ServiceDesc.ServiceName, echov1.Echo_ServiceDesc.ServiceName}

	t.Run("v1", func(t *testing.T) {
		s, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(timeout(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ask := func(req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
			t.Helper()
			if err := s.Send(req); err != nil {
				t.Fatalf("Send(%v): %v", req, err)
			}
			res, err := s.Recv()
			if err != nil {
				t.Fatalf("Recv after %v: %v", req, err)
			}
			if e := res.GetErrorResponse(); e != nil {
				t.Fatalf("%v: error %d %q", req, e.GetErrorCode(), e.GetErrorMessage())
			}
			return res
		}

		var listed []string
		for _, svc := range ask(&reflectionv1.ServerReflectionRequest{
			MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService() {
			listed = append(listed, svc.GetName())
		}
		t.Logf("v1 ListServices: %q", listed)
		for _, want := range services {
			if !slices.Contains(listed, want) {
				t.Errorf("v1 ListServices lists %q, not %s", listed, want)
			}
		}

		// The file of each service, and the one echo.proto imports.
		files := map[string]protoreflect.FileDescriptor{
			"echo/v1/echo.proto":       echov1.File_echo_v1_echo_proto,
			"greeter/v1/greeter.proto": greeterv1.File_greeter_v1_greeter_proto,
			"common/v1/common.proto":   commonv1.File_common_v1_common_proto,
		}
		got := map[string]*descriptorpb.FileDescriptorProto{}
		collect := func(res *reflectionv1.ServerReflectionResponse) {
			for _, b := range res.GetFileDescriptorResponse().GetFileDescriptorProto() {
				fd := new(descriptorpb.FileDescriptorProto)
				if err := proto.Unmarshal(b, fd); err != nil {
					t.Fatalf("a served file descriptor: %v", err)
				}
				got[fd.GetName()] = fd
			}
		}
		for _, sym := range services {
			collect(ask(&reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: sym}}))
		}
		if got["common/v1/common.proto"] == nil {
			collect(ask(&reflectionv1.ServerReflectionRequest{
				MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: "common/v1/common.proto"}}))
		}
		for name, fd := range files {
			want := protodesc.ToFileDescriptorProto(fd)
			switch {
			case got[name] == nil:
				t.Errorf("reflection served no %s (it served %d files)", name, len(got))
			case !proto.Equal(got[name], want):
				t.Errorf("reflection served a %s unlike the one protoc compiled:\n got %v\nwant %v", name, got[name], want)
			}
		}
	})

	t.Run("v1alpha", func(t *testing.T) { testReflectionV1alpha(t, cc, services) })
}
