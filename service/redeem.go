package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/proofwire"
	"github.com/agentpass-go/agentpass/internal/replayns"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Secret prefixes: they make leaked secrets recognisable to scanners.
const (
	prefixToken   = "apt_"
	prefixSession = "aps_"
	prefixInit    = "api_"
)

// redemption is the outcome of a successful redemption.
type redemption struct {
	rec    *DelegationRecord
	bearer *pass.BearerTokenResponse
	init   *pass.BrowserSessionResponse
}

// serveRedeem answers POST redeem-bearer-token and redeem-browser-session
// (§4.4, §4.5, §4.6).
func (s *Service) serveRedeem(w http.ResponseWriter, r *http.Request, typ pass.PassType) {
	a := &audit{event: eventRedeem, endpoint: string(typ), requestID: requestID(r)}
	h := w.Header()
	httpx.NoStoreNoCache(h)
	if r.Method != http.MethodPost {
		httpx.MethodNotAllowed(w, http.MethodPost)
		return
	}
	var req pass.RedemptionRequest
	if err := httpx.ReadRequest(w, r, &req); err != nil {
		s.fail(w, r, a, err)
		return
	}
	a.user, a.authority = req.User.Email, req.Authority
	if err := req.ValidateFor(typ); err != nil {
		s.fail(w, r, a, httpx.InvalidRequest(err))
		return
	}
	out, err := s.redeem(r.Context(), r, typ, &req, a)
	if err != nil {
		if errors.Is(err, errDPoP) {
			h.Set("WWW-Authenticate", `DPoP error="invalid_dpop_proof", algs="ES256 ES384 EdDSA RS256 PS256"`)
		}
		s.fail(w, r, a, err)
		return
	}
	telemetry.Annotate(r.Context(), a.user, a.agent, a.task, a.authority, a.authorizationID)
	s.auditOK(r.Context(), a)
	if out.bearer != nil {
		httpx.WriteJSON(w, http.StatusOK, out.bearer)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, out.init)
}

var errDPoP = errors.New("service: invalid DPoP proof")

// redeem runs the validation algorithm of §4.4 (steps 1–8, tightened where
// the spec leaves a gap) and mints the credential. Nothing is minted unless
// every check passed, so a refused redemption leaves no usable state.
func (s *Service) redeem(ctx context.Context, r *http.Request, typ pass.PassType, req *pass.RedemptionRequest, a *audit) (*redemption, error) {
	endpoint := s.urls.bearer
	if typ == pass.BrowserSession {
		endpoint = s.urls.browser
	}

	// RFC 9449 binding request: checked before the pass is consumed, so a
	// bad DPoP proof does not burn it; its jti is recorded only once the
	// pass and the holder proof have been accepted (below), so proofs
	// without a valid pass take no space in the replay store.
	var (
		jkt       string
		dpopProof *dpop.DPoPProof
	)
	if typ == pass.BearerToken {
		if proofs := r.Header.Values("DPoP"); len(proofs) > 0 {
			if len(proofs) > 1 {
				return nil, pass.Fail(pass.CodeInvalidRequest, "more than one DPoP header")
			}
			p, err := s.dpop.Check(proofs[0], http.MethodPost, endpoint, "", "")
			if err != nil {
				return nil, proofError(err, pass.CodeInvalidDPoPProof, errDPoP)
			}
			dpopProof, jkt = p, p.Claims().JKT
		}
	}

	// Steps 2–3: trust and precedence for the request's user, before the
	// Authority is called, so an untrusted Authority never sees the pass.
	set, err := s.trustFor(ctx, req.User.Email)
	if err != nil {
		return nil, err
	}
	src, err := s.accept(ctx, set, req.Authority)
	if err != nil {
		return nil, err
	}

	// Everything about the harness proof that needs no cnf (structure,
	// alg, typ, times, aud, htm/htu/aph when present or required, and a jti
	// not yet seen) is checked before the Authority consumes the pass, so a
	// Harness whose proof can never pass keeps its pass. Only the signature,
	// and the binding a pass turns out to require, wait for validation.
	var proof *dpop.Proof
	if req.HarnessProof != nil {
		p, err := s.proofs.Precheck(ctx, req.HarnessProof.JWT, dpop.ProofRequest{
			Method: http.MethodPost, URL: endpoint, AgentPass: req.AgentPass.Value,
			RequireBinding: s.cfg.RequireHardenedProofs,
		})
		if err != nil {
			return nil, proofError(err, pass.CodeInvalidHarnessProof, nil)
		}
		proof = p
	} else if s.cfg.RequireHardenedProofs {
		return nil, proofwire.FailReason(pass.CodeInvalidHarnessProof, proofwire.Missing)
	}

	// Step 4: the Authority validates and consumes the pass. Only it can
	// interpret a pass, so the Service never reads one itself.
	vr, err := s.validatePass(ctx, src, req.AgentPass.Value)
	if err != nil {
		return nil, err
	}
	out, err := s.redeemValidated(ctx, typ, req, a, endpoint, src, vr, proof, dpopProof, jkt)
	if err != nil {
		// The pass is consumed: a refusal now would leave a live delegation
		// without a credential at the Authority, so it is revoked.
		s.closeRefused(ctx, src, vr, err)
		return nil, err
	}
	return out, nil
}

