package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/storks-rpc/storks/observability/health"
	"github.com/storks-rpc/storks/observability/internal/testsvc"
	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

func probe(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	return rec.Code, rec.Body.String()
}

// TestHandlerFollowsProvidersAndRegistrations: a consumer is not ready
// while its reference has no provider, a provider while its export is not
// registered (delayed here), unless told otherwise.
func TestHandlerFollowsProvidersAndRegistrations(t *testing.T) {
	reg := registry.NewInproc()
	defer reg.Close()
	cli, err := storks.NewClient(storks.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Refer(ctx, testsvc.Service, storks.WithVersion("2"), storks.WithRemote()); err != nil {
		t.Fatal(err)
	}
	consumer := health.New(health.WithClient(cli))
	if code, body := probe(t, consumer.Handler()); code != 503 || !strings.Contains(body, "reference obs.test.Echo:2 has no live provider (0 known, 0 ejected)") {
		t.Fatalf("no provider: %d %s", code, body)
	}
	if code, _ := probe(t, consumer.Handler(health.AllowNoProvider())); code != 200 {
		t.Fatalf("no provider, AllowNoProvider: %d", code)
	}

	srv := testsvc.Start(t, &testsvc.Echo{}, []storks.ServerOption{storks.WithRegistry(reg)}, storks.WithDelay(time.Hour))
	provider := health.New(health.WithServer(srv))
	if code, body := probe(t, provider.Handler()); code != 503 || !strings.Contains(body, "export obs.test.Echo is pending") {
		t.Fatalf("delayed export: %d %s", code, body)
	}
	if code, _ := probe(t, provider.Handler(health.AllowUnregistered())); code != 200 {
		t.Fatalf("delayed export, AllowUnregistered: %d", code)
	}
	if _, err := srv.Export(&testsvc.Desc, &testsvc.Echo{}, storks.WithVersion("2")); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitFor(t, func() bool {
		code, _ := probe(t, consumer.Handler())
		return code == 200
	})
	r := provider.Check(ctx)
	if len(r.Exports) != 2 || len(r.Registries) != 1 || !r.Registries[0].Reachable {
		t.Fatalf("report %+v", r)
	}
	var registered storks.ExportStatus
	for _, ex := range r.Exports {
		if ex.Key.Version == "2" {
			registered = ex.ExportStatus
		}
	}
	if !registered.Registered || registered.LastWrite.IsZero() || time.Since(registered.LastWrite) > time.Minute {
		t.Fatalf("the registered export: %+v", registered)
	}
	refs := consumer.Check(ctx).References
	if len(refs) != 1 || refs[0].Known != 1 || refs[0].Live != 1 || refs[0].Ejected != 0 {
		t.Fatalf("references %+v", refs)
	}
}
