package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/storks-rpc/storks/registry"
	"github.com/storks-rpc/storks/registry/rule"
)

// page is what every page template gets.
type page struct {
	Title    string
	Registry string
	ReadOnly bool
	LoggedIn bool
	CSRF     string
	Back     string
	Events   string
	Live     live
	// The service and rules pages.
	Key     registry.ServiceKey
	KeyQ    string
	Known   bool
	Doc     string
	DocErr  string
	Rev     string // the revision of the stored document shown, "" if unknown
	Rules   []overrideRow
	Message string
	Error   string
	Status  int
	Form    map[string]string
}

type overrideRow struct {
	Index int
	Match string
	Sets  string
}

func (c *Console) newPage(r *http.Request, title string) page {
	p := page{
		Title:    title,
		Registry: registry.RedactURL(c.opts.RegistryURL),
		ReadOnly: c.ReadOnly(),
		Back:     r.URL.RequestURI(),
	}
	if sess := c.session(r); sess != "" {
		p.LoggedIn = true
		p.CSRF = c.csrfFor(sess)
	}
	return p
}

func (c *Console) fillLive(p *page, l live) {
	l.CanWrite = p.LoggedIn && c.rules != nil
	l.CSRF = p.CSRF
	l.Back = p.Back
	p.Live = l
}

func (c *Console) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		c.log.Error("console: rendering "+name, "err", err)
		http.Error(w, "storks console: rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, status int, title, msg string) {
	p := c.newPage(r, title)
	p.Error = msg
	p.Status = status
	l, _ := c.snapshot(nil)
	c.fillLive(&p, live{Banner: l.Banner})
	c.render(w, status, "error-page", p)
}

func (c *Console) servicesPage(w http.ResponseWriter, r *http.Request) {
	p := c.newPage(r, "Services")
	p.Events = "/events?view=services"
	l, _ := c.snapshot(nil)
	c.fillLive(&p, l)
	c.render(w, http.StatusOK, "services-page", p)
}

// keyOf reads the service key of a request's query or form.
func keyOf(r *http.Request) (registry.ServiceKey, error) {
	k := registry.ServiceKey{Service: r.FormValue("service"), Version: r.FormValue("version"), Group: r.FormValue("group")}
	if err := k.Validate(); err != nil {
		return k, err
	}
	if k.IsConsumer() {
		return k, &registry.InputError{Field: "service", Value: k.Service, Reason: "is a consumer key; open its provider's key"}
	}
	return k, nil
}

func (c *Console) servicePage(w http.ResponseWriter, r *http.Request) {
	key, err := keyOf(r)
	if err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "Bad service", err.Error())
		return
	}
	l, ok := c.snapshot(&key)
	if !ok {
		msg := fmt.Sprintf("There is no service %s in the registry: no provider, consumer or rule has this service, version and group.", key)
		if l.Banner != nil {
			msg += " (The registry is unreachable: it may have been added since.)"
		}
		c.errorPage(w, r, http.StatusNotFound, "Unknown service", msg)
		return
	}
	p := c.newPage(r, key.String())
	p.Key, p.KeyQ, p.Known = key, keyQuery(key), true
	p.Events = "/events?view=service&" + keyQuery(key)
	c.fillLive(&p, l)
	c.render(w, http.StatusOK, "service-page", p)
}

func (c *Console) rulesPage(w http.ResponseWriter, r *http.Request) {
	key, err := keyOf(r)
	if err != nil {
		c.errorPage(w, r, http.StatusBadRequest, "Bad service", err.Error())
		return
	}
	c.renderRules(w, r, key, http.StatusOK, "", "", nil)
}

