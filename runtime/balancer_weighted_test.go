package runtime_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
	storks "github.com/storks-rpc/storks/runtime"
)

// TestWeightedZeroEndToEnd: through a real Reference and registry, a
// provider exported WithWeight(0) gets no call while the two others
// (exported without WithWeight, so registered at DefaultWeight) share
// them; each registration carries its registration time.
func TestWeightedZeroEndToEnd(t *testing.T) {
	for _, bal := range []struct {
		name string
		f    storks.BalancerFactory
	}{{"WeightedRoundRobin", storks.WeightedRoundRobin()}, {"WeightedRandom", storks.WeightedRandom(storks.WithWarmUp(time.Second))}} {
		t.Run(bal.name, func(t *testing.T) {
			reg := newRegistry(t)
			before := time.Now().Add(-time.Second)
			impls := []*echoImpl{{name: "a"}, {name: "b"}, {name: "zero"}}
			startProvider(t, reg, impls[0], nil)
			startProvider(t, reg, impls[1], nil)
			startProvider(t, reg, impls[2], nil, storks.WithWeight(0))
			list, err := reg.Discover(context.Background(), storks.ServiceKey{Service: echoService})
			if err != nil || len(list) != 3 {
				t.Fatalf("Discover = %v, %v", list, err)
			}
			zeros := 0
			for _, in := range list {
				switch in.Weight {
				case 0:
					zeros++
				case registry.DefaultWeight:
				default:
					t.Errorf("registered weight %d, want 0 or %d", in.Weight, registry.DefaultWeight)
				}
				ms, err := strconv.ParseInt(in.Metadata[registry.MetadataRegisteredAt], 10, 64)
				if err != nil || time.UnixMilli(ms).Before(before) || time.UnixMilli(ms).After(time.Now().Add(time.Second)) {
					t.Errorf("registered_at = %q, want the Unix ms of the registration", in.Metadata[registry.MetadataRegisteredAt])
				}
			}
			if zeros != 1 {
				t.Errorf("%d instances of weight 0, want 1", zeros)
			}
			_, ref := refer(t, reg, nil, storks.WithBalancer(bal.f))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			waitFor(t, func() bool { return len(ref.Providers()) == 3 })
			for i := range 400 {
				if _, err := callEcho(ctx, ref, strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			if n := impls[2].calls.Load(); n != 0 {
				t.Errorf("the weight-0 provider got %d of 400 calls", n)
			}
			if a, b := impls[0].calls.Load(), impls[1].calls.Load(); a+b != 400 || a < 100 || b < 100 {
				t.Errorf("the default-weight providers got %d and %d of 400 calls", a, b)
			}
		})
	}
}

// TestWeightedAllZeroEndToEnd: if every provider has weight 0 they still
// answer, equally.
func TestWeightedAllZeroEndToEnd(t *testing.T) {
	reg := newRegistry(t)
	impls := []*echoImpl{{name: "a"}, {name: "b"}}
	for _, impl := range impls {
		startProvider(t, reg, impl, nil, storks.WithWeight(0))
	}
	_, ref := refer(t, reg, nil, storks.WithBalancer(storks.WeightedRoundRobin()))
	waitFor(t, func() bool { return len(ref.Providers()) == 2 })
	for i := range 100 {
		if _, err := callEcho(context.Background(), ref, strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := impls[0].calls.Load(), impls[1].calls.Load(); a != 50 || b != 50 {
		t.Errorf("all weight 0: the providers got %d and %d of 100 calls, want 50 each", a, b)
	}
}

// TestExportRegisteredAt: Exporter.Instance shows the registration time
// once registered, the same as the registry holds, and a user's own
// registered_at metadata is overridden.
func TestExportRegisteredAt(t *testing.T) {
	reg := newRegistry(t)
	before := time.Now().Add(-time.Second).UnixMilli()
	srv := storks.NewServer(storks.WithRegistry(reg), storks.WithShutdownWait(50*time.Millisecond))
	defer srv.Close()
	ex, err := srv.Export(&echoDesc, &echoImpl{}, storks.WithMetadata(map[string]string{registry.MetadataRegisteredAt: "1"}))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := ex.Instance().Metadata[registry.MetadataRegisteredAt]; ok {
		t.Errorf("before registration Instance has %s = %q", registry.MetadataRegisteredAt, v)
	}
	l := listen(t)
	go srv.Serve(l)
	waitFor(t, func() bool { return ex.State() == storks.ExportRegistered })
	v := ex.Instance().Metadata[registry.MetadataRegisteredAt]
	if ms, err := strconv.ParseInt(v, 10, 64); err != nil || ms < before || ms > time.Now().UnixMilli() {
		t.Fatalf("registered_at = %q, want the Unix ms of the registration", v)
	}
	list, _ := reg.Discover(context.Background(), storks.ServiceKey{Service: echoService})
	if len(list) != 1 || list[0].Metadata[registry.MetadataRegisteredAt] != v || list[0].Weight != registry.DefaultWeight {
		t.Errorf("registered %+v, want registered_at %s and weight %d", list, v, registry.DefaultWeight)
	}
}
