package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

const (
	sessionCookie = "storks_console_session"
	sessionTTL    = 12 * time.Hour
	// TokenHeader carries the write token of a script's write.
	TokenHeader = "X-Storks-Token"
	maxSessions = 1000
)

// hostAllowed checks the Host header against Options.Hosts.
func (c *Console) hostAllowed(r *http.Request) bool {
	if len(c.opts.Hosts) == 0 {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return slices.Contains(c.opts.Hosts, strings.ToLower(host))
}

// tokenOK compares a presented token with the write token in constant
// time (of their hashes, so that the length does not leak either).
func (c *Console) tokenOK(given string) bool {
	if c.opts.Token == "" || given == "" {
		return false
	}
	a := sha256.Sum256([]byte(given))
	b := sha256.Sum256([]byte(c.opts.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// csrfFor is the CSRF token of a session: HMAC-SHA256 of the session ID
// keyed by the write token, so that it is bound to both.
func (c *Console) csrfFor(session string) string {
	m := hmac.New(sha256.New, []byte(c.opts.Token))
	m.Write([]byte("storks-console-csrf\x00" + session))
	return hex.EncodeToString(m.Sum(nil))
}

// session returns the live session ID of r's cookie, or "".
func (c *Console) session(r *http.Request) string {
	if c.opts.Token == "" {
		return ""
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return ""
	}
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	exp, ok := c.sessions[ck.Value]
	if !ok {
		return ""
	}
	if c.opts.Now().After(exp) {
		delete(c.sessions, ck.Value)
		return ""
	}
	return ck.Value
}

func (c *Console) newSession() string {
	b := make([]byte, 32)
	rand.Read(b)
	id := hex.EncodeToString(b)
	now := c.opts.Now()
	c.sessMu.Lock()
	defer c.sessMu.Unlock()
	for k, exp := range c.sessions {
		if now.After(exp) {
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= maxSessions {
		// Drop the oldest.
		var oldest string
		for k, exp := range c.sessions {
			if oldest == "" || exp.Before(c.sessions[oldest]) {
				oldest = k
			}
		}
		delete(c.sessions, oldest)
	}
	c.sessions[id] = now.Add(sessionTTL)
	return id
}

// originOK reports whether r comes from the console's own pages: its
// Origin, if any, is the console's origin, and its Sec-Fetch-Site, if
// any, is same-origin or none. present says whether either header was
// there.
func originOK(r *http.Request) (ok, present bool, why string) {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		present = true
		if site != "same-origin" && site != "none" {
			return false, true, "the request came from another site (Sec-Fetch-Site: " + site + ")"
		}
	}
	if o := r.Header.Get("Origin"); o != "" {
		present = true
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		if !strings.EqualFold(o, scheme+"://"+r.Host) {
			return false, true, "the request came from another origin (" + o + ", not " + scheme + "://" + r.Host + ")"
		}
	}
	return true, present, ""
}

// who says which credential authorised a write, for the log.
type who string

// authorize checks a write: POST, a token (header or form) or a session
// with its CSRF token, and the origin. It answers the request itself and
// returns false when the write is refused.
func (c *Console) authorize(w http.ResponseWriter, r *http.Request, action string) (who, bool) {
	refuse := func(status int, msg string) (who, bool) {
		c.log.Warn("console: write refused", "remote", r.RemoteAddr, "action", action,
			"service", r.FormValue("service"), "provider", r.FormValue("addr"), "result", msg)
		c.errorPage(w, r, status, "Refused", msg)
		return "", false
	}
	if c.opts.Token == "" {
		return refuse(http.StatusForbidden, "This console is read-only: it was started without a write token (storks console --token, or $STORKS_CONSOLE_TOKEN). Nothing was changed.")
	}
	ok, present, why := originOK(r)
	if !ok {
		return refuse(http.StatusForbidden, "Cross-site request refused: "+why+". Nothing was changed.")
	}
	if given := r.Header.Get(TokenHeader); given != "" {
		if c.tokenOK(given) {
			return "token", true
		}
		return refuse(http.StatusForbidden, "The write token is wrong. Nothing was changed.")
	}
	if given := r.PostFormValue("token"); given != "" {
		if c.tokenOK(given) {
			return "token", true
		}
		return refuse(http.StatusForbidden, "The write token is wrong. Nothing was changed.")
	}
	sess := c.session(r)
	if sess == "" {
		return refuse(http.StatusForbidden, "Writes need the console's write token: log in with it (the form at the top of the page), or send it in the "+TokenHeader+" header. Nothing was changed.")
	}
	if !present {
		return refuse(http.StatusForbidden, "Cross-site request refused: a write from a browser session must carry an Origin or Sec-Fetch-Site header. Nothing was changed.")
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(c.csrfFor(sess))) {
		return refuse(http.StatusForbidden, "Cross-site request refused: the form's CSRF token is missing or wrong (reload the page). Nothing was changed.")
	}
	return who("session " + sess[:8]), true
}

// write wraps a write handler with authorize.
func (c *Console) write(action string, h func(http.ResponseWriter, *http.Request, who)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			c.errorPage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
			return
		}
		by, ok := c.authorize(w, r, action)
		if !ok {
			return
		}
		h(w, r, by)
	}
}

// login checks the posted token and starts a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	if c.opts.Token == "" {
		c.errorPage(w, r, http.StatusForbidden, "Refused", "This console is read-only: it was started without a write token (storks console --token, or $STORKS_CONSOLE_TOKEN).")
		return
	}
	if ok, _, why := originOK(r); !ok {
		c.log.Warn("console: login refused", "remote", r.RemoteAddr, "result", why)
		c.errorPage(w, r, http.StatusForbidden, "Refused", "Cross-site request refused: "+why+".")
		return
	}
	if !c.tokenOK(r.PostFormValue("token")) {
		c.log.Warn("console: login refused", "remote", r.RemoteAddr, "result", "wrong token")
		c.errorPage(w, r, http.StatusForbidden, "Refused", "The write token is wrong.")
		return
	}
	id := c.newSession()
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(sessionTTL / time.Second),
	})
	c.log.Info("console: login", "remote", r.RemoteAddr, "who", "session "+id[:8], "result", "ok")
	http.Redirect(w, r, safeBack(r.PostFormValue("back")), http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, by who) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.sessMu.Lock()
		delete(c.sessions, ck.Value)
		c.sessMu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("console: logout", "remote", r.RemoteAddr, "who", string(by), "result", "ok")
	http.Redirect(w, r, safeBack(r.PostFormValue("back")), http.StatusSeeOther)
}

// safeBack returns back if it is a path of this console, "/" otherwise
// (no open redirect).
func safeBack(back string) string {
	if back == "" || back[0] != '/' || strings.HasPrefix(back, "//") || strings.ContainsAny(back, "\\\r\n") {
		return "/"
	}
	return back
}
