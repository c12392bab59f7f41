package registrytest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// DefaultSettle is how long the helpers wait for a change to become visible
// when they are given a zero timeout.
const DefaultSettle = 10 * time.Second

// runID makes the service names of one test binary unique, so that runs that
// share a long-lived server (or that crashed and left registrations behind)
// never see each other's instances.
var runID = func() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%08x", time.Now().UnixNano()&0xffffffff)
	}
	return hex.EncodeToString(b[:])
}()

var keySeq atomic.Uint64

// UniqueKey returns a service key that no other test of any test binary uses:
// "storkstest.<random>.<test name>.<n>", with the characters the name may not
// contain replaced. Version and group are empty.
func UniqueKey(t testing.TB) registry.ServiceKey {
	name := []byte(t.Name())
	for i, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			name[i] = '_'
		}
	}
	if len(name) > 120 {
		name = name[len(name)-120:]
	}
	return registry.ServiceKey{Service: fmt.Sprintf("storkstest.%s.%s.%d", runID, name, keySeq.Add(1))}
}

// Eventually calls cond until it returns nil, backing off from 5ms to 100ms
// between calls, and fails the test with the last error if that has not
// happened within timeout (DefaultSettle if zero). It must be called from the
// test's goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultSettle
	}
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %v", timeout, err)
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// WaitDiscover calls r.Discover(key) until want accepts the list and returns
// that list. It fails the test if Discover returns an error or if want has not
// accepted a list within timeout (DefaultSettle if zero).
func WaitDiscover(t testing.TB, r registry.Registry, key registry.ServiceKey, timeout time.Duration, want func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultSettle
	}
	var list []registry.Instance
	Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		list, err = r.Discover(ctx, key)
		if err != nil {
			return fmt.Errorf("Discover(%v): %w", key, err)
		}
		if !want(list) {
			return fmt.Errorf("Discover(%v) = %s, not the wanted list", key, Format(list))
		}
		return nil
	})
	return list
}

// WaitFor calls w.Next until want accepts the list and returns that list. It
// fails the test if Next returns an error or if want has not accepted a list
// within timeout (DefaultSettle if zero). It must be called from the test's
// goroutine.
func WaitFor(t testing.TB, w registry.Watcher, timeout time.Duration, want func([]registry.Instance) bool) []registry.Instance {
	t.Helper()
	if timeout <= 0 {
		timeout = DefaultSettle
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last []registry.Instance
	seen := false
	for {
		list, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if !seen {
					t.Fatalf("Watcher.Next returned no list within %v: %v", timeout, err)
				}
				t.Fatalf("the watch did not deliver the wanted list within %v; the last list was %s", timeout, Format(last))
			}
			t.Fatalf("Watcher.Next: %v", err)
		}
		if want(list) {
			return list
		}
		last, seen = list, true
	}
}

// HasIDs returns a predicate for WaitFor and WaitDiscover that accepts a list
// holding exactly the instances with the given IDs, in sorted order. HasIDs()
// accepts only the empty list.
func HasIDs(ids ...string) func([]registry.Instance) bool {
	want := slices.Sorted(slices.Values(ids))
	return func(list []registry.Instance) bool {
		return slices.Equal(IDs(list), want)
	}
}

// IDs returns the IDs of list, in order.
func IDs(list []registry.Instance) []string {
	ids := make([]string, len(list))
	for i, in := range list {
		ids[i] = in.ID
	}
	return ids
}

// SameInstance reports whether an instance read back from a registry equals
// the one that was registered: same key, ID, address, weight and metadata (a
// nil map may come back empty). Weight 0 must come back as 0, not as
// registry.DefaultWeight: it means "no traffic" to weighted balancers.
func SameInstance(got, want registry.Instance) bool {
	return got.Key == want.Key && got.ID == want.ID && got.Addr == want.Addr &&
		got.Weight == want.Weight && maps.Equal(got.Metadata, want.Metadata)
}

// Format renders a list of instances compactly for failure messages.
func Format(list []registry.Instance) string {
	if list == nil {
		return "[] (nil)"
	}
	var b strings.Builder
	b.WriteByte('[')
	for i, in := range list {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{key=%v id=%q addr=%q weight=%d", in.Key, in.ID, in.Addr, in.Weight)
		if len(in.Metadata) > 0 {
			keys := slices.Sorted(maps.Keys(in.Metadata))
			b.WriteString(" md={")
			for j, k := range keys {
				if j > 0 {
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%q:%q", k, in.Metadata[k])
			}
			b.WriteByte('}')
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String()
}