// renderRules renders the rules page of key; doc and errMsg are a
// refused edit to show again.
func (c *Console) renderRules(w http.ResponseWriter, r *http.Request, key registry.ServiceKey, status int, doc, errMsg string, form map[string]string) {
	p := c.newPage(r, "Rules of "+key.String())
	p.Back = "/rules?" + keyQuery(key)
	p.Key, p.KeyQ = key, keyQuery(key)
	p.Error, p.Form = errMsg, form
	l, known := c.snapshot(&key)
	p.Known = known
	c.fillLive(&p, live{Banner: l.Banner, NoRules: l.NoRules})
	if c.rules == nil {
		c.render(w, status, "rules-page", p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.opts.Timeout)
	defer cancel()
	var stored []byte
	var gerr error
	if rr, ok := c.rules.(registry.RuleRevisions); ok {
		var rev int64
		if stored, rev, gerr = rr.GetRuleRevision(ctx, key); gerr == nil || errors.Is(gerr, registry.ErrNoRule) {
			// The editor saves on this revision: a change made meanwhile
			// by somebody else is refused, not overwritten.
			p.Rev = strconv.FormatInt(rev, 10)
		}
	} else {
		stored, gerr = c.rules.GetRule(ctx, key)
	}
	switch {
	case errors.Is(gerr, registry.ErrNoRule):
		stored = nil
	case gerr != nil:
		// Unreachable: show the last document the watch saw.
		c.st.mu.Lock()
		if s, ok := c.st.services[key]; ok {
			stored = s.ruleDoc
		}
		c.st.mu.Unlock()
		if p.Live.Banner == nil {
			p.Live.Banner = &banner{Err: redactErr(gerr), Since: c.opts.Now().Format("15:04:05")}
		}
	}
	if stored != nil {
		set, perr := rule.Parse(stored)
		if perr != nil {
			p.DocErr = fmt.Sprintf("The stored rules of %s are invalid (consumers ignore them): %v", key, perr)
		} else {
			for i, o := range set.Overrides {
				p.Rules = append(p.Rules, overrideRow{Index: i, Match: describeMatch(o.Match), Sets: describeOverride(o)})
			}
		}
	}
	if doc != "" {
		p.Doc = doc
	} else if stored != nil {
		p.Doc = string(stored)
	} else {
		p.Doc = "{\n  \"version\": 1,\n  \"overrides\": []\n}\n"
	}
	c.render(w, status, "rules-page", p)
}

func describeMatch(m rule.Match) string {
	var parts []string
	if m.ID != "" {
		parts = append(parts, "id="+m.ID)
	}
	if m.Addr != "" {
		parts = append(parts, "addr="+m.Addr)
	}
	if len(m.Metadata) > 0 {
		parts = append(parts, "metadata "+formatMetadata(m.Metadata))
	}
	return strings.Join(parts, ", ")
}

func describeOverride(o rule.Override) string {
	var parts []string
	if o.Disabled != nil {
		if *o.Disabled {
			parts = append(parts, "disabled")
		} else {
			parts = append(parts, "enabled")
		}
	}
	if o.Weight != nil {
		parts = append(parts, "weight "+strconv.Itoa(*o.Weight))
	}
	if o.Tag != nil {
		if *o.Tag == "" {
			parts = append(parts, "no tag")
		} else {
			parts = append(parts, "tag "+*o.Tag)
		}
	}
	return strings.Join(parts, ", ")
}

// events streams the live part of a page as server-sent events: at once,
// at every change of the registry's state (at most every 200 ms), and
// every Heartbeat.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	var key *registry.ServiceKey
	if r.FormValue("view") == "service" {
		k, err := keyOf(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key = &k
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// A page loaded with a session keeps its buttons: the fragments are
	// rendered for the same request.
	p := c.newPage(r, "")
	if key != nil {
		p.Back = "/service?" + keyQuery(*key)
	} else {
		p.Back = "/"
	}
	hb := time.NewTicker(c.opts.Heartbeat)
	defer hb.Stop()
	for {
		changed := c.st.wait()
		l, found := c.snapshot(key)
		c.fillLive(&p, l)
		var buf bytes.Buffer
		name := "services-live"
		if key != nil {
			name = "service-live"
			if !found {
				name = "service-gone"
			}
		}
		if err := c.tmpl.ExecuteTemplate(&buf, name, p.Live); err != nil {
			c.log.Error("console: rendering "+name, "err", err)
			return
		}
		var out strings.Builder
		out.WriteString("event: live\n")
		for _, line := range strings.Split(buf.String(), "\n") {
			out.WriteString("data: ")
			out.WriteString(line)
			out.WriteByte('\n')
		}
		out.WriteByte('\n')
		if _, err := w.Write([]byte(out.String())); err != nil {
			return
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-c.ctx.Done():
			return
		case <-hb.C:
		case <-changed:
			// Coalesce a burst of changes.
			t := time.NewTimer(200 * time.Millisecond)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-c.ctx.Done():
				t.Stop()
				return
			}
		}
	}
}

// writeCtx bounds a write's registry calls.
func (c *Console) writeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.opts.Timeout)
}

func (c *Console) store(w http.ResponseWriter, r *http.Request) (registry.RuleStore, bool) {
	s, err := rule.Store(c.reg)
	if err != nil {
		c.errorPage(w, r, http.StatusNotImplemented, "Cannot store rules", "registry: "+err.Error())
		return nil, false
	}
	return s, true
}

