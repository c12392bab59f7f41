package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/storks-rpc/storks/internal/ctxutil"
	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// Governance on the provider side. Consumers apply the rules (governance.go);
// a provider follows its service's rules too, for the clients that do not
// read them: gRPC clients. A provider that a rule disables reports its
// service NOT_SERVING on the gRPC health service, so that gRPC clients with
// health checking (grpc-go's round_robin with healthCheckConfig, Envoy,
// Kubernetes probes) stop sending it calls as Storks consumers do, and
// SERVING again when the rule goes. The provider does not rewrite its own
// registration: the registry keeps what the provider registered and the
// rule document says what the operator changed, one source of truth each.

// DisabledByRule reports whether a governance rule currently disables the
// export's provider (see package rule).
func (ex *Exporter) DisabledByRule() bool { return ex.ruleDisabled.Load() }

// startRuleWatch starts, once per export, following the rules of its
// service key, if the server's registry stores rules. The watch ends with
// the export's withdrawal.
func (s *Server) startRuleWatch(ex *Exporter) {
	store, ok := s.cfg.registry.(registry.RuleStore)
	if !ok {
		return
	}
	ex.mu.Lock()
	defer ex.mu.Unlock()
	r := ex.regLocked()
	if ex.ruleWatch || r.withdrawn || ex.removed {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.bg.Add(1)
	s.mu.Unlock()
	ex.ruleWatch = true
	go s.followExportRules(ex, r.ctx, store)
}

func (s *Server) followExportRules(ex *Exporter, ctx context.Context, store registry.RuleStore) {
	defer s.bg.Done()
	log := s.cfg.logger
	backoff := 100 * time.Millisecond
	var w registry.RuleWatcher
	defer func() {
		if w != nil {
			w.Stop()
		}
	}()
	var last *rule.Set
	for {
		var doc []byte
		var err error
		if w == nil {
			w, err = store.WatchRule(ctx, ex.exp.key)
		}
		if err == nil {
			doc, err = w.Next(ctx)
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, registry.ErrClosed) && s.isClosed() {
				return
			}
			if errors.Is(err, registry.ErrClosed) {
				w = nil // the watch ended: start another
			}
			if !ctxutil.Sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if doc == nil {
			last = nil
		} else if set, perr := rule.Parse(doc); perr == nil {
			last = set
		} else {
			log.Error("storks: ignoring malformed rules; the last good rules stay in force", "service", ex.exp.keyStr, "err", perr)
			continue
		}
		disabled := last.EffectOn(ex.Instance()).Disabled
		if ex.ruleDisabled.Swap(disabled) != disabled {
			if disabled {
				log.Warn("storks: a rule disables this provider: consumers send it no calls and gRPC health reports NOT_SERVING", "service", ex.exp.keyStr, "addr", s.Addr())
			} else {
				log.Info("storks: no rule disables this provider any more", "service", ex.exp.keyStr, "addr", s.Addr())
			}
			s.refreshHealth()
		}
	}
}

func (s *Server) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}
