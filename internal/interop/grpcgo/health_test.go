package grpcgo

import (
	"testing"
	"time"

	echov1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/echo/v1"
	greeterv1 "github.com/storks-rpc/storks/internal/interop/grpcgo/pb/greeter/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

var (
	greeterName = greeterv1.Greeter_ServiceDesc.ServiceName
	echoName    = echov1.Echo_ServiceDesc.ServiceName
)

// grpc.health.v1 Check answers SERVING for the whole server ("") and for
// each exported service by its proto name, and NOT_FOUND for a service the
// provider does not export.
func TestHealthCheck(t *testing.T) {
	p := startProvider(t, "inproc://", "health")
	h := healthpb.NewHealthClient(dial(t, p.addr))
	for _, svc := range []string{"", greeterName, echoName} {
		res, err := h.Check(timeout(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Errorf("Check(%q): %v", svc, err)
			continue
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", svc, res.GetStatus())
		}
	}
	_, err := h.Check(timeout(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: "no.such.v1.Service"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("Check(\"no.such.v1.Service\"): %v, want code NotFound", err)
	}
}

// A provider that gets SIGTERM shuts down gracefully (deregister, wait
// -shutdown-wait, drain): health Watch streams, of a service and of the
// whole server, see SERVING and then NOT_SERVING from the start of the
// shutdown, while the provider still runs and still serves calls; then the
// watches end and the provider exits cleanly, open watches
// notwithstanding.
func TestHealthWatchShutdown(t *testing.T) {
	const wait = 3 * time.Second
	p := startProvider(t, "inproc://", "watched", "-shutdown-wait", wait.String())
	cc := dial(t, p.addr)
	h := healthpb.NewHealthClient(cc)
	ctx := timeout(t, 60*time.Second)

	watches := map[string]grpc.ServerStreamingClient[healthpb.HealthCheckResponse]{}
	for _, svc := range []string{greeterName, ""} {
		w, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("Watch(%q): %v", svc, err)
		}
		res, err := w.Recv()
		if err != nil {
			t.Fatalf("Watch(%q): first Recv: %v", svc, err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Watch(%q): first status %v, want SERVING", svc, res.GetStatus())
		}
		watches[svc] = w
	}

	termed := p.terminate(t)
	for svc, w := range watches {
		res, err := w.Recv()
		if err != nil {
			t.Fatalf("Watch(%q): Recv after SIGTERM: %v, want a NOT_SERVING status", svc, err)
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch(%q): status %v after SIGTERM, want NOT_SERVING", svc, res.GetStatus())
		}
		if p.hasExited() {
			t.Fatalf("Watch(%q): NOT_SERVING came only after the provider exited", svc)
		}
		t.Logf("Watch(%q): NOT_SERVING %v after SIGTERM", svc, time.Since(termed).Round(time.Millisecond))
	}
	if took := time.Since(termed); took > wait/2 {
		t.Fatalf("the watches saw NOT_SERVING only %v after SIGTERM; the test needs it well within -shutdown-wait %v", took, wait)
	}

	// Within -shutdown-wait calls are still served, and Check agrees with
	// Watch.
	res, err := h.Check(timeout(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: echoName})
	if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("Check(%q) during the shutdown wait: %v, %v; want NOT_SERVING", echoName, res, err)
	}
	if _, err := greeterv1.NewGreeterClient(cc).SayHello(timeout(t, 10*time.Second), &greeterv1.HelloRequest{Name: "late"}); err != nil {
		t.Errorf("SayHello during the shutdown wait: %v", err)
	}
	if time.Since(termed) >= wait {
		t.Fatalf("the checks during the shutdown wait took until %v after SIGTERM, past -shutdown-wait %v", time.Since(termed), wait)
	}

	// The watches end (the provider closes their connection); they do not
	// hold up the shutdown.
	for svc, w := range watches {
		for {
			res, err := w.Recv()
			if err != nil {
				t.Logf("Watch(%q) ended %v after SIGTERM: %v", svc, time.Since(termed).Round(time.Millisecond), err)
				break
			}
			if res.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Errorf("Watch(%q): status %v after NOT_SERVING", svc, res.GetStatus())
			}
		}
	}
	p.waitExit(t, wait+20*time.Second)
	t.Logf("provider exited %v after SIGTERM", time.Since(termed).Round(time.Millisecond))
}
