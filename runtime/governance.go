package runtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/storks-rpc/storks/internal/ctxutil"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// Governance on the consumer side: a reference registers a consumer record
// (registry.ConsumerKey), follows its service's rule document (package
// rule) if the registry keeps rules (registry.RuleStore), and applies the
// rules between the registry's provider list and the balancer:
//
//	registry list ──rule overrides──▶ effective list ──update──▶ endpoints
//	   (disabled left out, weights and tags replaced)      │
//	                                   filterLocked: live endpoints, grouped
//	                                   by tag, one picker per group
//
// and, per call, the rules' default timeout and fail mode. A new rule
// document, like a new provider list, builds a new state; calls in flight
// keep the state they started with, so applying rules touches none of them.

// WithApplication names the application in the consumer records of the
// client's references (default: the program's file name).
func WithApplication(name string) ClientOption {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "\r\n\t") {
		return reject("WithApplication", "application name %q must be 1 to 128 characters without tabs or newlines", name)
	}
	return clientFunc(func(c *clientConfig) { c.gov.application = name })
}

type withoutConsumerRecord struct{}

func (withoutConsumerRecord) applyClient(c *clientConfig) { c.gov.noConsumer = true }
func (withoutConsumerRecord) applyRefer(c *referConfig)   { c.gov.noConsumer = true }

// WithoutConsumerRecord stops references from registering a consumer
// record (see registry.ConsumerKey). By default every reference made
// through a registry that stores instances registers one, which `storks
// registry ls` and the console show beside the providers.
func WithoutConsumerRecord() PolicyOption { return withoutConsumerRecord{} }

type withoutRules struct{}

func (withoutRules) applyClient(c *clientConfig) { c.gov.noRules = true }
func (withoutRules) applyRefer(c *referConfig)   { c.gov.noRules = true }

// WithoutRules makes references ignore the governance rules stored in the
// registry (package rule): no overrides, tag routing only by the
// providers' registered tags, and the timeouts and fail modes of the code.
func WithoutRules() PolicyOption { return withoutRules{} }

// govConfig is the part of clientConfig and referConfig set above.
type govConfig struct {
	application string
	noConsumer  bool
	noRules     bool
}

type tagKey struct{}

// MetadataTag is the call metadata key that carries a call's routing tag
// (NewTagContext) to the provider, where it becomes the tag of the
// handler's context: the calls the handler makes with that context carry
// it on, so a tagged request stays on tagged providers along the whole
// chain of services (a canary of every service it crosses), as a deadline
// or a trace does. A tag that is not 1 to 63 letters, digits, '-', '_' or
// '.' is not taken up.
const MetadataTag = "storks-tag"

// NewTagContext returns a context whose calls (unary and streams) carry
// routing tag tag: they go to providers with that tag (their metadata
// "tag", or a rule's), and, if none is live, to untagged providers unless
// the service's tag routing rule forbids it. Calls without a tag never go
// to tagged providers unless the rule allows it. An empty tag removes the
// tag. The tag travels with each call as metadata MetadataTag, and
// downstream calls made with the handler's context keep it.
func NewTagContext(ctx context.Context, tag string) context.Context {
	md := OutgoingMetadata(ctx)
	if tag == "" {
		if _, ok := md[MetadataTag]; ok {
			md = maps.Clone(md)
			delete(md, MetadataTag)
			ctx = context.WithValue(ctx, outgoingKey{}, md)
		}
	} else if md[MetadataTag] != tag {
		ctx = NewOutgoingContext(ctx, Metadata{MetadataTag: tag})
	}
	return context.WithValue(ctx, tagKey{}, tag)
}

// incomingTag returns ctx with the routing tag a caller sent in md, if it
// sent a valid one.
func incomingTag(ctx context.Context, md Metadata) context.Context {
	if tag, ok := md[MetadataTag]; ok && rule.ValidateTag(tag) == nil {
		return NewTagContext(ctx, tag)
	}
	return ctx
}

