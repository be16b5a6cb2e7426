package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/agentpass-go/agentpass/internal/outbound"
	"github.com/agentpass-go/agentpass/pass"
)

// OIDCConfig configures an OpenID Connect login for the console.
type OIDCConfig struct {
	// Issuer is the OpenID provider's issuer URL (https). Its discovery
	// document is fetched by NewOIDC. Required.
	Issuer string
	// ClientID is the console's client id at the provider. Required.
	ClientID string
	// ClientSecret is the client secret; empty for a public client,
	// which PKCE still protects.
	ClientSecret string
	// BaseURL is the console's Config.BaseURL. The redirect URI to
	// register at the provider is BaseURL + "/auth/callback". Required.
	BaseURL string
	// CookieKey signs the session and login cookies: at least 32 random
	// bytes, kept secret and shared by every replica. Changing it signs
	// everyone out. Required.
	CookieKey []byte
	// SessionTTL bounds a session; the person signs in again after it.
	// If zero, 8 hours. At most 7 days.
	SessionTTL time.Duration
	// MayDecide decides whether a person may decide for a user. If nil,
	// a person may decide for the users of their own verified e-mail
	// domain only.
	MayDecide func(id Identity, user string) bool
	// HTTPClient fetches the discovery document, the keys and tokens,
	// through the SDK's outbound policy (TLS, no redirects, no private
	// addresses). If nil, a default client.
	HTTPClient *http.Client
	// InsecureAllowPrivateNetworks lets the provider sit on a loopback or
	// private address (tests, a provider inside the network).
	InsecureAllowPrivateNetworks bool
	// Now is the clock of sessions. If nil, time.Now.
	Now func() time.Time
	// Logger receives sign-ins and refused callbacks (never a token). If
	// nil, nothing is logged.
	Logger *slog.Logger
}

// OIDC is a console Authenticator signing people in with OpenID Connect:
// the authorization code flow with PKCE and a nonce, the ID token verified
// against the provider's keys, and the session kept in a signed, Secure,
// HttpOnly, SameSite=Lax cookie with an expiry. The console serves it under
// {base}/auth/ (login, callback, logout). It is safe for concurrent use.
type OIDC struct {
	oauth     oauth2.Config
	verifier  *oidc.IDTokenVerifier
	client    *http.Client
	key       []byte
	ttl       time.Duration
	basePath  string
	session   string // cookie names, per console so consoles on one host do not clash
	login     string
	mayDecide func(Identity, string) bool
	now       func() time.Time
	log       *slog.Logger
}

// Bounds of the OIDC cookies and their wait.
const (
	loginTTL      = 10 * time.Minute
	maxCookie     = 3000
	maxSessionTTL = 7 * 24 * time.Hour
)

