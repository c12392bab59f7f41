package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/storks-rpc/storks/registry"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure a Console. The zero value is a read-only console with
// the default timings.
type Options struct {
	// Token is the write token. Empty: the console is read-only.
	Token string
	// Logger receives one record per write (and per refused write). Nil:
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock (ages, load samples). Nil: time.Now.
	Now func() time.Time
	// RegistryURL is the URL shown in the header, through
	// registry.RedactURL: credentials are never shown.
	RegistryURL string
	// Hosts, when not empty, are the only Host names (without port) the
	// console answers, against DNS rebinding; "localhost", "127.0.0.1" and
	// "::1" for a console on loopback.
	Hosts []string
	// Refresh is how often the service list is read again (default 2s).
	Refresh time.Duration
	// History is how far back the load charts go (default 5m).
	History time.Duration
	// Timeout bounds each registry call (default 5s).
	Timeout time.Duration
	// Heartbeat is how often a live page is re-rendered even when nothing
	// changed, so that ages move (default 5s).
	Heartbeat time.Duration
}

// Console is the web console: an http.Handler. Close stops its background
// loop and its live pages.
type Console struct {
	reg    registry.Registry
	rules  registry.RuleStore // nil: this registry keeps no rules
	opts   Options
	log    *slog.Logger
	tmpl   *template.Template
	mux    *http.ServeMux
	st     *state
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	sessMu   sync.Mutex
	sessions map[string]time.Time // session ID: expiry
}

// New builds a console over reg and starts following it. reg stays the
// caller's: Close does not close it.
func New(reg registry.Registry, opts Options) (*Console, error) {
	if reg == nil {
		return nil, errors.New("console: no registry")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 2 * time.Second
	}
	if opts.History <= 0 {
		opts.History = 5 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 5 * time.Second
	}
	tmpl, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	c := &Console{
		reg:      reg,
		opts:     opts,
		log:      opts.Logger,
		tmpl:     tmpl,
		st:       newState(),
		kick:     make(chan struct{}, 1),
		sessions: map[string]time.Time{},
	}
	if rs, ok := reg.(registry.RuleStore); ok {
		c.rules = rs
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.routes()
	c.wg.Add(1)
	go c.run(c.ctx)
	return c, nil
}

// Close stops the background loop, its watches and the live pages, and
// waits for them. It does not close the registry.
func (c *Console) Close() error {
	c.cancel()
	c.wg.Wait()
	return nil
}

// ReadOnly reports whether the console was built without a write token.
func (c *Console) ReadOnly() bool { return c.opts.Token == "" }

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !c.hostAllowed(r) {
		http.Error(w, "storks console: this Host is not one the console answers (DNS rebinding protection)", http.StatusMisdirectedRequest)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
	c.mux.ServeHTTP(w, r)
}

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /{$}", c.servicesPage)
	m.HandleFunc("GET /service", c.servicePage)
	m.HandleFunc("GET /rules", c.rulesPage)
	m.HandleFunc("GET /events", c.events)
	m.HandleFunc("POST /login", c.login)
	m.HandleFunc("POST /logout", c.write("logout", c.logout))
	m.HandleFunc("POST /provider", c.write("provider", c.providerAction))
	m.HandleFunc("POST /rules", c.write("rules", c.rulesAction))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/provider" || r.URL.Path == "/login" || r.URL.Path == "/logout":
			w.Header().Set("Allow", "POST")
			c.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed here: writes are POST requests.")
			return
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			c.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed here: writes are POST requests to /provider and /rules.")
			return
		}
		c.errorPage(w, r, http.StatusNotFound, "Not found", "There is no page "+r.URL.Path+" in the console.")
	})
	c.mux = m
}

// refreshSoon makes the background loop list the services now (after a
// write, so that a new rule document shows at once).
func (c *Console) refreshSoon() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
