// Package approvalpage is the devnet's approval page for one Authority,
// where a person decides the requests that wait for them.
//
// # Overview
//
// [New] returns a [Page], an http.Handler: a server-rendered page listing
// the pending issuance requests (user, harness and trust tier, task, type,
// destination, and the available scopes as checkboxes to narrow), to
// approve (optionally letting the agent delegate to sub-agents) or deny,
// and the live delegations as a tree, each sub-agent's under its parent's,
// to revoke (a parent's revoke ends its sub-agents' too); each request's
// page shows its mission record (state, version, the history with its
// hash chain verified). An admin JSON API does the same for scripts and
// also suspends and resumes missions.
//
// # Usage
//
//	base := "https://idp.corp.test:8444/corp/approvals"
//	a, _ := authority.New(authority.Config{..., ApprovalURL: func(id string) string { return approvalpage.RequestURL(base, id) }})
//	page, _ := approvalpage.New(approvalpage.Config{Authority: a, BaseURL: base, AdminToken: token})
//	mux.Handle("/corp/approvals/", page)
//	mux.Handle("/corp/approvals", page)
//
// # Security
//
// The page works without JavaScript. Every form POST passes two CSRF
// checks: [net/http.CrossOriginProtection] (Sec-Fetch-Site / Origin) and a
// per-form token that is an HMAC, under a per-page key, of a random value in
// a __Host- cookie (a signed double-submit token). The approver names
// themself in a "You are" form; the name is kept in a cookie and recorded
// as the decision's DecidedBy ("human:<name>"). There is no login: this
// page is for development networks only.
//
// # Admin API
//
// The admin API answers only requests carrying "Authorization: Bearer
// <Config.AdminToken>" (compared in constant time):
//
//	GET  {base}/api/pending          {"pending": [request...]}
//	POST {base}/api/decide           {"id", "outcome": "approve"|"deny"|"cancel", "scope": [...], "reason", "by", "max_depth"}
//	GET  {base}/api/authorizations   {"authorizations": [authorization...]}
//	POST {base}/api/revoke           {"id", "reason", "by"}
//	POST {base}/api/suspend          {"id", "reason", "by"}  (an authorization or mission id)
//	POST {base}/api/resume           {"id", "by"}            (an authorization or mission id)
//	POST {base}/api/decide-stage     {"id", "outcome": "approve"|"deny", "reason", "by"}  (a mission id)
package approvalpage

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// Cookie names. The __Host- prefix makes browsers refuse them unless they
// are Secure, host-only and for Path=/.
const (
	CSRFCookie     = "__Host-agentpass-csrf"
	ApproverCookie = "__Host-agentpass-approver"
)

// DefaultApprover is the approver's name until they give one.
const DefaultApprover = "devnet approver"

// maxBody bounds form and JSON bodies.
const maxBody = 64 << 10

// Config configures a Page.
type Config struct {
	// Authority is the Authority whose requests the page decides.
	// Required.
	Authority *authority.Authority
	// BaseURL is the absolute https URL the page is served at, e.g.
	// "https://idp.corp.test:8444/corp/approvals"; its path is the prefix
	// of every route. Required.
	BaseURL string
	// Title heads the page. If empty, "Approvals".
	Title string
	// AdminToken enables the admin JSON API for requests bearing it. If
	// empty, the API answers 404.
	AdminToken string
	// Now is the clock for "2 min ago". If nil, time.Now.
	Now func() time.Time
	// Logger receives one record per decision and revocation. If nil,
	// nothing is logged.
	Logger *slog.Logger
}

// Page serves the approval page and the admin API. It is safe for
// concurrent use.
type Page struct {
	a         *authority.Authority
	baseURL   string
	base      string // path prefix, no trailing slash
	title     string
	csrfKey   []byte
	adminHash []byte // SHA-256 of the admin token, nil when disabled
	now       func() time.Time
	log       *slog.Logger
	handler   http.Handler
}

// RequestURL returns the page of one request, for authority.Config.ApprovalURL.
func RequestURL(baseURL, id string) string {
	return strings.TrimSuffix(baseURL, "/") + "/requests/" + url.PathEscape(id)
}

//go:embed page.html style.css
var assets embed.FS

var tmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"join": func(s pass.Scope) string { return strings.Join(s, " ") },
	"moveDict": func(m transitionView, csrf, base, from string) moveCard {
		return moveCard{M: m, CSRF: csrf, Base: base, From: from}
	},
	"dict": func(r any, csrf, base, from string) cardView {
		c := cardView{CSRF: csrf, Base: base, From: from}
		switch v := r.(type) {
		case *requestView:
			c.R = *v
		case requestView:
			c.R = v
		}
		return c
	},
}).ParseFS(assets, "page.html"))

