package runtime

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/storks-rpc/storks/registry"
)

// Registration of exports in the server's registry. Once the server serves,
// each active export is registered by a goroutine of its own (a retrier,
// Dubbo's FailbackRegistry): its first attempt is awaited, briefly, by Serve
// or Export, and a failure is retried in the background with capped,
// jittered exponential backoff until it succeeds or the export is withdrawn
// (Unexport, Shutdown, Close). WithRegistrationRequired makes a single
// attempt instead, whose failure Serve and Export return. An Exporter's
// State says where it stands.
//
// Every Register and Deregister call of one export holds its ops slot, so
// that a withdrawal, which first cancels the attempt under way, deregisters
// only after the attempt has returned: an export withdrawn meanwhile is
// never left registered.

const (
	// registerBackoffMin and registerBackoffMax bound the wait between two
	// attempts, which doubles after each failure; each wait is drawn from
	// [d/2, d].
	registerBackoffMin = 250 * time.Millisecond
	registerBackoffMax = 10 * time.Second
	// registerAttemptTimeout bounds one attempt of a retrier.
	registerAttemptTimeout = 5 * time.Second
	// firstAttemptWait is how long Serve and Export wait for the first
	// attempts before they go on, leaving them to the retriers.
	firstAttemptWait = time.Second
	// cleanupTimeout bounds the Deregister call that removes an instance
	// whose registration attempt was abandoned by a withdrawal.
	cleanupTimeout = time.Second
)

// ExportState is where an export stands; see Exporter.State.
type ExportState uint8

const (
	// ExportPending: the export does not take remote calls yet: it is
	// delayed (WithDelay), or the server is not serving.
	ExportPending ExportState = iota
	// ExportRegistering: the export takes calls but is not registered:
	// its registration is under way or, after a failure, retried in the
	// background (Exporter.Err returns the last failure). With
	// WithRegistrationRequired a failure is not retried: Serve or Export
	// returned it.
	ExportRegistering
	// ExportRegistered: the export takes calls and is registered.
	ExportRegistered
	// ExportNoRegistry: the export takes calls, and the server has no
	// registry (consumers reach it by address, or in-process).
	ExportNoRegistry
	// ExportRemoved: the export was unexported, or withdrawn from the
	// registry by Shutdown or Close.
	ExportRemoved
)

var exportStateNames = [...]string{"pending", "registering", "registered", "no registry", "removed"}

// String returns the state's name: "pending", "registering", "registered",
// "no registry" or "removed".
func (s ExportState) String() string {
	if int(s) < len(exportStateNames) {
		return exportStateNames[s]
	}
	return "ExportState(" + strconv.Itoa(int(s)) + ")"
}

// exportRegistration is the registration of an Exporter, guarded by its
// mu but for ops.
type exportRegistration struct {
	ctx    context.Context // canceled by the withdrawal; nil until first needed
	cancel context.CancelFunc
	// ops is a 1-slot semaphore held across every Register and Deregister
	// call of the export. It is taken with a context, unlike a mutex.
	ops       chan struct{}
	withdrawn bool  // Unexport, Shutdown or Close began
	running   bool  // a retrier runs
	err       error // the last failed attempt, while not registered
	// uncertain: an attempt was abandoned by the withdrawal, so the
	// registry may hold the instance although Register did not say so.
	uncertain bool
	// inst is the entry last written to the registry, which a published
	// load (loadreport.go) writes again with the load replaced; load is
	// that load, if loadSet.
	inst    registry.Instance
	load    Load
	loadSet bool
}

// WithRegistrationRequired makes a failed registration fail the server
// instead of being retried in the background: Serve (and Export, once the
// server serves) makes one attempt, bounded by 10 s, and if it fails Serve
// closes its listener and returns the error (Export unexports and returns
// it). It is for providers that should rather exit than serve unregistered.
// A delayed export (WithDelay) whose registration fails is logged and left
// unregistered.
func WithRegistrationRequired() ServerOption {
	return serverFunc(func(c *serverConfig) { c.registrationRequired = true })
}

