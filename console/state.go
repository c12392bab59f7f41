package console

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
	storks "github.com/storks-rpc/storks/runtime"
)

// sample is one published load of a provider.
type sample struct {
	at       time.Time
	cps      float64
	inFlight int
	cpu      float64 // -1: not measured
}

// svcState is what the console knows of one service key.
type svcState struct {
	key       registry.ServiceKey
	providers []registry.Instance
	consumers []registry.Instance
	ruleDoc   []byte
	rules     *rule.Set // nil: no document, or an invalid one (ruleErr)
	ruleErr   error
	cancel    context.CancelFunc
	// loads holds the load samples of each provider, by instance ID.
	loads   map[string][]sample
	lastRaw map[string]string
}

// state is the console's view of the registry, fed by the watch loop.
type state struct {
	mu       sync.Mutex
	services map[registry.ServiceKey]*svcState
	listed   bool      // Services has answered at least once
	err      error     // the last registry error, nil once it answers again
	errSince time.Time // when err started
	lastOK   time.Time // when the registry last answered
	changed  chan struct{}
}

func newState() *state {
	return &state{services: map[registry.ServiceKey]*svcState{}, changed: make(chan struct{})}
}

// notifyLocked wakes every page waiting for a change.
func (s *state) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait returns a channel closed at the next change.
func (s *state) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// run is the background loop: it lists the services every c.refresh and
// follows each one's watches, until ctx ends.
func (c *Console) run(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.Refresh)
	defer t.Stop()
	for {
		c.refresh(ctx)
		select {
		case <-ctx.Done():
			c.st.mu.Lock()
			for _, s := range c.st.services {
				s.cancel()
			}
			c.st.mu.Unlock()
			return
		case <-t.C:
		case <-c.kick:
		}
	}
}

// refresh lists the service keys (those with providers or consumers, and
// those with rules) and starts or stops their watches.
func (c *Console) refresh(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	keys, err := c.listKeys(lctx)
	if ctx.Err() != nil {
		return
	}
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if err != nil {
		c.setErrLocked(err)
		return
	}
	now := c.opts.Now()
	if c.st.err != nil || !c.st.listed {
		c.st.err = nil
		c.st.listed = true
		c.st.notifyLocked()
	}
	c.st.lastOK = now
	want := map[registry.ServiceKey]bool{}
	for _, k := range keys {
		want[k] = true
	}
	changed := false
	for k := range want {
		if _, ok := c.st.services[k]; ok {
			continue
		}
		wctx, wcancel := context.WithCancel(ctx)
		s := &svcState{key: k, cancel: wcancel, loads: map[string][]sample{}, lastRaw: map[string]string{}}
		c.st.services[k] = s
		changed = true
		c.wg.Add(2)
		go c.watchInstances(wctx, s, false)
		go c.watchInstances(wctx, s, true)
		if c.rules != nil {
			c.wg.Add(1)
			go c.watchRule(wctx, s)
		}
	}
	for k, s := range c.st.services {
		if !want[k] {
			s.cancel()
			delete(c.st.services, k)
			changed = true
		}
	}
	if changed {
		c.st.notifyLocked()
	}
}

// listKeys returns the provider keys the registry knows of: those with
// providers, those whose consumers registered, and those with rules.
func (c *Console) listKeys(ctx context.Context) ([]registry.ServiceKey, error) {
	lister, ok := c.reg.(registry.Lister)
	if !ok {
		return nil, errors.New("this registry cannot list its services (use etcd, consul, zookeeper or inproc)")
	}
	all, err := lister.Services(ctx)
	if err != nil {
		return nil, err
	}
	set := map[registry.ServiceKey]bool{}
	for _, k := range all {
		set[k.ProviderKey()] = true
	}
	if c.rules != nil {
		// Keys with rules but neither providers nor consumers. A registry
		// that lists services but refuses to list rules (an ACL, say)
		// still shows every service that has instances.
		if rk, err := c.rules.Rules(ctx); err == nil {
			for _, k := range rk {
				set[k] = true
			}
		}
	}
	keys := slices.Collect(maps.Keys(set))
	registry.SortKeys(keys)
	return keys, nil
}