// incomingGRPCTag is incomingTag for a gRPC call's context.
func incomingGRPCTag(ctx context.Context) context.Context {
	if tag := lastValue(ctx, MetadataTag); tag != "" && rule.ValidateTag(tag) == nil {
		return NewTagContext(ctx, tag)
	}
	return ctx
}

// TagFromContext returns the routing tag of ctx's calls, "" if none.
func TagFromContext(ctx context.Context) string {
	tag, _ := ctx.Value(tagKey{}).(string)
	return tag
}

// governance is a reference's part of it.
type governance struct {
	// mu serializes installs of a new provider list or rule document; it
	// is taken before Client.mu.
	mu    sync.Mutex
	raw   []registry.Instance // the registry's last list
	rules atomic.Pointer[rules]
	// tagBals are the balancers of the tag groups, created on first use
	// from the reference's factory. Guarded by Client.mu.
	tagBals map[string]Balancer
	factory BalancerFactory

	store    registry.RuleStore // nil: no rules
	consumer registry.Instance  // the consumer record; Key.Service "" if none
	regDone  chan struct{}      // closed when registerConsumer returns
}

// rules is a parsed rule document, ready for the call path.
type rules struct {
	set      *rule.Set
	service  policy
	methods  map[string]policy // short name → Methods over Policy
	fallback bool              // tag routing
	mixed    bool              // untagged calls may reach tagged providers
	strict   bool              // a tag routing rule with fallback off
}

type policy struct {
	timeout time.Duration
	fail    FailMode // kind failUnset: none
}

// compileRules prepares set for the call path; nil yields nil.
func compileRules(set *rule.Set) *rules {
	if set == nil {
		return nil
	}
	cr := &rules{set: set, fallback: true}
	if p, ok := set.PolicyFor(""); ok {
		cr.service = toPolicy(p)
	}
	if len(set.Methods) > 0 {
		cr.methods = make(map[string]policy, len(set.Methods))
		for m := range set.Methods {
			p, _ := set.PolicyFor(m)
			cr.methods[m] = toPolicy(p)
		}
	}
	if tr := set.TagRouting; tr != nil {
		cr.fallback, cr.mixed, cr.strict = tr.Fallback, tr.UntaggedToTagged, !tr.Fallback
	}
	return cr
}

func toPolicy(p rule.Policy) policy {
	out := policy{timeout: time.Duration(p.Timeout)}
	if p.FailMode != "" {
		fm, err := rule.ParseFailMode(p.FailMode) // validated by rule.Parse
		if err == nil {
			switch fm.Kind {
			case "failfast":
				out.fail = Failfast()
			case "failover":
				out.fail = Failover(fm.Retries)
			case "failtry":
				out.fail = Failtry(fm.Retries)
			case "failbackup":
				out.fail = Failbackup(fm.Delay)
			}
		}
	}
	return out
}

// policyFor returns the rules' policy for method (full name), the zero
// policy if the rules set none.
func (cr *rules) policyFor(r *Reference, method string) policy {
	if cr.methods != nil && strings.HasPrefix(method, r.prefix) {
		if p, ok := cr.methods[method[len(r.prefix):]]; ok {
			return p
		}
	}
	return cr.service
}

// callTimeout is the default timeout of a call of method: the rules',
// else the reference's.
func (r *Reference) callTimeout(method string) time.Duration {
	if cr := r.gov.rules.Load(); cr != nil {
		if p := cr.policyFor(r, method); p.timeout > 0 {
			return p.timeout
		}
	}
	return r.defaultTimeout
}

// failMode is the reference's fail mode for method: the rules', else the
// reference's.
func (r *Reference) failMode(method string) FailMode {
	if cr := r.gov.rules.Load(); cr != nil {
		if p := cr.policyFor(r, method); p.fail.kind != failUnset {
			return p.fail
		}
	}
	return r.fail
}

