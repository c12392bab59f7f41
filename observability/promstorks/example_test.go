package promstorks_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"strings"

	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/observability/otelstorks"
	"github.com/storks-rpc/storks/observability/promstorks"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// A provider whose calls are counted and scraped.
func Example() {
	m, _ := promstorks.New()
	srv := storks.NewServer(storks.WithStatsHandler(otelstorks.NewServerHandler(otelstorks.WithMeterProvider(m.MeterProvider()))))
	srv.Export(&testsvc.Desc, &testsvc.Echo{})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.Close()

	reg, _ := registry.NewStatic(lis.Addr().String())
	cli, _ := storks.NewClient(storks.WithRegistry(reg))
	defer cli.Close()
	ref, _ := cli.Refer(context.Background(), testsvc.Service, storks.WithRemote())
	testsvc.Call(context.Background(), ref, "x")
	srv.Close() // the server's call has ended

	hs := httptest.NewServer(m.Handler())
	defer hs.Close()
	resp, _ := hs.Client().Get(hs.URL)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "# TYPE rpc_") || strings.HasPrefix(l, "rpc_server_call_duration_seconds_count") {
			fmt.Println(l[:strings.IndexAny(l+"{", "{")])
		}
	}
	// Output:
	// # TYPE rpc_server_call_duration_seconds histogram
	// rpc_server_call_duration_seconds_count
}