func (c *Console) setErrLocked(err error) {
	if c.st.err == nil {
		c.st.errSince = c.opts.Now()
	}
	changed := c.st.err == nil || c.st.err.Error() != err.Error()
	c.st.err = err
	if changed {
		c.st.notifyLocked()
	}
}

// setErr records a registry error (a failed watch); the next successful
// listing clears it.
func (c *Console) setErr(err error) {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	c.setErrLocked(err)
}

// backoff waits d or until ctx ends, and reports whether ctx is still live.
func backoff(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// watchInstances follows the providers (or the consumers) of s.key.
func (c *Console) watchInstances(ctx context.Context, s *svcState, consumers bool) {
	defer c.wg.Done()
	key := s.key
	if consumers {
		key = registry.ConsumerKey(key)
	}
	for ctx.Err() == nil {
		w, err := c.reg.Watch(ctx, key)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return
			}
			c.setErr(fmt.Errorf("watching %s: %w", key, err))
			if !backoff(ctx, c.opts.Refresh) {
				return
			}
			continue
		}
		for {
			list, err := w.Next(ctx)
			if err != nil {
				w.Stop()
				if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
					return
				}
				c.setErr(fmt.Errorf("watching %s: %w", key, err))
				break
			}
			c.setInstances(s, consumers, list)
		}
		if !backoff(ctx, c.opts.Refresh) {
			return
		}
	}
}

func (c *Console) setInstances(s *svcState, consumers bool, list []registry.Instance) {
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	if consumers {
		s.consumers = list
	} else {
		s.providers = list
		c.sampleLocked(s)
	}
	c.st.notifyLocked()
}

// sampleLocked records the published load of each provider of s that
// changed, and forgets the samples older than the history window.
func (c *Console) sampleLocked(s *svcState) {
	now := c.opts.Now()
	live := map[string]bool{}
	for _, in := range s.providers {
		live[in.ID] = true
		raw, ok := in.Metadata[registry.MetadataLoad]
		if !ok || raw == s.lastRaw[in.ID] {
			continue
		}
		s.lastRaw[in.ID] = raw
		l, ok := storks.ParseLoad(raw)
		if !ok {
			continue
		}
		s.loads[in.ID] = append(s.loads[in.ID], sample{at: now, cps: l.CallsPerSecond, inFlight: l.InFlight, cpu: l.CPU})
	}
	cutoff := now.Add(-c.opts.History)
	for id, ss := range s.loads {
		if !live[id] {
			delete(s.loads, id)
			delete(s.lastRaw, id)
			continue
		}
		i := 0
		for i < len(ss) && ss[i].at.Before(cutoff) {
			i++
		}
		if i > 0 {
			s.loads[id] = slices.Clone(ss[i:])
		}
		if n := len(s.loads[id]); n > maxSamples {
			s.loads[id] = slices.Clone(s.loads[id][n-maxSamples:])
		}
	}
}

// maxSamples bounds the load samples kept per provider.
const maxSamples = 600

// watchRule follows the rule document of s.key.
func (c *Console) watchRule(ctx context.Context, s *svcState) {
	defer c.wg.Done()
	for ctx.Err() == nil {
		w, err := c.rules.WatchRule(ctx, s.key)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
				return
			}
			c.setErr(fmt.Errorf("watching the rules of %s: %w", s.key, err))
			if !backoff(ctx, c.opts.Refresh) {
				return
			}
			continue
		}
		for {
			doc, err := w.Next(ctx)
			if err != nil {
				w.Stop()
				if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) {
					return
				}
				c.setErr(fmt.Errorf("watching the rules of %s: %w", s.key, err))
				break
			}
			c.setRule(s, doc)
		}
		if !backoff(ctx, c.opts.Refresh) {
			return
		}
	}
}

func (c *Console) setRule(s *svcState, doc []byte) {
	var set *rule.Set
	var perr error
	if doc != nil {
		set, perr = rule.Parse(doc)
	}
	c.st.mu.Lock()
	defer c.st.mu.Unlock()
	s.ruleDoc, s.rules, s.ruleErr = doc, set, perr
	c.st.notifyLocked()
}
