// Package console is an approval console for one Authority: the page where
// a signed-in person decides the requests that wait for them, and an admin
// JSON API that does the same for scripts.
//
// # Overview
//
// [New] returns a [Console], an http.Handler: a server-rendered page listing
// the pending issuance requests with their full disclosure (user, harness
// and its trust tier, task, Service, the scopes with their effects, the
// scope proposal and its diff, the stage plan), to approve with a narrowed
// scope or deny, with a reason; the stage moves waiting for a person; the
// live delegations as a tree, each sub-agent's under its parent's, to
// revoke, suspend, resume or narrow; and a searchable history of past
// requests with their mission records (the history's hash chain verified).
// Scopes that delete, act outside the Service, administer, or are not
// classified are never ticked in advance: a person grants them on purpose.
//
// # Usage
//
//	base := "https://idp.corp.test/approvals"
//	a, _ := authority.New(authority.Config{..., ApprovalURL: func(id string) string { return console.RequestURL(base, id) }})
//	login, _ := console.NewOIDC(ctx, console.OIDCConfig{Issuer: ..., ClientID: ..., BaseURL: base, CookieKey: key})
//	api, _ := console.NewTokenAuthenticator(console.Token{Secret: token, Subject: "api:ops", Domains: []string{"corp.test"}})
//	c, _ := console.New(console.Config{Authority: a, BaseURL: base, Authenticator: login, APIAuthenticator: api})
//	mux.Handle("/approvals/", c)
//
// # Security
//
// Authentication is the operator's: every request, page, form or API call,
// passes Config.Authenticator (Config.APIAuthenticator for the API), and
// every change records the Identity's Subject, never a typed name. A person
// sees and decides only the requests of users their Authenticator says they
// may decide for. The page works without JavaScript. Every form POST passes
// two CSRF checks: [net/http.CrossOriginProtection] (Sec-Fetch-Site /
// Origin) and a per-form token that is an HMAC, under a per-console key, of
// a random value in a __Host- cookie (a signed double-submit token).
//
// # Admin API
//
// The admin API answers only requests Config.APIAuthenticator accepts:
//
//	GET  {base}/api/pending          {"pending": [request...]}
//	POST {base}/api/decide           {"id", "outcome": "approve"|"deny"|"cancel", "scope": [...], "reason", "max_depth"}
//	GET  {base}/api/authorizations   {"authorizations": [authorization...]}
//	POST {base}/api/revoke           {"id", "reason"}
//	POST {base}/api/suspend          {"id", "reason"}  (an authorization or mission id)
//	POST {base}/api/resume           {"id"}            (an authorization or mission id)
//	POST {base}/api/decide-stage     {"id", "outcome": "approve"|"deny", "reason"}  (a mission id)
package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// csrfCookie holds the random value form tokens are bound to. The __Host-
// prefix makes browsers refuse it unless it is Secure, host-only and for
// Path=/.
const csrfCookie = "__Host-agentpass-csrf"

// maxBody bounds form and JSON bodies.
const maxBody = 64 << 10

// Config configures a Console.
type Config struct {
	// Authority is the Authority whose requests the console decides.
	// Required.
	Authority *authority.Authority
	// BaseURL is the absolute https URL the console is served at, e.g.
	// "https://idp.corp.test:8444/corp/approvals"; its path is the prefix
	// of every route. Required.
	BaseURL string
	// Authenticator signs people in; it is called for every page and
	// form. If it also implements http.Handler (as the OIDC authenticator
	// does), it is served under {base}/auth/ and people without a session
	// are sent to {base}/auth/login. Required.
	Authenticator Authenticator
	// APIAuthenticator authenticates the admin JSON API's callers (see
	// NewTokenAuthenticator). If nil, the API answers 404.
	APIAuthenticator Authenticator
	// Title heads the page. If empty, "Approvals".
	Title string
	// Now is the clock of the page's times. If nil, time.Now.
	Now func() time.Time
	// Logger receives one record per decision and revocation. If nil,
	// nothing is logged.
	Logger *slog.Logger
}

