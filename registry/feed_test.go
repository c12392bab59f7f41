package registry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

func TestCheck(t *testing.T) {
	bad := &registry.InputError{Field: "service", Reason: "must not be empty"}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	var nilCtx context.Context
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		closed     bool
		validation error
		want       error
	}{
		{"ok", context.Background(), false, nil, nil},
		{"closed", canceled, true, bad, registry.ErrClosed},
		{"invalid", canceled, false, bad, bad},
		{"canceled", canceled, false, nil, context.Canceled},
	} {
		if err := registry.Check(tc.ctx, tc.closed, tc.validation); !errors.Is(err, tc.want) {
			t.Errorf("%s: Check = %v, want %v", tc.name, err, tc.want)
		}
	}
	var ie *registry.InputError
	if err := registry.Check(nilCtx, true, bad); !errors.As(err, &ie) || ie.Field != "context" {
		t.Errorf("Check with a nil context = %v, want an *InputError naming the context", err)
	}
}

func TestFeedFirstNextWaitsForPublish(t *testing.T) {
	f := registry.NewFeed(context.Background())
	defer f.Stop()
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if list, err := f.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first Next before any Publish = %v, %v; want it to wait", list, err)
	}
	got := make(chan []registry.Instance, 1)
	go func() {
		list, err := f.Next(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- list
	}()
	time.Sleep(10 * time.Millisecond)
	f.Publish(nil) // an empty list is a list
	if list := <-got; list == nil || len(list) != 0 {
		t.Errorf("first Next after Publish(nil) = %#v, want an empty list", list)
	}
}

func TestFeedCoalescesAndCopies(t *testing.T) {
	ctx := context.Background()
	key := registry.ServiceKey{Service: "s"}
	a := registry.Instance{Key: key, ID: "a", Addr: "h:1", Metadata: map[string]string{"k": "v"}}
	b := registry.Instance{Key: key, ID: "b", Addr: "h:2"}
	f := registry.NewFeed(ctx)
	defer f.Stop()
	first := []registry.Instance{a}
	f.Publish(first)
	list, err := f.Next(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("first Next = %v, %v", list, err)
	}
	list[0].Metadata["k"] = "changed"
	if first[0].Metadata["k"] != "v" {
		t.Error("Next returned the published list's metadata, not a copy")
	}
	f.Publish([]registry.Instance{a, b})
	f.Publish([]registry.Instance{a.Clone()}) // back to the list returned last
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if list, err := f.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next after changes that were undone = %v, %v; want it to wait", list, err)
	}
	f.Publish([]registry.Instance{a, b})
	f.Publish([]registry.Instance{b})
	if list, err := f.Next(ctx); err != nil || len(list) != 1 || list[0].ID != "b" {
		t.Errorf("Next after two changes = %v, %v; want only the latest list", list, err)
	}
}

func TestFeedEnd(t *testing.T) {
	ctx := context.Background()
	wctx, cancel := context.WithCancel(ctx)
	f := registry.NewFeed(wctx)
	f.Publish(nil)
	ended := make(chan struct{}, 2) // OnEnd runs in whichever End wins
	f.OnEnd(func() { ended <- struct{}{} })
	cancel()
	// Once cancel returned, Next reports the end of the Watch context.
	if _, err := f.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after the Watch context ended = %v, want context.Canceled", err)
	}
	f.Stop() // the first end wins
	f.End(errors.New("later"))
	if _, err := f.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after a later Stop = %v, want context.Canceled", err)
	}
	select {
	case <-f.Done():
	default:
		t.Error("Done is not closed after the feed ended")
	}
	<-ended
	select {
	case <-ended:
		t.Error("the OnEnd function ran twice")
	case <-time.After(10 * time.Millisecond):
	}
	late := false
	f.OnEnd(func() { late = true })
	if !late {
		t.Error("OnEnd on an ended feed did not run the function at once")
	}
	var nilCtx context.Context
	if _, err := f.Next(nilCtx); err == nil {
		t.Error("Next with a nil context: no error")
	}

	// A waiting Next returns the error of End.
	g := registry.NewFeed(ctx)
	g.Publish(nil)
	if _, err := g.Next(ctx); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := g.Next(ctx); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	g.End(nil)
	if err := <-errc; !errors.Is(err, registry.ErrClosed) {
		t.Errorf("waiting Next when End(nil) is called = %v, want ErrClosed", err)
	}
}

func TestFixedNilContext(t *testing.T) {
	r, err := registry.NewStatic("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var nilCtx context.Context
	key := registry.ServiceKey{Service: "s"}
	in := registry.Instance{Key: key, ID: "a", Addr: "127.0.0.1:1"}
	_, discoverErr := r.Discover(nilCtx, key)
	_, watchErr := r.Watch(nilCtx, key)
	for what, err := range map[string]error{
		"Register":   r.Register(nilCtx, in),
		"Deregister": r.Deregister(nilCtx, in),
		"Discover":   discoverErr,
		"Watch":      watchErr,
	} {
		var ie *registry.InputError
		if !errors.As(err, &ie) || ie.Field != "context" {
			t.Errorf("%s with a nil context = %v, want an *InputError naming the context", what, err)
		}
	}
}

func TestFeedFailingNamesTheCauseUntilTheFirstList(t *testing.T) {
	f := registry.NewFeed(context.Background())
	defer f.Stop()
	cause := errors.New("etcd at 127.0.0.1:1: connection refused")
	f.Failing(cause)
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := f.Next(short)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cause) {
		t.Fatalf("first Next of a failing feed = %v; want the deadline and the cause", err)
	}
	t.Logf("first Next: %v", err)
	f.Publish(nil)
	if _, err := f.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.Failing(cause) // after the first list, waiting for a change is not a failure
	short2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := f.Next(short2); err != context.DeadlineExceeded {
		t.Errorf("later Next of a failing feed = %v; want context.DeadlineExceeded alone", err)
	}
}

func TestFeedFailingNamesTheCauseWhenTheWatchContextEnds(t *testing.T) {
	wctx, cancel := context.WithCancel(context.Background())
	f := registry.NewFeed(wctx)
	cause := errors.New("zookeeper at 127.0.0.1:1: connection refused")
	f.Failing(cause)
	cancel()
	if _, err := f.Next(context.Background()); !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("Next after the end of the Watch context of a failing feed = %v; want context.Canceled and the cause", err)
	}
}

// A DocFeed made with a context that is done already ends at once with
// its error, without a race between its end and its making (the copy of
// Feed's lifecycle that DocFeed had set its AfterFunc unguarded).
func TestDocFeedOnADoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 200 {
		f := registry.NewDocFeed(ctx)
		<-f.Done()
		if _, err := f.Next(context.Background()); !errors.Is(err, context.Canceled) {
			t.Fatalf("Next of a feed whose context was done: %v", err)
		}
	}
}

func TestRuleDoc(t *testing.T) {
	if d := registry.RuleDoc(nil); d == nil || len(d) != 0 {
		t.Fatalf("RuleDoc(nil) = %#v, want an empty, non-nil document", d)
	}
	v := []byte("doc")
	d := registry.RuleDoc(v)
	v[0] = 'X'
	if string(d) != "doc" {
		t.Fatalf("RuleDoc kept the stored slice: %q", d)
	}
}
