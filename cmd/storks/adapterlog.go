package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
)

// adapterLog is the handler of the process's default slog logger, which the
// registry adapters log to (registry.Open gives them no other). It drops
// everything until a command turns it on: the one-shot commands (ls, call)
// report registry failures in their error, and the adapters' warnings about
// a registry that cannot be reached (Open logs one) would only repeat it.
// registry watch turns it on once it has its first list, so that an outage
// during the watch is reported.
var adapterLog = newGatedHandler(nil)

// gatedHandler passes records to its handler only while it is on.
type gatedHandler struct {
	h  slog.Handler
	on *atomic.Bool
}

// newGatedHandler returns a gated handler, off, that writes text to w (to
// nothing if w is nil).
func newGatedHandler(w io.Writer) *gatedHandler {
	if w == nil {
		w = io.Discard
	}
	return &gatedHandler{
		h: slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // a terminal shows when
			}
			return a
		}}),
		on: new(atomic.Bool),
	}
}

// setOn turns the handler on or off.
func (g *gatedHandler) setOn(on bool) { g.on.Store(on) }

func (g *gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return g.on.Load() && g.h.Enabled(ctx, l)
}

func (g *gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	if !g.on.Load() {
		return nil
	}
	return g.h.Handle(ctx, r)
}

func (g *gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &gatedHandler{h: g.h.WithAttrs(attrs), on: g.on}
}

func (g *gatedHandler) WithGroup(name string) slog.Handler {
	return &gatedHandler{h: g.h.WithGroup(name), on: g.on}
}
