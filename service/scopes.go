package service

import (
	"errors"
	"net/http"

	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// serveAvailableScopes answers POST available-scopes (§4.3): the caller
// must be an Authority this Service accepts for the body's user, proven by
// an assertion signed with a key of that Authority's jwks_uri. The
// assertion's iss only selects among the trusted sources; no URL is ever
// taken from the token, which anyone can sign.
func (s *Service) serveAvailableScopes(w http.ResponseWriter, r *http.Request) {
	a := &audit{event: eventScopes, endpoint: "available_scopes", requestID: requestID(r)}
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, http.MethodPost)
		return
	}
	token := httpx.BearerToken(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
		s.fail(w, r, a, pass.Fail(pass.CodeInvalidAssertion, "an Authority assertion is required"))
		return
	}
	var req pass.AvailableScopesRequest
	if err := httpx.ReadRequest(w, r, &req); err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.user, a.agent = req.User.Email, req.Agent.ID
	if req.Task != nil {
		a.task = req.Task.ID
	}
	tok, err := assertion.Parse(token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		s.fail(w, r, a, pass.Fail(pass.CodeInvalidAssertion, "invalid assertion").WithCause(err))
		return
	}
	iss := tok.Issuer()
	a.authority = iss
	ctx := r.Context()
	set, err := s.trustFor(ctx, req.User.Email)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	src, err := s.accept(ctx, set, iss)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	// The verifier ends with the jti replay step, shared by replicas
	// through the Store: every assertion of our Authorities carries a
	// fresh jti, so a repeated one is a replay.
	if _, err := s.verifier.Verify(ctx, tok, src.cfg.JWKSURI, src.cfg.Authority); err != nil {
		switch {
		case ctx.Err() != nil:
			s.fail(w, r, a, ctx.Err())
		case errors.Is(err, assertion.ErrReplay):
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			s.fail(w, r, a, pass.Fail(pass.CodeInvalidAssertion, "assertion replayed").WithCause(err))
		case errors.Is(err, assertion.ErrInvalid):
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			s.fail(w, r, a, pass.Fail(pass.CodeInvalidAssertion, "invalid assertion").WithCause(err))
		default:
			s.fail(w, r, a, pass.Fail(pass.CodeTemporarilyUnavailable, "try again later").WithCause(err))
		}
		return
	}
	q := ScopeQuery{User: req.User.Email, Agent: req.Agent.ID, Task: req.Task, Authority: src.ref.Authority, TrustMode: src.mode}
	scopes, err := s.availableScopes(r, q)
	if err != nil {
		s.fail(w, r, a, err)
		return
	}
	s.cfg.Logger.LogAttrs(ctx, levelDebug, a.event, a.attrs("ok")...)
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, pass.AvailableScopesResponse{Scopes: scopes})
}

// availableScopes asks the application, or defaults to Scopes restricted to
// the user's scopes; either way only defined scopes are returned.
func (s *Service) availableScopes(r *http.Request, q ScopeQuery) ([]pass.ScopeInfo, error) {
	ctx := r.Context()
	var list []pass.ScopeInfo
	if s.cfg.AvailableScopes != nil {
		got, err := s.cfg.AvailableScopes(ctx, q)
		if err != nil {
			return nil, appError(err, http.StatusInternalServerError, pass.CodeInternal, "available scopes failed")
		}
		list = got
	} else {
		user, err := s.userScopes(ctx, q.User)
		if err != nil {
			return nil, err
		}
		for _, sc := range s.cfg.Scopes {
			if user.Has(sc.Name) {
				list = append(list, sc)
			}
		}
	}
	out := make([]pass.ScopeInfo, 0, len(list))
	seen := map[string]bool{}
	for _, sc := range list {
		if s.cfg.supported[sc.Name] && !seen[sc.Name] {
			seen[sc.Name] = true
			out = append(out, sc)
		}
	}
	return out, nil
}