// install makes list, the registry's current provider list, the
// reference's, under the current rules.
func (r *Reference) install(list []registry.Instance) {
	r.gov.mu.Lock()
	defer r.gov.mu.Unlock()
	r.gov.raw = list
	r.applyLocked()
}

// setRules makes set (nil: no rules) the reference's rules and rebuilds
// the provider list under them.
func (r *Reference) setRules(set *rule.Set) {
	r.gov.mu.Lock()
	defer r.gov.mu.Unlock()
	r.gov.rules.Store(compileRules(set))
	r.applyLocked()
}

func (r *Reference) applyLocked() {
	var set *rule.Set
	if cr := r.gov.rules.Load(); cr != nil {
		set = cr.set
	}
	eff, disabled := set.Apply(r.gov.raw)
	r.update(eff, disabled)
}

// startGovernance starts following the rules of r's key and registering
// r's consumer record, as cfg says. ctx bounds the first read of the rules
// (Refer's context) unless wait (WithWaitForProvider: Refer does not wait
// for the registry); the goroutines live until wctx ends.
func (r *Reference) startGovernance(ctx, wctx context.Context, cfg *referConfig, wait bool) {
	c := r.cl
	reg := cfg.registry
	if s, ok := reg.(registry.RuleStore); ok && !cfg.gov.noRules && !c.cfg.gov.noRules {
		r.gov.store = s
		if w, err := s.WatchRule(wctx, r.key); err != nil {
			c.cfg.logger.Warn("storks: cannot watch the service's rules; calls follow the code's settings", "service", r.keyStr, "err", err)
		} else {
			// The current rules first, briefly, so that the first calls obey
			// them (unless Refer returns at once, WithWaitForProvider: then
			// the rules, like the providers, arrive in the background); the
			// goroutine catches up with any later change.
			if !wait {
				fctx, cancel := context.WithTimeout(ctx, time.Second)
				doc, err := nextDoc(fctx, wctx, w)
				cancel()
				if err == nil {
					r.applyDoc(doc)
				}
			}
			c.bg.Add(1)
			go r.followRules(wctx, w)
		}
	}
	if !cfg.gov.noConsumer && !c.cfg.gov.noConsumer && !isFixed(reg) {
		r.gov.consumer = consumerRecord(r.key, c.cfg.gov.application, c.started)
		r.gov.regDone = make(chan struct{})
		c.bg.Add(1)
		go r.registerConsumer(wctx, reg)
	}
}

// isFixed reports whether reg is a fixed address list (direct://,
// static://), which keeps no records.
func isFixed(reg registry.Registry) bool {
	_, lists := reg.(registry.Lister)
	_, rules := reg.(registry.RuleStore)
	return !lists && !rules
}

func nextDoc(ctx, wctx context.Context, w registry.RuleWatcher) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(wctx, cancel)
	defer stop()
	return w.Next(ctx)
}

// followRules applies every change of the rule document until the
// reference is closed.
func (r *Reference) followRules(ctx context.Context, w registry.RuleWatcher) {
	defer r.cl.bg.Done()
	defer w.Stop()
	log := r.cl.cfg.logger
	backoff := 100 * time.Millisecond
	failing := false
	for {
		doc, err := w.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return
			}
			if !failing {
				log.Warn("storks: watching the service's rules failed; keeping the last good rules", "service", r.keyStr, "err", err)
				failing = true
			}
			if !ctxutil.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if failing {
			log.Info("storks: watching the service's rules recovered", "service", r.keyStr)
			failing, backoff = false, 100*time.Millisecond
		}
		r.applyDoc(doc)
	}
}