// redeemValidated finishes a redemption whose pass the Authority has
// consumed: every check on the validation response, the holder proof's
// signature, the application's consent, then the credential.
func (s *Service) redeemValidated(ctx context.Context, typ pass.PassType, req *pass.RedemptionRequest, a *audit,
	endpoint string, src *source, vr *pass.ValidationResponse, proof *dpop.Proof, dpopProof *dpop.DPoPProof, jkt string) (_ *redemption, err error) {
	// With a store that records the harness proof in its Redeem statement,
	// a verified proof waits in held; a refusal before that statement
	// records it on its own, so every proof that passed its check is
	// recorded whatever happens next, as with any other store.
	held := &heldProof{}
	defer func() {
		if err != nil && held.p != nil {
			err = s.recordRefused(ctx, held.p, err)
		}
	}()
	a.user, a.agent, a.authorizationID = vr.User.Email, vr.Agent.ID, vr.AuthorizationID
	if vr.Task != nil {
		a.task = vr.Task.ID
	}
	if vr.Harness != nil {
		a.harness = vr.Harness.ID
	}
	now := s.cfg.Now()
	mission, err := s.missionOf(ctx, src, vr)
	if err != nil {
		return nil, err
	}
	var chain []pass.Actor
	var ancestors []string
	if mission != nil {
		a.missionID, a.missionVersion, a.historyHead = mission.ID, mission.Version, mission.HistoryHead
		if chain, ancestors, err = lineage(mission, vr.Agent.ID); err != nil {
			return nil, err
		}
		if len(ancestors) > 0 {
			a.parentMissionID = ancestors[0]
		}
	}

	// The pass must be of the endpoint's type: the Authority cannot know
	// which endpoint the Harness used.
	if vr.Type != typ {
		return nil, pass.Fail(pass.CodeTypeMismatch,
			"the AgentPass is not a "+string(typ)+" pass")
	}
	// The validated user is the request's user, and precedence holds for
	// the validated user's domain too: precedence ran on the Harness's
	// claim, and a lax Authority could have issued the pass for someone
	// an Enterprise Authority governs.
	if !pass.SameEmail(vr.User.Email, req.User.Email) {
		return nil, pass.Fail(pass.CodeUserMismatch,
			"the AgentPass was issued for another user")
	}
	// The delegation keeps the one canonical form of the address, so that an
	// application comparing Delegation.User with its own accounts never sees
	// two spellings of one mailbox. SameEmail above proved it parses.
	user, err := pass.CanonicalEmail(vr.User.Email)
	if err != nil {
		return nil, pass.Fail(pass.CodeUserMismatch,
			"the AgentPass was issued for another user")
	}
	// Precedence already ran on the request's address; an answer naming
	// the user byte for byte as the request did (nearly every one) has
	// nothing new to run it on, and any other spelling runs it again.
	if vr.User.Email != req.User.Email {
		set2, err := s.trustFor(ctx, vr.User.Email)
		if err != nil {
			return nil, err
		}
		src2, err := s.accept(ctx, set2, req.Authority)
		if err != nil {
			return nil, err
		}
		if src2.ref != src.ref || src2.mode != src.mode {
			return nil, pass.Fail(pass.CodePrecedenceViolation,
				"the Authority is not the one governing the validated user")
		}
	}
	if vr.AuthorizationExpiresAt != nil && !vr.AuthorizationExpiresAt.After(now) {
		return nil, pass.Fail(pass.CodeAgentPassExpired,
			"the delegation has already expired").WithStatus(http.StatusUnprocessableEntity)
	}

	// Step 7: holder binding. With cnf, a missing or foreign proof is
	// refused, or a stolen pass would work for whoever holds it.
	if vr.Cnf != nil {
		if req.HarnessProof == nil {
			return nil, proofwire.FailReason(pass.CodeInvalidHarnessProof, proofwire.Missing)
		}
		// A pass whose Harness asked for the hardening is never redeemed
		// with a proof lacking htm, htu or aph, whatever the redeemer
		// sends: the requirement follows the pass, not the request.
		preq := dpop.ProofRequest{
			Method: http.MethodPost, URL: endpoint, AgentPass: req.AgentPass.Value,
			RequireBinding: s.cfg.RequireHardenedProofs || vr.Harness != nil && vr.Harness.Extensions.Has(pass.ExtHolderBinding),
		}
		if vr.Harness != nil {
			preq.HarnessID = vr.Harness.ID
		}
		var claims *dpop.ProofClaims
		if s.recording != nil {
			if claims, err = s.proofs.Check(proof, vr.Cnf.JWK, preq); err == nil {
				held.p = proof
			}
		} else {
			claims, err = s.proofs.Complete(ctx, proof, vr.Cnf.JWK, preq)
		}
		if err != nil {
			return nil, proofError(err, pass.CodeInvalidHarnessProof, nil)
		}
		if a.harness == "" {
			a.harness = claims.Issuer
		}
	} else if req.HarnessProof != nil {
		s.cfg.Logger.LogAttrs(ctx, levelDebug, "agentpass: harness_proof ignored: the Authority returned no cnf", a.attrs("ignored")...)
	}

	// Steps 5–6: supported scopes, "*" expansion, requested_scope.
	// A mission staged in place is bounded by its ceiling, of which only
	// the current stage's scope is allowed now: later stages then work
	// without a new pass, and a check moves the current stage inside the
	// bound only.
	approved, staged := vr.Scope, stagedMission(src.cfg, mission)
	if staged {
		approved = mission.Ceiling
	}
	scope, err := s.grantScope(ctx, approved, req.RequestedScope, vr.User.Email)
	if err != nil {
		return nil, err
	}
	current := scope
	if staged {
		if current = scope.Intersect(vr.Scope); current.IsEmpty() {
			return nil, pass.Fail(pass.CodeScopeEmpty, "requested_scope and the mission's current stage have nothing in common")
		}
	}

	// Step 8: destination (browser sessions only), from the Authority and
	// never from the request, so the Service is no open redirect.
	dest := ""
	if typ == pass.BrowserSession {
		dest = s.cfg.defDest
		if vr.DestinationURL != "" {
			if !s.destinationAllowed(vr.DestinationURL) {
				return nil, pass.Fail(pass.CodeDestinationNotAllowed,
					"the approved destination is not allowed by this Service")
			}
			dest = vr.DestinationURL
		}
	}

	rec := &DelegationRecord{
		AuthorizationID:  vr.AuthorizationID,
		Authority:        src.cfg.Authority,
		ConfigurationURL: src.ref.AuthorityConfigurationURL,
		TrustMode:        src.mode,
		User:             user,
		Agent:            vr.Agent.ID,
		Scope:            scope,
		CurrentScope:     current,
		CreatedAt:        now,
		CheckedAt:        now,
	}
	if vr.Harness != nil {
		rec.HarnessID = vr.Harness.ID
	}
	if mission != nil {
		rec.MissionID, rec.MissionVersion, rec.MissionState = mission.ID, mission.Version, mission.State
		rec.Chain, rec.Ancestors = chain, ancestors
	}
	if staged {
		rec.Stage, rec.Stages = mission.Stage, slices.Clone(mission.Stages)
	}
	if vr.Task != nil {
		rec.Task = *vr.Task
	}
	if vr.AuthorizationExpiresAt != nil {
		rec.ExpiresAt = *vr.AuthorizationExpiresAt
	}
	if s.cfg.OnDelegation != nil {
		if err := s.cfg.OnDelegation(ctx, rec.delegation(nil)); err != nil {
			return nil, appError(err, http.StatusForbidden, pass.CodeDelegationRejected, "the Service refused this delegation")
		}
	}

	// The last step of the DPoP proof's verification: every trust check
	// has passed, so its jti may now take space in the replay store.
	if dpopProof != nil {
		if err := s.dpop.Record(ctx, dpopProof); err != nil {
			return nil, proofError(err, pass.CodeInvalidDPoPProof, errDPoP)
		}
	}
	if typ == pass.BearerToken {
		return s.mintToken(ctx, rec, jkt, now, held)
	}
	return s.mintInit(ctx, rec, dest, req.InitializationMethods, now, held)
}

