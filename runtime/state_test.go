package runtime_test

import (
	"context"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
)

// ProviderState counts a reference's providers known, live and ejected.
func TestProviderStateCountsEjected(t *testing.T) {
	dead := closedAddr(t)
	b, c := startFake(t, "b", fakeAnswer), startFake(t, "c", fakeAnswer)
	cli, ref := referAddrs(t, []string{dead, b.addr(), c.addr()},
		[]storks.ClientOption{storks.WithEjection(storks.EjectionPolicy{ConsecutiveFailures: 3, BaseBackoff: time.Hour})})
	for i := range 30 {
		if _, err := callEcho(withTimeout(t, 5*time.Second), ref, "x"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := cli.ProviderState()
	if len(got) != 1 || got[0].Key != ref.Key() || got[0].Known != 3 || got[0].Live != 2 || got[0].Ejected != 1 {
		t.Fatalf("ProviderState = %+v, want 3 known, 2 live, 1 ejected of %v", got, ref.Key())
	}
	ref.Close()
	if got := cli.ProviderState(); len(got) != 0 {
		t.Fatalf("ProviderState after Close = %+v", got)
	}
}

// Registrations reports each export with its state and its last
// registry write, and CheckRegistry whether the registry answers.
func TestRegistrationsAndRegistryCheck(t *testing.T) {
	reg := newRegistry(t)
	srv, _ := startProvider(t, reg, &echoImpl{}, nil, storks.WithVersion("1"))
	got := srv.Registrations()
	if len(got) != 1 || got[0].Key.Version != "1" || got[0].State != storks.ExportRegistered || !got[0].Registered ||
		got[0].LastWrite.IsZero() || time.Since(got[0].LastWrite) > time.Minute || got[0].Err != nil {
		t.Fatalf("Registrations = %+v", got)
	}
	st, ok := srv.CheckRegistry(context.Background(), time.Second, time.Hour)
	if !ok || !st.Reachable || st.Checked.IsZero() || st.LastReachable.IsZero() {
		t.Fatalf("CheckRegistry = %+v, %v", st, ok)
	}
	// Within minAge the result is reused.
	if again, _ := srv.CheckRegistry(context.Background(), time.Second, time.Hour); !again.Checked.Equal(st.Checked) {
		t.Fatalf("a second check within minAge ran again: %v then %v", st.Checked, again.Checked)
	}
	bare := storks.NewServer()
	defer bare.Close()
	if _, ok := bare.CheckRegistry(context.Background(), time.Second, 0); ok {
		t.Fatal("CheckRegistry of a server without a registry said ok")
	}
}