// applyDoc parses doc and applies it; a malformed document is logged and
// ignored (the last good rules stay), a nil one removes every rule.
func (r *Reference) applyDoc(doc []byte) {
	if doc == nil {
		if r.gov.rules.Load() != nil {
			r.cl.cfg.logger.Info("storks: the service's rules were deleted; the code's settings apply again", "service", r.keyStr)
		}
		r.setRules(nil)
		return
	}
	set, err := rule.Parse(doc)
	if err != nil {
		r.cl.cfg.logger.Error("storks: ignoring malformed rules; the last good rules stay in force", "service", r.keyStr, "err", err)
		return
	}
	r.cl.cfg.logger.Info("storks: applying the service's rules", "service", r.keyStr,
		"overrides", len(set.Overrides), "methods", len(set.Methods), "policy", set.Policy != nil, "tagRouting", set.TagRouting != nil)
	r.setRules(set)
}

// consumerRecord is the registry record of a consumer of key. It carries
// what identifies the process, never a credential.
func consumerRecord(key ServiceKey, app string, started time.Time) registry.Instance {
	if app == "" {
		app = filepath.Base(os.Args[0])
	}
	id, err := newInstanceID()
	if err != nil {
		id = strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	host, _ := os.Hostname()
	md := map[string]string{
		registry.MetadataApplication: app,
		registry.MetadataPID:         strconv.Itoa(os.Getpid()),
		registry.MetadataStorks:      storksVersion(),
		registry.MetadataStartedAt:   strconv.FormatInt(started.UnixMilli(), 10),
	}
	if host != "" {
		md[registry.MetadataHostname] = host
	}
	return registry.Instance{
		Key:      registry.ConsumerKey(key),
		ID:       id,
		Addr:     net.JoinHostPort(outboundHost(), "0"),
		Weight:   0,
		Metadata: md,
	}
}

// storksVersion is the version of the storks module in this binary.
var storksVersion = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	const mod = "github.com/storks-rpc/storks"
	if bi.Main.Path == mod {
		return bi.Main.Version
	}
	if i := slices.IndexFunc(bi.Deps, func(m *debug.Module) bool { return m.Path == mod }); i >= 0 {
		return bi.Deps[i].Version
	}
	return "unknown"
})