// Console serves the approval console and the admin API. It is safe for
// concurrent use.
type Console struct {
	a       *authority.Authority
	baseURL string
	base    string // path prefix, no trailing slash
	title   string
	csrfKey []byte
	auth    Authenticator
	api     Authenticator
	login   bool // auth serves {base}/auth/
	now     func() time.Time
	log     *slog.Logger
	handler http.Handler
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

// New validates cfg and returns a Console.
func New(cfg Config) (*Console, error) {
	if cfg.Authority == nil {
		return nil, errors.New("console: Config.Authority is required")
	}
	if cfg.Authenticator == nil {
		return nil, errors.New("console: Config.Authenticator is required")
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("console: Config.BaseURL %q is not an https URL", cfg.BaseURL)
	}
	p := &Console{
		a:       cfg.Authority,
		auth:    cfg.Authenticator,
		api:     cfg.APIAuthenticator,
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
	if _, err := rand.Read(p.csrfKey); err != nil {
		return nil, err
	}

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Forbidden: cross-origin request refused (CSRF protection).", http.StatusForbidden)
	}))
	form := func(h http.HandlerFunc) http.Handler { return p.person(cop.Handler(p.checkCSRF(h))) }
	page := func(h http.HandlerFunc) http.Handler { return p.person(h) }

	mux := http.NewServeMux()
	b := p.base
	mux.Handle("GET "+b+"/{$}", page(p.index))
	mux.Handle("GET "+b+"/requests/{id}", page(p.detail))
	mux.Handle("GET "+b+"/history", page(p.history))
	mux.HandleFunc("GET "+b+"/style.css", serveCSS)
	mux.Handle("POST "+b+"/decide", form(p.decide))
	mux.Handle("POST "+b+"/revoke", form(p.revoke))
	mux.Handle("POST "+b+"/suspend", form(p.suspend))
	mux.Handle("POST "+b+"/resume", form(p.resume))
	mux.Handle("POST "+b+"/narrow", form(p.narrow))
	mux.Handle("POST "+b+"/decide-stage", form(p.decideStage))
	mux.Handle("GET "+b+"/api/pending", p.admin(p.apiPending))
	mux.Handle("POST "+b+"/api/decide", p.admin(p.apiDecide))
	mux.Handle("GET "+b+"/api/authorizations", p.admin(p.apiAuthorizations))
	mux.Handle("POST "+b+"/api/revoke", p.admin(p.apiRevoke))
	mux.Handle("POST "+b+"/api/suspend", p.admin(p.apiSuspend(false)))
	mux.Handle("POST "+b+"/api/resume", p.admin(p.apiSuspend(true)))
	mux.Handle("POST "+b+"/api/decide-stage", p.admin(p.apiDecideStage))
	if h, ok := cfg.Authenticator.(http.Handler); ok {
		p.login = true
		mux.Handle(b+"/auth/", h)
	}
	if b != "" {
		mux.HandleFunc("GET "+b, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, b+"/", http.StatusSeeOther)
		})
	}
	p.handler = mux
	return p, nil
}

// URL returns the console's address.
func (p *Console) URL() string { return p.baseURL + "/" }

// ServeHTTP serves the page, its forms and the admin API.
func (p *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
func (p *Console) csrfToken(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 22 {
		v = c.Value
	} else {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		v = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	return p.sign(v)
}

func (p *Console) sign(cookie string) string {
	m := hmac.New(sha256.New, p.csrfKey)
	m.Write([]byte(cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCSRF refuses a form whose token is missing or not bound to the
// request's cookie.
func (p *Console) checkCSRF(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		c, err := r.Cookie(csrfCookie)
		tok := r.PostFormValue("csrf")
		if err != nil || tok == "" || !hmac.Equal([]byte(tok), []byte(p.sign(c.Value))) {
			http.Error(w, "Forbidden: missing or invalid form token (CSRF protection). Reload the page and try again.", http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// person authenticates a page or form request with Config.Authenticator;
// a person without a session is sent to the login when there is one.
func (p *Console) person(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := p.auth.Authenticate(r)
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				p.log.Warn("console: authentication failed", "err", err)
			}
			if p.login && r.Method == http.MethodGet {
				http.Redirect(w, r, p.base+"/auth/login?"+url.Values{"next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
				return
			}
			http.Error(w, "Unauthorized: sign in to use the approval console.", http.StatusUnauthorized)
			return
		}
		if id.Subject == "" {
			p.log.Error("console: the Authenticator returned an identity without a Subject")
			http.Error(w, "Unauthorized: sign in to use the approval console.", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, session{id, p.auth})))
	})
}

// who returns the identity person established.
func who(r *http.Request) Identity {
	id, _ := identityFrom(r.Context())
	return id
}

// admin authenticates the admin API with Config.APIAuthenticator.
func (p *Console) admin(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.api == nil {
			writeJSON(w, http.StatusNotFound, apiError("not_found", "the admin API is disabled"))
			return
		}
		id, err := p.api.Authenticate(r)
		if err != nil || id.Subject == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass-console"`)
			writeJSON(w, http.StatusUnauthorized, apiError("unauthorized", "missing or wrong credential"))
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, session{id, p.api})))
	})
}