// missionOf returns the mission of a validated pass, or nil when the
// Authority does not advertise the mission extension (its mission member,
// if any, is then ignored, as a plain v0.1 Service would). Validation
// answers only for an active mission, so any other state is refused like
// an unknown pass.
//
// The redemption's audit record names the mission id and version rather
// than history.head: the head is only in the mission record, and reading
// it would put a second call to the Authority on every redemption, while
// the version names the entry of the Authority's hash-chained history the
// delegation was created under.
func (s *Service) missionOf(ctx context.Context, src *source, vr *pass.ValidationResponse) (*pass.MissionInfo, error) {
	x := src.cfg.Extensions
	if ignored := x.Ignored(); len(ignored) > 0 {
		attrs := []slog.Attr{slog.String("authority", src.cfg.Authority)}
		for i, ig := range ignored[:min(len(ignored), 8)] {
			attrs = append(attrs, slog.String("ignored_"+strconv.Itoa(i), ig.URI+": "+ig.Reason))
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "agentpass authority extensions ignored", attrs...)
	}
	if !x.Has(pass.ExtMission) || vr.Mission == nil {
		return nil, nil
	}
	if err := vr.Mission.Validate(); err != nil || vr.Mission.State != pass.MissionActive {
		return nil, pass.Fail(pass.CodeAgentPassInvalid, "the AgentPass is not valid").WithCause(fmt.Errorf("service: validation answered mission state %q", vr.Mission.State))
	}
	return vr.Mission, nil
}