// logAction records a write.
func (c *Console) logAction(r *http.Request, by who, action string, key registry.ServiceKey, provider string, err error) {
	result := "ok"
	if err != nil {
		result = redactErr(err)
	}
	c.log.Info("console: action", "remote", r.RemoteAddr, "who", string(by), "action", action,
		"service", key.String(), "provider", provider, "result", result, "at", c.opts.Now().UTC().Format(time.RFC3339Nano))
}

// providerAction takes a provider out of rotation, puts it back, changes
// its weight or tag: the shortcuts of storks provider, through package
// rule, for one service key.
func (c *Console) providerAction(w http.ResponseWriter, r *http.Request, by who) {
	action, addr, value := r.PostFormValue("action"), r.PostFormValue("addr"), strings.TrimSpace(r.PostFormValue("value"))
	key, err := keyOf(r)
	if err != nil {
		c.logAction(r, by, action, key, addr, err)
		c.errorPage(w, r, http.StatusBadRequest, "Bad service", err.Error())
		return
	}
	bad := func(msg string) {
		c.logAction(r, by, action, key, addr, errors.New(msg))
		c.errorPage(w, r, http.StatusBadRequest, "Bad request", msg+" Nothing was changed.")
	}
	if err := registry.ValidateAddr(addr); err != nil {
		bad(fmt.Sprintf("ADDR %q is not host:port.", addr))
		return
	}
	if action == rule.ActionWeight && value == "" {
		value = "default"
	}
	edit, did, err := rule.ProviderAction(action, value)
	if err != nil {
		bad(err.Error() + ".")
		return
	}
	store, ok := c.store(w, r)
	if !ok {
		return
	}
	ctx, cancel := c.writeCtx(r)
	defer cancel()
	_, err = rule.Update(ctx, store, key, func(s *rule.Set) error { edit(s, rule.Match{Addr: addr}); return nil })
	c.logAction(r, by, action, key, addr, err)
	if err != nil {
		c.writeFailed(w, r, key, err)
		return
	}
	c.refreshSoon()
	c.log.Info(fmt.Sprintf("console: %s %s for %s", addr, did, key))
	http.Redirect(w, r, "/service?"+keyQuery(key), http.StatusSeeOther)
}

// writeFailed answers a refused or failed rule write.
func (c *Console) writeFailed(w http.ResponseWriter, r *http.Request, key registry.ServiceKey, err error) {
	var re *rule.Error
	var ie *registry.InputError
	if errors.As(err, &re) || errors.As(err, &ie) {
		c.errorPage(w, r, http.StatusBadRequest, "Refused", err.Error()+" Nothing was changed.")
		return
	}
	c.errorPage(w, r, http.StatusBadGateway, "Registry error",
		fmt.Sprintf("registry: writing the rules of %s: %s", key, redactErr(err)))
}

