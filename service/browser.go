package service

import (
	"errors"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// maxInitToken bounds the token read from the query or form.
const maxInitToken = 256

// serveInitialize is the browser-session initialization endpoint: GET
// ?token=... (plain v0.1) or a form POST with initialization_token, which
// keeps the secret out of URLs, histories and logs. HEAD and prefetch
// requests never consume the token, so a browser's speculation cannot burn
// it. The token is consumed atomically
// before the session exists; the answer is a 303 to the destination
// approved at redemption, never to one taken from the request.
func (s *Service) serveInitialize(w http.ResponseWriter, r *http.Request) {
	a := &audit{event: eventInitialize, endpoint: "initialize", requestID: requestID(r)}
	h := w.Header()
	httpx.NoStoreNoCache(h)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	switch r.Method {
	case http.MethodGet, http.MethodPost:
	case http.MethodHead:
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		httpx.MethodNotAllowed(w, http.MethodGet, http.MethodPost, http.MethodHead)
		return
	}
	if isPrefetch(r) {
		s.fail(w, r, a, pass.Fail(pass.CodeInvalidRequest,
			"prefetch requests do not initialize sessions"))
		return
	}
	tok, err := initToken(w, r)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	ctx := r.Context()
	now := s.cfg.Now()
	in, err := s.cfg.Store.ConsumeInit(ctx, secret.Hash(tok), now)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, a, pass.Fail(pass.CodeInitTokenUnknown, "unknown initialization token"))
		return
	case errors.Is(err, ErrInitUsed):
		s.fail(w, r, a, pass.Fail(pass.CodeInitTokenUsed, "the initialization token was already used"))
		return
	case errors.Is(err, ErrInitExpired):
		s.fail(w, r, a, pass.Fail(pass.CodeInitTokenExpired, "the initialization token expired"))
		return
	default:
		s.fail(w, r, a, err)
		return
	}
	a.authorizationID = in.AuthorizationID
	rec, err := s.cfg.Store.Delegation(ctx, in.AuthorizationID)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.fromDelegation(rec)
	if rec.Invalidated || (!rec.ExpiresAt.IsZero() && !rec.ExpiresAt.After(now)) {
		s.fail(w, r, a, errDelegationRevoked("the delegation is no longer active"))
		return
	}
	dest := in.Destination
	if dest == "" || !s.destinationAllowed(dest) {
		dest = s.cfg.defDest
	}
	session := secret.Token(prefixSession)
	exp := capAt(now.Add(s.cfg.SessionTTL), rec.ExpiresAt)
	err = s.cfg.Store.AddCredential(ctx, &CredentialRecord{
		Hash: secret.Hash(session), Kind: KindSession, AuthorizationID: in.AuthorizationID,
		Scope: in.Scope, CreatedAt: now, ExpiresAt: exp,
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			err = errDelegationRevoked("the delegation is no longer active")
		}
		s.fail(w, r, a, storeError(err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     SessionCookie,
		Value:    session,
		Path:     "/",
		MaxAge:   int(exp.Sub(now) / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	s.auditOK(ctx, a)
	h.Set("Location", dest)
	w.WriteHeader(http.StatusSeeOther)
}

// initToken reads the token: the "token" query parameter of a GET, or the
// initialization_token field of an url-encoded form POST (never the query
// of a POST).
func initToken(w http.ResponseWriter, r *http.Request) (string, error) {
	var tok string
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		if len(q["token"]) > 1 {
			return "", pass.Fail(pass.CodeInvalidRequest, "one initialization token at a time")
		}
		tok = q.Get("token")
	} else {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return "", pass.Fail(pass.CodeUnsupportedMediaType,
				"Content-Type must be application/x-www-form-urlencoded")
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil {
			return "", pass.Fail(pass.CodeInvalidRequest, "malformed form").WithCause(err)
		}
		if len(r.PostForm[InitTokenField]) > 1 {
			return "", pass.Fail(pass.CodeInvalidRequest, "one initialization token at a time")
		}
		tok = r.PostForm.Get(InitTokenField)
	}
	if tok == "" || len(tok) > maxInitToken {
		return "", pass.Fail(pass.CodeInvalidRequest, "an initialization token is required")
	}
	return tok, nil
}

// isPrefetch reports a speculative request that must not consume the token:
// the real visit would then find it used.
func isPrefetch(r *http.Request) bool {
	for _, h := range []string{"Sec-Purpose", "Purpose", "X-Purpose", "X-Moz"} {
		if strings.Contains(strings.ToLower(r.Header.Get(h)), "prefetch") {
			return true
		}
	}
	return false
}