// State returns where the export stands: ExportPending until it takes
// remote calls, ExportRegistering until its registration succeeds,
// ExportRegistered, ExportNoRegistry if the server has no registry, and
// ExportRemoved after Unexport, Shutdown or Close.
func (ex *Exporter) State() ExportState {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	switch {
	case ex.removed || ex.reg.withdrawn && !ex.registered:
		return ExportRemoved
	case ex.registered:
		return ExportRegistered
	case !ex.active:
		return ExportPending
	}
	s := ex.srv
	s.mu.RLock()
	addr := s.addr
	s.mu.RUnlock()
	switch {
	case addr == "":
		return ExportPending
	case s.cfg.registry == nil:
		return ExportNoRegistry
	}
	return ExportRegistering
}

// Err returns the error of the export's last failed registration attempt,
// a CodeUnavailable *Error wrapping the registry's error, or nil if the
// export is registered or no attempt has failed.
func (ex *Exporter) Err() error {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	if ex.registered {
		return nil
	}
	return ex.reg.err
}

// regLocked returns ex's registration, set up on first use. ex.mu must be
// held.
func (ex *Exporter) regLocked() *exportRegistration {
	r := &ex.reg
	if r.ctx == nil {
		r.ctx, r.cancel = context.WithCancel(ex.srv.ctx)
		r.ops = make(chan struct{}, 1)
	}
	return r
}

// register registers an active export once the server has an address, as
// registerAll does.
func (s *Server) register(ctx context.Context, ex *Exporter) error {
	return s.registerAll(ctx, []*Exporter{ex})
}

// registerAll registers the active exports exs once the server has an
// address: with WithRegistrationRequired by one attempt each, bounded by
// ctx, returning the first error; otherwise by starting each export's
// retrier and waiting for their first attempts (bounded by ctx and
// firstAttemptWait) all at once.
func (s *Server) registerAll(ctx context.Context, exs []*Exporter) error {
	switch {
	case s.cfg.registry == nil:
		return nil
	}
	for _, ex := range exs {
		s.startRuleWatch(ex)
	}
	switch {
	case s.cfg.registrationRequired:
		for _, ex := range exs {
			if err := s.attempt(ctx, ex); err != nil && err != errStop {
				return err
			}
		}
		return nil
	}
	firsts := make([]<-chan struct{}, 0, len(exs))
	for _, ex := range exs {
		firsts = append(firsts, s.startRetrier(ex))
	}
	s.awaitFirst(ctx, firsts)
	return nil
}