// lineage returns the delegation chain of a sub-agent's validated mission
// (outermost first, flattened) and its ancestor mission ids (parent first),
// both empty for a root mission. The chain must begin with the validated
// agent and its own mission, as the Authority derived them: a chain that
// names someone else as the current actor is an answer the Service cannot
// attribute, so the redemption is refused. Earlier actors are the
// Authority's word, used only to end delegations (the local cascade),
// never to grant anything.
func lineage(m *pass.MissionInfo, agent string) ([]pass.Actor, []string, error) {
	var chain []pass.Actor
	for a := m.Act; a != nil; a = a.Act {
		chain = append(chain, pass.Actor{Sub: a.Sub, MissionID: a.MissionID})
	}
	if m.Parent == "" && len(chain) == 0 {
		return nil, nil, nil
	}
	bad := func(why string) error {
		return pass.Fail(pass.CodeAgentPassInvalid, "the AgentPass is not valid").WithCause(errors.New("service: validation answered a delegation chain " + why))
	}
	switch {
	case m.Parent == "" || len(chain) == 1:
		return nil, nil, bad("without its parent")
	case len(chain) > 0 && chain[0].Sub != agent:
		return nil, nil, bad("whose current actor is not the validated agent")
	case len(chain) > 0 && chain[0].MissionID != "" && chain[0].MissionID != m.ID:
		return nil, nil, bad("whose current actor's mission is another")
	}
	ancestors := []string{m.Parent}
	for _, a := range chain[min(len(chain), 2):] {
		if a.MissionID == "" {
			continue
		}
		if a.MissionID == m.ID || slices.Contains(ancestors, a.MissionID) {
			return nil, nil, bad("with a cycle")
		}
		ancestors = append(ancestors, a.MissionID)
	}
	return chain, ancestors, nil
}