var styleCSS, _ = assets.ReadFile("style.css")

// moveCard is what the "move" template renders.
type moveCard struct {
	M                transitionView
	CSRF, Base, From string
}

// cardView is what the "request" template renders.
type cardView struct {
	R                requestView
	CSRF, Base, From string
}

// New validates cfg and returns a Page.
func New(cfg Config) (*Page, error) {
	if cfg.Authority == nil {
		return nil, errors.New("approvalpage: Config.Authority is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("approvalpage: Config.BaseURL %q is not an https URL", cfg.BaseURL)
	}
	p := &Page{
		a:       cfg.Authority,
		baseURL: strings.TrimSuffix(cfg.BaseURL, "/"),
		base:    strings.TrimSuffix(u.EscapedPath(), "/"),
		title:   cfg.Title,
		csrfKey: make([]byte, 32),
		now:     cfg.Now,
		log:     cfg.Logger,
	}
	if p.title == "" {
		p.title = "Approvals"
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if cfg.AdminToken != "" {
		h := sha256.Sum256([]byte(cfg.AdminToken))
		p.adminHash = h[:]
	}
	if _, err := rand.Read(p.csrfKey); err != nil {
		return nil, err
	}

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Forbidden: cross-origin request refused (CSRF protection).", http.StatusForbidden)
	}))
	form := func(h http.HandlerFunc) http.Handler { return cop.Handler(p.checkCSRF(h)) }

	mux := http.NewServeMux()
	b := p.base
	mux.HandleFunc("GET "+b+"/{$}", p.index)
	mux.HandleFunc("GET "+b+"/requests/{id}", p.detail)
	mux.HandleFunc("GET "+b+"/style.css", serveCSS)
	mux.Handle("POST "+b+"/decide", form(p.decide))
	mux.Handle("POST "+b+"/revoke", form(p.revoke))
	mux.Handle("POST "+b+"/whoami", form(p.whoami))
	mux.Handle("POST "+b+"/decide-stage", form(p.decideStage))
	mux.Handle("GET "+b+"/api/pending", p.admin(p.apiPending))
	mux.Handle("POST "+b+"/api/decide", p.admin(p.apiDecide))
	mux.Handle("GET "+b+"/api/authorizations", p.admin(p.apiAuthorizations))
	mux.Handle("POST "+b+"/api/revoke", p.admin(p.apiRevoke))
	mux.Handle("POST "+b+"/api/suspend", p.admin(p.apiSuspend(false)))
	mux.Handle("POST "+b+"/api/resume", p.admin(p.apiSuspend(true)))
	mux.Handle("POST "+b+"/api/decide-stage", p.admin(p.apiDecideStage))
	if b != "" {
		mux.HandleFunc("GET "+b, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, b+"/", http.StatusSeeOther)
		})
	}
	p.handler = mux
	return p, nil
}

// URL returns the page's address.
func (p *Page) URL() string { return p.baseURL + "/" }

// ServeHTTP serves the page, its forms and the admin API.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	p.handler.ServeHTTP(w, r)
}

func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(styleCSS)
}

// csrfToken returns the form token for r, setting the cookie it is bound to
// when r has none.
func (p *Page) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if c, err := r.Cookie(CSRFCookie); err == nil && len(c.Value) >= 22 {
		v = c.Value
	} else {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	return p.sign(v)
}

func (p *Page) sign(cookie string) string {
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF refuses a form whose token is missing or not bound to the
// request's cookie.
func (p *Page) checkCSRF(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		c, err := r.Cookie(CSRFCookie)
		tok := r.PostFormValue("csrf")
		if err != nil || tok == "" || !hmac.Equal([]byte(tok), []byte(p.sign(c.Value))) {
			http.Error(w, "Forbidden: missing or invalid form token (CSRF protection). Reload the page and try again.", http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// approver returns the name the person gave, or DefaultApprover.
func approver(r *http.Request) string {
	if c, err := r.Cookie(ApproverCookie); err == nil {
		if v, err := url.QueryUnescape(c.Value); err == nil {
			if v = cleanName(v); v != "" {
				return v
			}
		}
	}
	return DefaultApprover
}

// cleanName keeps printable characters of a name, at most 64.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, strings.TrimSpace(s))
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64])
	}
	return strings.TrimSpace(s)
}

// admin authenticates the admin API's bearer token.
func (p *Page) admin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.adminHash == nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: "not_found", Message: "the admin API is disabled"})
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], p.adminHash) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass-approvals"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "unauthorized", Message: "missing or wrong admin token"})
			return
		}
		next(w, r)
	})
}
