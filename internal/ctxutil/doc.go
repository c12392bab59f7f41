// Package ctxutil holds the small context helpers that the runtime and the
// registry adapters share, so that each is written, and fixed, once.
package ctxutil
