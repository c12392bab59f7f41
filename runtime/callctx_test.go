package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// ctxKey is the type of the context key TestCallCtxCancel sets.
type ctxKey struct{}

func TestCallCtxCancel(t *testing.T) {
	c := newCallCtx(context.WithValue(context.Background(), ctxKey{}, "v"), 0)
	if _, ok := c.Deadline(); ok || c.Err() != nil || c.Value(ctxKey{}) != "v" {
		t.Fatal("fresh context: deadline, error or value wrong")
	}
	done := c.Done()
	derived, stop := context.WithTimeout(c, time.Hour)
	defer stop()
	fired := make(chan struct{})
	context.AfterFunc(c, func() { close(fired) })
	c.cancel(context.Canceled)
	c.cancel(context.DeadlineExceeded) // a second cancel changes nothing
	<-done
	<-fired
	<-derived.Done()
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(derived.Err(), context.Canceled) {
		t.Fatalf("errors: %v, derived %v", c.Err(), derived.Err())
	}
	select {
	case <-c.Done(): // asked for after the end: already closed
	default:
		t.Fatal("Done after cancel is not closed")
	}
}

func TestCallCtxDeadline(t *testing.T) {
	c := newCallCtx(context.Background(), 20*time.Millisecond)
	if dl, ok := c.Deadline(); !ok || time.Until(dl) > 20*time.Millisecond {
		t.Fatalf("deadline %v, %v", dl, ok)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("deadline never ended the context")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("err = %v", c.Err())
	}
}

func TestCallCtxAfterFuncStop(t *testing.T) {
	c := newCallCtx(context.Background(), 0)
	ran := make(chan struct{}, 1)
	stop := c.AfterFunc(func() { ran <- struct{}{} })
	if !stop() || stop() {
		t.Fatal("stop should report true once, then false")
	}
	c.cancel(context.Canceled)
	select {
	case <-ran:
		t.Fatal("a stopped AfterFunc ran")
	case <-time.After(50 * time.Millisecond):
	}
	// After the end, AfterFunc runs at once.
	c.AfterFunc(func() { ran <- struct{}{} })
	<-ran
}