// registerConsumer registers r's consumer record, retrying with backoff
// until it succeeds or ctx ends; the adapter keeps it alive from then on.
func (r *Reference) registerConsumer(ctx context.Context, reg registry.Registry) {
	defer r.cl.bg.Done()
	defer close(r.gov.regDone)
	backoff := 200 * time.Millisecond
	for noted := false; ; {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := reg.Register(rctx, r.gov.consumer)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
			return
		}
		var ie *registry.InputError
		if errors.As(err, &ie) {
			r.cl.cfg.logger.Warn("storks: the registry refused the consumer record", "service", r.keyStr, "err", err)
			return
		}
		if !noted {
			r.cl.cfg.logger.Warn("storks: cannot register the consumer record yet; retrying", "service", r.keyStr, "err", err)
			noted = true
		}
		if !ctxutil.Sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// deregisterConsumer removes r's consumer record once registerConsumer
// has returned (Close cancelled it first), so that a registration still
// in flight cannot outlive the deregistration.
func (r *Reference) deregisterConsumer(reg registry.Registry) {
	if r.gov.regDone == nil {
		return
	}
	<-r.gov.regDone
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := reg.Deregister(ctx, r.gov.consumer); err != nil && !errors.Is(err, registry.ErrClosed) {
		r.cl.cfg.logger.Warn("storks: cannot deregister the consumer record; the registry drops it when its lease or check expires", "service", r.keyStr, "err", err)
	}
}

// tagRoutes is how a state routes calls when tags are in play: one group
// of endpoints, with its own picker, per tag, and the group of untagged
// calls.
type tagRoutes struct {
	groups   map[string]route
	untagged route // picker nil: no provider for untagged calls
	fallback bool
	ntagged  int // tagged providers, for errors
}

// route is a group of endpoints and the picker built for its live ones.
type route struct {
	picker    Picker
	live, all []*Endpoint
}

func endpointTag(e *Endpoint) string { return e.inst.Metadata[registry.MetadataTag] }

// buildRoutesLocked sets st.picker, and st.tags when a provider has a tag
// or the rules make tags strict. Client.mu must be held.
func (r *Reference) buildRoutesLocked(st *refState) {
	cr := r.gov.rules.Load()
	tagged := slices.ContainsFunc(st.ends, func(e *Endpoint) bool { return endpointTag(e) != "" })
	if !tagged && (cr == nil || !cr.strict) {
		if len(st.live) > 0 {
			st.picker = r.balancer.Build(st.live)
		}
		return
	}
	tr := &tagRoutes{groups: map[string]route{}, fallback: true}
	mixed := false
	if cr != nil {
		tr.fallback, mixed = cr.fallback, cr.mixed
	}
	all := map[string][]*Endpoint{}
	live := map[string][]*Endpoint{}
	for _, e := range st.ends {
		all[endpointTag(e)] = append(all[endpointTag(e)], e)
	}
	for _, e := range st.live {
		live[endpointTag(e)] = append(live[endpointTag(e)], e)
	}
	for tag, ends := range all {
		if tag == "" {
			continue
		}
		tr.ntagged += len(ends)
		lv := live[tag]
		if len(lv) == 0 {
			lv = ends // every one ejected: all of them rather than none
		}
		tr.groups[tag] = route{picker: r.tagBalancerLocked(tag).Build(lv), live: lv, all: ends}
	}
	if mixed {
		tr.untagged = route{live: st.live, all: st.ends}
	} else if u := all[""]; len(u) > 0 {
		lv := live[""]
		if len(lv) == 0 {
			lv = u
		}
		tr.untagged = route{live: lv, all: u}
	}
	if len(tr.untagged.live) > 0 {
		tr.untagged.picker = r.balancer.Build(tr.untagged.live)
	}
	st.picker, st.tags = tr.untagged.picker, tr
}

// tagBalancerLocked returns the balancer of tag's group. Client.mu must be
// held.
func (r *Reference) tagBalancerLocked(tag string) Balancer {
	b := r.gov.tagBals[tag]
	if b == nil {
		if r.gov.tagBals == nil {
			r.gov.tagBals = map[string]Balancer{}
		}
		if r.gov.factory != nil {
			b = r.gov.factory()
		}
		if isNilValue(b) {
			b = RoundRobin()()
		}
		r.gov.tagBals[tag] = b
	}
	return b
}

// routeOf returns the group of endpoints a call with ctx goes to.
func (r *Reference) routeOf(ctx context.Context, st *refState) (route, error) {
	tr := st.tags
	if tr == nil {
		return route{picker: st.picker, live: st.live, all: st.ends}, nil
	}
	tag := TagFromContext(ctx)
	if tag != "" {
		if g, ok := tr.groups[tag]; ok {
			return g, nil
		}
		if !tr.fallback {
			return route{}, wrapError(CodeUnavailable, ErrNoProvider,
				"no provider for %s has tag %q (%s; the tag routing rule has fallback off)", r.keyStr, tag, r.tagSummary(tr))
		}
	}
	if tr.untagged.picker == nil {
		what := "untagged calls"
		if tag != "" {
			what = fmt.Sprintf("calls tagged %q (no provider has the tag)", tag)
		}
		return route{}, wrapError(CodeUnavailable, ErrNoProvider,
			"no provider for %s takes %s: %s, and untagged calls reach tagged providers only if the tag routing rule sets untaggedToTagged", r.keyStr, what, r.tagSummary(tr))
	}
	return tr.untagged, nil
}

func (r *Reference) tagSummary(tr *tagRoutes) string {
	tags := make([]string, 0, len(tr.groups))
	for t := range tr.groups {
		tags = append(tags, strconv.Quote(t))
	}
	slices.Sort(tags)
	if len(tags) == 0 {
		return "no provider is tagged"
	}
	return fmt.Sprintf("%s tagged %s", plural(tr.ntagged, "provider"), strings.Join(tags, ", "))
}
