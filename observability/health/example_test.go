package health_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/storks-rpc/storks/observability/health"
	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// A consumer whose reference has no provider is not ready.
func Example() {
	reg := registry.NewInproc()
	defer reg.Close()
	cli, _ := storks.NewClient(storks.WithRegistry(reg))
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cli.Refer(ctx, testsvc.Service)

	h := health.New(health.WithClient(cli)).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	fmt.Println(rec.Code)
	fmt.Print(rec.Body.String())
	// Output:
	// 503
	// not ready
	// problem: reference obs.test.Echo has no live provider (0 known, 0 ejected)
	// reference obs.test.Echo: 0 known, 0 live, 0 ejected
	// client registry registry: reachable
}