// rulesAction saves a whole rule document, adds an override, deletes one,
// or deletes the document.
func (c *Console) rulesAction(w http.ResponseWriter, r *http.Request, by who) {
	op := r.PostFormValue("op")
	key, err := keyOf(r)
	if err != nil {
		c.logAction(r, by, "rules "+op, key, "", err)
		c.errorPage(w, r, http.StatusBadRequest, "Bad service", err.Error())
		return
	}
	store, ok := c.store(w, r)
	if !ok {
		return
	}
	ctx, cancel := c.writeCtx(r)
	defer cancel()
	refused := func(doc string, err error, form map[string]string) {
		c.logAction(r, by, "rules "+op, key, "", err)
		c.renderRules(w, r, key, http.StatusBadRequest, doc, err.Error()+" Nothing was changed.", form)
	}
	switch op {
	case "save":
		doc := r.PostFormValue("doc")
		set, err := rule.Parse([]byte(doc))
		if err != nil {
			refused(doc, err, nil)
			return
		}
		rr, ok := store.(registry.RuleRevisions)
		if rev := r.PostFormValue("rev"); rev != "" && ok {
			n, perr := strconv.ParseInt(rev, 10, 64)
			if perr != nil || n < 0 {
				refused(doc, &registry.InputError{Field: "rev", Value: rev, Reason: "is not a revision"}, nil)
				return
			}
			err = rule.SaveIf(ctx, rr, key, set, n)
		} else {
			// A page shown while the registry was unreachable has
			// no revision: the document replaces what is stored.
			err = rule.Save(ctx, store, key, set)
		}
		if errors.Is(err, registry.ErrRuleChanged) {
			c.logAction(r, by, "rules save", key, "", err)
			c.renderRules(w, r, key, http.StatusConflict, doc,
				fmt.Sprintf("The rules of %s changed since this page was loaded; nothing was changed. "+
					"The overrides above are the stored ones now; the editor keeps your version: save it again to replace them.", key), nil)
			return
		}
		if err != nil && isInput(err) {
			refused(doc, err, nil)
			return
		}
		if c.done(w, r, by, "rules save", key, err) {
			return
		}
	case "add":
		o, form, err := overrideOf(r)
		if err == nil {
			_, err = rule.Update(ctx, store, key, func(s *rule.Set) error {
				s.Overrides = append(s.Overrides, o)
				return nil
			})
		}
		if err != nil && isInput(err) {
			refused("", err, form)
			return
		}
		if c.done(w, r, by, "rules add", key, err) {
			return
		}
	case "delete":
		i, err := strconv.Atoi(r.PostFormValue("index"))
		want := r.PostFormValue("match")
		if err == nil {
			_, err = rule.Update(ctx, store, key, func(s *rule.Set) error {
				if i < 0 || i >= len(s.Overrides) || describeMatch(s.Overrides[i].Match) != want {
					return &rule.Error{Field: fmt.Sprintf("overrides[%d]", i), Reason: "is not the override shown (the rules changed since the page was loaded; reload it)"}
				}
				s.Overrides = append(s.Overrides[:i], s.Overrides[i+1:]...)
				return nil
			})
		} else {
			err = &rule.Error{Field: "index", Reason: "is not a number"}
		}
		if err != nil && isInput(err) {
			refused("", err, nil)
			return
		}
		if c.done(w, r, by, "rules delete override", key, err) {
			return
		}
	case "delete-all":
		if c.done(w, r, by, "rules delete", key, store.DeleteRule(ctx, key)) {
			return
		}
	default:
		refused("", &rule.Error{Reason: fmt.Sprintf("unknown operation %q (want save, add, delete or delete-all)", op)}, nil)
		return
	}
	c.refreshSoon()
	http.Redirect(w, r, "/rules?"+keyQuery(key), http.StatusSeeOther)
}

// done logs a rules write and, if it failed, answers it; it reports
// whether it answered.
func (c *Console) done(w http.ResponseWriter, r *http.Request, by who, action string, key registry.ServiceKey, err error) bool {
	c.logAction(r, by, action, key, "", err)
	if err != nil {
		c.writeFailed(w, r, key, err)
		return true
	}
	return false
}

func isInput(err error) bool {
	var re *rule.Error
	var ie *registry.InputError
	return errors.As(err, &re) || errors.As(err, &ie)
}

// overrideOf reads the add-override form: match_id, match_addr,
// match_metadata ("k=v k2=v2"), weight, disabled ("", "true", "false"),
// tag ("-" for no tag).
func overrideOf(r *http.Request) (rule.Override, map[string]string, error) {
	form := map[string]string{}
	for _, f := range []string{"match_id", "match_addr", "match_metadata", "weight", "disabled", "tag"} {
		form[f] = strings.TrimSpace(r.PostFormValue(f))
	}
	o := rule.Override{Match: rule.Match{ID: form["match_id"], Addr: form["match_addr"]}}
	if md := form["match_metadata"]; md != "" {
		o.Match.Metadata = map[string]string{}
		for _, pair := range strings.Fields(md) {
			k, v, ok := strings.Cut(pair, "=")
			if !ok {
				return o, form, &rule.Error{Field: "match.metadata", Reason: fmt.Sprintf("%q is not key=value", pair)}
			}
			o.Match.Metadata[k] = v
		}
	}
	if s := form["weight"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return o, form, &rule.Error{Field: "weight", Reason: fmt.Sprintf("%q is not a number", s)}
		}
		o.Weight = &n
	}
	switch form["disabled"] {
	case "":
	case "true", "false":
		b := form["disabled"] == "true"
		o.Disabled = &b
	default:
		return o, form, &rule.Error{Field: "disabled", Reason: "want true or false"}
	}
	if t, ok := r.PostForm["tag"]; ok && strings.TrimSpace(t[0]) != "" {
		tag := form["tag"]
		if tag == "-" {
			tag = ""
		}
		o.Tag = &tag
	}
	return o, form, nil
}

var urlRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"']+`)

// redactErr is err's message with every URL in it passed through
// registry.RedactURL.
func redactErr(err error) string {
	return urlRE.ReplaceAllStringFunc(err.Error(), registry.RedactURL)
}
