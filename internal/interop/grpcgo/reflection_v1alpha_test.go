//lint:file-ignore SA1019 grpc.reflection.v1alpha is deprecated, but older clients speak only it, so the provider serves it and this file tests it.

package grpcgo

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
)

// testReflectionV1alpha checks that v1alpha ListServices names services.
func testReflectionV1alpha(t *testing.T, cc *grpc.ClientConn, services []string) {
	s, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(timeout(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&reflectionv1alpha.ServerReflectionRequest{
		MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, svc := range res.GetListServicesResponse().GetService() {
		listed = append(listed, svc.GetName())
	}
	for _, want := range services {
		if !slices.Contains(listed, want) {
			t.Errorf("v1alpha ListServices lists %q, not %s", listed, want)
		}
	}
}