// awaitFirst waits until every channel (nil ones are skipped) is closed,
// ctx is done or firstAttemptWait has passed.
func (s *Server) awaitFirst(ctx context.Context, firsts []<-chan struct{}) {
	t := time.NewTimer(firstAttemptWait)
	defer t.Stop()
	for _, ch := range firsts {
		if ch == nil {
			continue
		}
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// errStop reports an attempt that was not made, or whose outcome no longer
// matters, because the export was withdrawn or is not active.
var errStop = errors.New("registration stopped")

// attempt makes one registration attempt for ex, bounded by ctx and ended
// early by the export's withdrawal. It returns nil if ex is registered,
// errStop if there is nothing to register, and the CodeUnavailable error of
// a failure otherwise, which it also records for Err.
func (s *Server) attempt(ctx context.Context, ex *Exporter) error {
	ex.mu.Lock()
	r := ex.regLocked()
	rctx, ops := r.ctx, r.ops
	ex.mu.Unlock()
	select {
	case ops <- struct{}{}:
	case <-rctx.Done():
		return errStop
	case <-ctx.Done():
		return ctxError(ctx, "register "+ex.exp.keyStr)
	}
	defer func() { <-ops }()

	ex.mu.Lock()
	s.mu.RLock()
	addr := s.addr
	s.mu.RUnlock()
	if ex.registered {
		ex.mu.Unlock()
		return nil
	}
	if !ex.active || ex.removed || r.withdrawn || addr == "" {
		ex.mu.Unlock()
		return errStop
	}
	// The provider's clock at its first registration, for consumers'
	// warm-up (WithWarmUp); later registrations of the export (after a
	// withdrawal or a lost lease) keep it.
	ex.registeredAt.CompareAndSwap(0, time.Now().UnixMilli())
	in := ex.instance(addr)
	ex.mu.Unlock()

	actx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(rctx, cancel)
	err := s.cfg.registry.Register(actx, in)
	stop()
	cancel()

	ex.mu.Lock()
	defer ex.mu.Unlock()
	switch {
	case err == nil:
		ex.registered, r.err, r.uncertain = true, nil, false
		r.inst = in
		ex.lastWrite.Store(time.Now().UnixNano()) // state.go
		return nil
	case rctx.Err() != nil:
		r.uncertain = true
		return errStop
	}
	r.err = wrapError(CodeUnavailable, err, "register %s at %s: %v", ex.exp.keyStr, addr, err)
	return r.err
}

// startRetrier starts ex's retrier unless one runs or there is nothing to
// register, and returns a channel closed after its first attempt (nil if
// it started none).
func (s *Server) startRetrier(ex *Exporter) <-chan struct{} {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	r := ex.regLocked()
	if r.running || r.withdrawn || ex.registered || ex.removed || !ex.active {
		return nil
	}
	s.mu.Lock()
	if s.closed || s.addr == "" {
		s.mu.Unlock()
		return nil
	}
	s.bg.Add(1)
	s.mu.Unlock()
	r.running = true
	first := make(chan struct{})
	go s.retry(ex, r.ctx, first)
	return first
}

// retry makes registration attempts for ex until one succeeds or ex is
// withdrawn, logging the first failure and the success that follows (or
// that came after Serve or Export went on without it).
func (s *Server) retry(ex *Exporter, rctx context.Context, first chan struct{}) {
	defer s.bg.Done()
	defer func() {
		ex.mu.Lock()
		ex.reg.running = false
		ex.mu.Unlock()
	}()
	log := s.cfg.logger
	start := time.Now()
	backoff := registerBackoffMin
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(rctx, registerAttemptTimeout)
		err := s.attempt(ctx, ex)
		cancel()
		if first != nil {
			close(first)
			first = nil
		}
		switch {
		case err == nil:
			s.refreshHealth()
			if n > 1 || time.Since(start) > firstAttemptWait {
				log.Info("storks: export registered after retrying", "service", ex.exp.keyStr, "addr", s.Addr(),
					"attempts", n, "after", time.Since(start).Round(time.Millisecond))
			}
			return
		case err == errStop:
			return
		case n == 1:
			log.Warn("storks: registering an export failed; it takes calls, and the registration is retried in the background",
				"service", ex.exp.keyStr, "addr", s.Addr(), "err", err)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-rctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, registerBackoffMax)
	}
}

// deregister withdraws the export from the registry; it keeps taking calls
// until it is unexported or the server closes.
func (ex *Exporter) deregister(ctx context.Context) error {
	_, err := ex.withdraw(ctx)
	return err
}

// withdraw stops the registration of ex for good (a retrier's attempt under
// way is canceled) and removes ex from the registry if it is registered, or
// may be. It reports whether consumers may have seen ex registered.
func (ex *Exporter) withdraw(ctx context.Context) (bool, error) {
	s := ex.srv
	ex.mu.Lock()
	r := ex.regLocked()
	r.withdrawn = true
	r.cancel()
	ops := r.ops
	ex.mu.Unlock()
	select {
	case ops <- struct{}{}:
	default:
		// An attempt is returning.
		select {
		case ops <- struct{}{}:
		case <-ctx.Done():
			return true, ctxError(ctx, "deregister "+ex.exp.keyStr)
		}
	}
	defer func() { <-ops }()

	ex.mu.Lock()
	registered, uncertain := ex.registered, r.uncertain
	r.uncertain = false
	ex.mu.Unlock()
	if !registered && !uncertain {
		return false, nil
	}
	in := ex.inst.Clone()
	in.Addr = s.Addr()
	if !registered {
		// Best effort: the instance was never known to be registered.
		cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		err := s.cfg.registry.Deregister(cctx, in)
		cancel()
		return err == nil, nil
	}
	if err := s.cfg.registry.Deregister(ctx, in); err != nil {
		return true, wrapError(CodeUnavailable, err, "deregister %s at %s: %v", ex.exp.keyStr, in.Addr, err)
	}
	ex.mu.Lock()
	ex.registered = false
	ex.mu.Unlock()
	return true, nil
}