// NewOIDC validates cfg, fetches the provider's discovery document and
// returns the authenticator.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("console: OIDCConfig.Issuer and ClientID are required")
	}
	if u, err := url.Parse(cfg.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("console: OIDCConfig.Issuer %q is not an https URL", cfg.Issuer)
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || base.Scheme != "https" || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("console: OIDCConfig.BaseURL %q is not an https URL", cfg.BaseURL)
	}
	if len(cfg.CookieKey) < 32 {
		return nil, errors.New("console: OIDCConfig.CookieKey must have at least 32 bytes")
	}
	if cfg.SessionTTL < 0 || cfg.SessionTTL > maxSessionTTL {
		return nil, fmt.Errorf("console: OIDCConfig.SessionTTL must be between 0 and %v", maxSessionTTL)
	}
	client, err := outbound.New(outbound.Policy{Role: "console", Client: cfg.HTTPClient,
		AllowPrivateNetworks: cfg.InsecureAllowPrivateNetworks, Timeout: 15 * time.Second})
	if err != nil {
		return nil, err
	}
	// go-oidc takes its client from a context (it keeps the values, not
	// the deadline, for later key refreshes).
	fetch, cancel := context.WithTimeout(oidc.ClientContext(ctx, client), 15*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(fetch, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("console: OpenID provider %s: %w", cfg.Issuer, err)
	}
	basePath := strings.TrimSuffix(base.EscapedPath(), "/")
	tag := sha256.Sum256([]byte(cfg.BaseURL))
	suffix := base64.RawURLEncoding.EncodeToString(tag[:6])
	o := &OIDC{
		oauth: oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: strings.TrimSuffix(cfg.BaseURL, "/") + "/auth/callback",
			Scopes:      []string{oidc.ScopeOpenID, "email", "profile"},
		},
		verifier:  provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		client:    client,
		key:       slices.Clone(cfg.CookieKey),
		ttl:       cfg.SessionTTL,
		basePath:  basePath,
		session:   "__Host-agentpass-session-" + suffix,
		login:     "__Host-agentpass-login-" + suffix,
		mayDecide: cfg.MayDecide,
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if o.ttl == 0 {
		o.ttl = 8 * time.Hour
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// sessionClaims is the signed content of the session cookie.
type sessionClaims struct {
	Subject string `json:"s"`
	Name    string `json:"n,omitempty"`
	Expires int64  `json:"e"`
}

// loginState is the signed content of the login cookie, bound to one
// authorization request.
type loginState struct {
	State    string `json:"st"`
	Nonce    string `json:"no"`
	Verifier string `json:"v"`
	Next     string `json:"nx"`
	Expires  int64  `json:"e"`
}

// Authenticate returns the identity of a valid, unexpired session cookie.
func (o *OIDC) Authenticate(r *http.Request) (Identity, error) {
	var s sessionClaims
	if err := o.read(r, o.session, "session", &s); err != nil {
		return Identity{}, err
	}
	if s.Subject == "" || o.now().Unix() >= s.Expires {
		return Identity{}, ErrUnauthenticated
	}
	return Identity{Subject: s.Subject, Name: s.Name}, nil
}

// MayDecide applies OIDCConfig.MayDecide, or by default lets a person
// decide for the users of their own verified e-mail domain.
func (o *OIDC) MayDecide(id Identity, user string) bool {
	if o.mayDecide != nil {
		return o.mayDecide(id, user)
	}
	email, ok := strings.CutPrefix(id.Subject, "human:")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(email, '@')
	return i > 0 && domainIn([]string{email[i+1:]}, user)
}

// ServeHTTP serves {base}/auth/login, {base}/auth/callback and
// {base}/auth/logout.
func (o *OIDC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == o.basePath+"/auth/login":
		o.start(w, r)
	case r.Method == http.MethodGet && r.URL.Path == o.basePath+"/auth/callback":
		o.callback(w, r)
	case r.Method == http.MethodPost && r.URL.Path == o.basePath+"/auth/logout":
		if err := http.NewCrossOriginProtection().Check(r); err != nil {
			http.Error(w, "Forbidden: cross-origin request refused.", http.StatusForbidden)
			return
		}
		o.set(w, o.session, "", -1)
		http.Redirect(w, r, o.basePath+"/auth/login", http.StatusSeeOther)
	default:
		http.NotFound(w, r)
	}
}

// start sends the browser to the provider with a fresh state, nonce and
// PKCE verifier, remembered in the signed login cookie.
func (o *OIDC) start(w http.ResponseWriter, r *http.Request) {
	st := loginState{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Next: o.safeNext(r.URL.Query().Get("next")), Expires: o.now().Add(loginTTL).Unix()}
	if err := o.write(w, o.login, "login", st, int(loginTTL/time.Second)); err != nil {
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, o.oauth.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), http.StatusSeeOther)
}