// stagedMission reports whether a validated mission is staged in place:
// the Authority advertises the stages extension (this Service always does)
// and sent a well-formed plan whose current stage and ceiling hold
// together. Anything less is read as a plain mission, bounded by the
// validated scope, which never allows more than v0.1 would.
func stagedMission(acfg *pass.AuthorityConfiguration, m *pass.MissionInfo) bool {
	if m == nil || !acfg.Extensions.Has(pass.ExtStages) || len(m.Ceiling) == 0 || m.Ceiling.HasWildcard() ||
		pass.ValidateStages(m.Stages) != nil {
		return false
	}
	i := slices.IndexFunc(m.Stages, func(st pass.Stage) bool { return st.Name == m.Stage })
	return i >= 0
}

// validatePass calls the Authority's validate endpoint with a signed Service
// assertion, so the Authority knows which Service consumes the pass, and
// maps its refusals to our codes (any refusal rejects the redemption).
func (s *Service) validatePass(ctx context.Context, src *source, value string) (*pass.ValidationResponse, error) {
	start := time.Now()
	ctx, span := s.tel.Start(ctx, "agentpass.validate", trace.SpanKindClient)
	vr, err := s.callValidate(ctx, src, value)
	outcome := telemetry.ErrOutcome(err)
	telemetry.End(span, outcome)
	s.tel.Validation(ctx, start, outcome)
	return vr, err
}

// callValidate is validatePass's call and the mapping of its answer.
func (s *Service) callValidate(ctx context.Context, src *source, value string) (*pass.ValidationResponse, error) {
	tok, err := assertion.Sign(s.cfg.Keys.Current(), s.cfg.origin, src.cfg.Authority, 0, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	// The answer and the request in one allocation.
	x := &struct {
		vr  pass.ValidationResponse
		req pass.ValidationRequest
	}{req: pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}}}
	_, err = httpx.Do(ctx, s.cfg.HTTPClient, httpx.Call{Peer: pass.PeerAuthority,
		URL:    src.cfg.Endpoints.Validate,
		Bearer: tok,
		Body:   &x.req,
	}, &x.vr)
	if err == nil {
		return &x.vr, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var pe *pass.PeerError
	if !errors.As(err, &pe) {
		var ue *pass.UnreachableError
		if errors.As(err, &ue) {
			return nil, pass.Fail(pass.CodeAuthorityUnavailable, "the Authority could not validate the AgentPass").WithCause(err)
		}
		// A 2xx answer that is not a valid validation response (wrong
		// types, a scope string instead of an array): the pass may be
		// consumed, but nothing is minted.
		return nil, pass.Fail(pass.CodeAuthorityUnavailable,
			"the Authority's validation response is invalid").WithCause(err)
	}
	switch {
	case pe.Status == http.StatusConflict:
		return nil, pass.Fail(pass.CodeAgentPassConsumed, "the AgentPass was already used").WithCause(err)
	case pe.Status == http.StatusGone:
		return nil, pass.Fail(pass.CodeAgentPassExpired, "the AgentPass expired").WithCause(err)
	case pe.Status == http.StatusForbidden:
		return nil, pass.Fail(pass.CodeAudienceMismatch, "the Authority refused this Service for the AgentPass").WithCause(err)
	case pe.Status == http.StatusNotFound, pe.Status == http.StatusBadRequest, pe.Status == http.StatusUnprocessableEntity:
		return nil, pass.Fail(pass.CodeAgentPassInvalid, "the AgentPass is not valid").WithCause(err)
	default: // 401 (our assertion refused), 429, 5xx, transport failures
		return nil, pass.Fail(pass.CodeAuthorityUnavailable, "the Authority could not validate the AgentPass").WithCause(err)
	}
}

// grantScope computes the effective scope (§4.4 steps 5–6): approved must
// be non-empty and made of defined scopes or "*"; "*" expands to the
// user's scopes; nothing outside the user's scopes is granted, so an agent
// never holds more than its user; requested_scope narrows ("*" in it means
// all approved); an empty result is refused.
func (s *Service) grantScope(ctx context.Context, approved, requested pass.Scope, email string) (pass.Scope, error) {
	if len(approved) == 0 {
		return nil, pass.Fail(pass.CodeScopeUnsupported, "the approved scope is empty")
	}
	for _, v := range approved {
		if v != pass.Wildcard && !s.cfg.supported[v] {
			return nil, pass.Fail(pass.CodeScopeUnsupported,
				"the approved scope contains a scope this Service does not define")
		}
	}
	user, err := s.userScopes(ctx, email)
	if err != nil {
		return nil, err
	}
	eff := approved.Expand(user).Intersect(user)
	if eff.IsEmpty() {
		return nil, pass.Fail(pass.CodeScopeEmpty, "the user holds none of the approved scopes")
	}
	if requested != nil && !requested.HasWildcard() {
		eff = eff.Intersect(requested)
		if eff.IsEmpty() {
			return nil, pass.Fail(pass.CodeScopeEmpty,
				"requested_scope and the approved scope have nothing in common")
		}
	}
	return eff, nil
}

