// Package console is the web console of the storks command (storks
// console): an [http.Handler] that shows, from a [registry.Registry], the
// services it holds, their providers (address, weight, age, published load
// and a chart of it, disabled or tagged state) and consumers, and their
// rules; and, when it is given a write token, takes providers out of
// rotation, puts them back, changes their weight or tag, and adds, edits
// and deletes rules.
//
// # What it reads
//
// A background loop lists the services every Options.Refresh
// ([registry.Lister]) and, for each service key, follows three watches: its
// providers, its consumers ([registry.ConsumerKey]) and its rule document
// ([registry.RuleStore.WatchRule]). Each provider's published load
// ([registry.MetadataLoad], read with runtime.ParseLoad) is kept as a
// small ring of samples over Options.History, drawn as an SVG chart. The
// disabled, weight and tag state shown for a provider is
// rule.Set.EffectOn of the service's rules: what consumers apply.
//
// Pages update without a reload: each page holds a live region that the
// server re-renders and pushes as server-sent events (/events) whenever
// the registry changes. When the registry stops answering, the pages say
// so in a banner and keep showing the last known state.
//
// # What it writes
//
// Every write goes through package rule (rule.Update, rule.Save, the
// Set.Disable, Enable, SetWeight, SetTag and ClearTag shortcuts): the same
// code, validation and error messages as `storks rule` and
// `storks provider`.
//
// # Security
//
// Without Options.Token the console is read-only: it shows no action
// buttons and every write endpoint answers 403. With a token:
//
//   - writes are POST only;
//   - a write is authorised either by the token itself (the X-Storks-Token
//     header, or a "token" form field: for scripts), or by a session: the
//     browser logs in once by posting the token to /login (compared in
//     constant time), which sets an HttpOnly, SameSite=Strict session
//     cookie; every form then carries a CSRF token, the HMAC-SHA256, keyed
//     by the write token, of the session ID, which the write must echo;
//   - every write must come from the console's own origin: a request whose
//     Origin header is not the console's (scheme://host it was reached
//     at), or whose Sec-Fetch-Site is neither same-origin nor none, is
//     refused, whatever credentials it carries; a session write must carry
//     one of these headers (every current browser sends them);
//   - with Options.Hosts set (the storks command sets the loopback names
//     when it listens on loopback, the default), a request for any other
//     Host is refused, against DNS rebinding;
//   - every write is logged (log/slog) with the remote address, the
//     credential used, the action, the service key, the provider and the
//     result.
//
// The registry URL is shown only through registry.RedactURL, and registry
// errors are shown with any URL in them redacted, so credentials never
// reach a page.
package console