// callback checks the state, redeems the code with the PKCE verifier,
// verifies the ID token and its nonce, and starts the session.
func (o *OIDC) callback(w http.ResponseWriter, r *http.Request) {
	refuse := func(why string, err error) {
		o.log.Warn("console: sign-in refused", "why", why, "err", err)
		o.set(w, o.login, "", -1)
		http.Error(w, "Sign-in failed ("+why+"). Start again from the console.", http.StatusUnauthorized)
	}
	var st loginState
	if err := o.read(r, o.login, "login", &st); err != nil || o.now().Unix() >= st.Expires {
		refuse("no sign-in in progress", err)
		return
	}
	q := r.URL.Query()
	if q.Get("error") != "" {
		refuse("the provider refused", nil) // its text is not shown: it is the provider's, not ours
		return
	}
	if got := q.Get("state"); got == "" || !hmac.Equal([]byte(got), []byte(st.State)) {
		refuse("state mismatch", nil)
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), o.client), 15*time.Second)
	defer cancel()
	tok, err := o.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		refuse("code exchange", err)
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		refuse("no ID token", nil)
		return
	}
	idt, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		refuse("ID token", err)
		return
	}
	if !hmac.Equal([]byte(idt.Nonce), []byte(st.Nonce)) {
		refuse("nonce mismatch", nil)
		return
	}
	var c struct {
		Email         string `json:"email"`
		EmailVerified bool   `json:"email_verified"`
		Name          string `json:"name"`
	}
	if err := idt.Claims(&c); err != nil {
		refuse("ID token claims", err)
		return
	}
	id := Identity{Subject: "oidc:" + idt.Subject, Name: c.Name}
	if email, err := pass.CanonicalEmail(c.Email); c.EmailVerified && err == nil {
		// A verified address is what people and auditors recognise.
		id.Subject = "human:" + email
	}
	if id.Name == "" {
		id.Name = strings.TrimPrefix(id.Subject, "human:")
	}
	exp := o.now().Add(o.ttl)
	if err := o.write(w, o.session, "session", sessionClaims{Subject: id.Subject, Name: id.Name, Expires: exp.Unix()}, int(o.ttl/time.Second)); err != nil {
		refuse("session", err)
		return
	}
	o.set(w, o.login, "", -1)
	o.log.Info("console: signed in", "subject", id.Subject)
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
}

// safeNext keeps a return path inside the console, so the login is never
// an open redirect.
func (o *OIDC) safeNext(next string) string {
	home := o.basePath + "/"
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil ||
		!strings.HasPrefix(u.Path, home) || strings.Contains(next, "\\") || strings.HasPrefix(next, "//") ||
		strings.HasPrefix(u.Path, o.basePath+"/auth/") {
		return home
	}
	return u.RequestURI()
}

// write sets cookie name to the signed JSON of v, under a purpose label so
// a login cookie can never be replayed as a session.
func (o *OIDC) write(w http.ResponseWriter, name, purpose string, v any, maxAge int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	val := payload + "." + base64.RawURLEncoding.EncodeToString(o.mac(purpose, payload))
	if len(val) > maxCookie {
		return errors.New("console: cookie too large")
	}
	o.set(w, name, val, maxAge)
	return nil
}

func (o *OIDC) read(r *http.Request, name, purpose string, v any) error {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) > maxCookie {
		return ErrUnauthenticated
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, o.mac(purpose, payload)) {
		return fmt.Errorf("%w: bad %s cookie signature", ErrUnauthenticated, purpose)
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(b, v) != nil {
		return fmt.Errorf("%w: bad %s cookie", ErrUnauthenticated, purpose)
	}
	return nil
}

func (o *OIDC) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, o.key)
	m.Write([]byte("agentpass-console-" + purpose + "\x00" + payload))
	return m.Sum(nil)
}

// set writes a __Host- cookie: Secure, host-only, Path=/, HttpOnly, and
// SameSite=Lax, which lets the provider's redirect back carry it while
// cross-site subrequests and POSTs do not.
func (o *OIDC) set(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