// userScopes returns the user's scopes at the Service, restricted to the
// defined scopes.
func (s *Service) userScopes(ctx context.Context, email string) (pass.Scope, error) {
	if s.cfg.UserScopes == nil {
		out := make(pass.Scope, 0, len(s.cfg.Scopes))
		for _, sc := range s.cfg.Scopes {
			out = append(out, sc.Name)
		}
		return out, nil
	}
	got, err := s.cfg.UserScopes(ctx, email)
	if err != nil {
		return nil, appError(err, http.StatusInternalServerError, pass.CodeInternal, "the user's scopes are unavailable")
	}
	out := make(pass.Scope, 0, len(got))
	for _, v := range got {
		if s.cfg.supported[v] && !out.Has(v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// destinationAllowed applies the allow-policy to an absolute destination,
// so a session is never sent to a site the Service did not choose.
func (s *Service) destinationAllowed(dest string) bool {
	if pass.CheckHTTPSURL(dest) != nil || hasControl(dest) {
		return false
	}
	if s.cfg.AllowedDestinations != nil {
		return s.cfg.AllowedDestinations(dest)
	}
	return pass.SameOrigin(dest, s.cfg.origin)
}

// mintToken stores and returns a bearer token with the granted scope.
func (s *Service) mintToken(ctx context.Context, rec *DelegationRecord, jkt string, now time.Time, held *heldProof) (*redemption, error) {
	tok := secret.Token(prefixToken)
	exp := capAt(now.Add(s.cfg.TokenTTL), rec.ExpiresAt)
	c := &CredentialRecord{
		Hash: secret.Hash(tok), Kind: KindBearer, AuthorizationID: rec.AuthorizationID,
		Scope: rec.Scope, CreatedAt: now, ExpiresAt: exp,
	}
	tokenType := "Bearer"
	if jkt != "" {
		c.Kind, c.JKT, tokenType = KindDPoP, jkt, "DPoP"
	}
	if err := s.store(ctx, held, rec, c, nil); err != nil {
		return nil, err
	}
	s.redeemed(ctx, rec)
	// The outcome, the answer and its expires_in in one allocation.
	out := &struct {
		redemption
		bearer pass.BearerTokenResponse
		secs   int64
	}{secs: int64(exp.Sub(now) / time.Second)}
	out.bearer = pass.BearerTokenResponse{BearerToken: tok, Scope: rec.CurrentScope, ExpiresIn: &out.secs, TokenType: tokenType}
	out.redemption = redemption{rec: rec, bearer: &out.bearer}
	return &out.redemption, nil
}

// mintInit stores an initialization token together with the delegation, in
// one atomic step, so concurrent redemptions cannot both get one, and
// returns how to use it: a form POST for Harnesses that list "POST" (the
// secret then stays out of URLs and logs), else a GET URL carrying the
// token (plain v0.1).
func (s *Service) mintInit(ctx context.Context, rec *DelegationRecord, dest string, methods []string, now time.Time, held *heldProof) (*redemption, error) {
	tok := secret.Token(prefixInit)
	exp := capAt(now.Add(s.cfg.InitTTL), rec.ExpiresAt)
	in := &InitRecord{
		Hash: secret.Hash(tok), AuthorizationID: rec.AuthorizationID, Scope: rec.Scope,
		Destination: dest, CreatedAt: now, ExpiresAt: exp,
	}
	if err := s.store(ctx, held, rec, nil, in); err != nil {
		return nil, err
	}
	s.redeemed(ctx, rec)
	oneTime := true
	expUTC := exp.UTC()
	resp := &pass.BrowserSessionResponse{ExpiresAt: &expUTC, OneTime: &oneTime}
	if slices.Contains(methods, http.MethodPost) {
		resp.InitializationURL = s.urls.initialize
		resp.InitializationRequest = &pass.InitializationRequest{
			Method:     http.MethodPost,
			FormFields: map[string]string{InitTokenField: tok},
		}
	} else {
		resp.InitializationURL = s.urls.initialize + "?" + url.Values{"token": {tok}}.Encode()
	}
	return &redemption{rec: rec, init: resp}, nil
}

// heldProof is a harness proof whose signature Check verified and whose
// jti is still to be recorded (p nil once it is, or when there is none).
type heldProof struct{ p *dpop.Proof }

// store writes the delegation and its credential or initialization token.
// With a held proof the store records the proof's jti in the same
// statement, under the namespace and expiry the verifier's own cache would
// use, and writes nothing for a replayed proof, which is refused as a
// replay is at Complete. A store failure leaves the proof held, for
// recordRefused.
func (s *Service) store(ctx context.Context, held *heldProof, rec *DelegationRecord, c *CredentialRecord, in *InitRecord) error {
	if held.p == nil {
		return storeError(s.cfg.Store.Redeem(ctx, rec, c, in))
	}
	var proofErr error
	called := false
	err := s.recording.RedeemRecorded(ctx, s.cfg.ReplayCache, rec, c, in, func(rc dpop.ReplayCache) error {
		called = true
		proofErr = s.proofs.Record(ctx, held.p, replayns.Namespace(rc, replayRole+kindHarnessProof))
		return proofErr
	})
	switch {
	case !called && err == nil:
		// A store that wrote without recording: record now, as any other
		// store's proof is recorded; a replay found here is refused.
		p := held.p
		held.p = nil
		return s.recordRefused(ctx, p, nil)
	case errors.Is(proofErr, dpop.ErrInvalidProof):
		held.p = nil // refused: neither the pair nor the records are stored
		return proofError(proofErr, pass.CodeInvalidHarnessProof, nil)
	case err != nil:
		return storeError(err)
	case proofErr != nil: // a store that ignored record's failure
		return proofError(proofErr, pass.CodeInvalidHarnessProof, nil)
	}
	held.p = nil
	return nil
}

// recordRefused records the jti of a verified harness proof whose
// redemption failed before its store could record it, so that such a
// proof is not accepted again, with another pass of the same holder key if
// it names none. A replay or a cache failure takes precedence over err, as
// it would have had the proof been recorded before the later step.
func (s *Service) recordRefused(ctx context.Context, p *dpop.Proof, err error) error {
	// On a context of its own: a redemption refused because its client
	// went away (its context cancelled) must still record the proof, or
	// the proof, which the non-folded path recorded before any later
	// step, could be used again with another pass of the same key.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if rerr := s.proofs.Record(ctx, p, nil); rerr != nil {
		return proofError(rerr, pass.CodeInvalidHarnessProof, nil)
	}
	return err
}

// recordTimeout bounds recordRefused's record, which outlives the request.
const recordTimeout = 5 * time.Second

// capAt returns t, or limit when limit is set and earlier.
func capAt(t, limit time.Time) time.Time {
	if !limit.IsZero() && limit.Before(t) {
		return limit
	}
	return t
}

// storeError maps a store failure at minting time: a delegation redeemed
// twice is a consumed pass; anything else goes to wireError.
func storeError(err error) error {
	if errors.Is(err, ErrConflict) {
		return pass.Fail(pass.CodeAgentPassConsumed, "this delegation was already redeemed").WithCause(err)
	}
	return err
}

// proofError maps a harness-proof or DPoP verification failure to code
// with the fixed reason of the check that failed (a replay is 409); a
// replay-cache failure is not the proof's fault and is answered 503 by
// wireError (fail closed).
func proofError(err error, code pass.Code, mark error) error {
	if !errors.Is(err, dpop.ErrReplay) && !errors.Is(err, dpop.ErrInvalidProof) && !errors.Is(err, dpop.ErrInvalidDPoP) {
		return err
	}
	pe := proofwire.Fail(code, err)
	if mark != nil {
		return pe.WithCause(errors.Join(mark, err))
	}
	return pe.WithCause(err)
}

// appError passes a *pass.Error from the application through and wraps any
// other error.
func appError(err error, status int, code pass.Code, msg string) error {
	var pe *pass.Error
	if errors.As(err, &pe) {
		return pe
	}
	return pass.Fail(code, msg).WithStatus(status).WithCause(err)
}
