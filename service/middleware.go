package service

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Delegation is a live agent delegation as the application sees it: who
// the agent acts for, which agent, for which task, with which scope. The
// middleware puts it in the request context ([DelegationFrom]); the
// OnDelegation callback receives it before the first credential exists.
// The middleware builds one per credential and state of the delegation and
// reuses it for the credential's requests until the delegation changes;
// DelegationFrom and Service.Check hand out copies, so a handler may change
// the fields of its own. The slices (Scope, Chain and the like) are shared
// with the middleware's records: never write into them (replace them).
type Delegation struct {
	// AuthorizationID is the Authority's handle of the delegation; pass it
	// to [Service.CloseAuthorization].
	AuthorizationID string
	// Authority is the Authority identifier and TrustMode how it is
	// trusted (enterprise, federated or service).
	Authority string
	TrustMode pass.TrustMode
	// User is the validated user.email in canonical form (ASCII letters of
	// the local part lower-cased, the domain in DNS form, see
	// pass.CanonicalEmail): the account the agent acts for.
	User string
	// Agent is the validated agent.id.
	Agent string
	// HarnessID is the harness id reported by the Authority or proven by
	// the harness proof, when known.
	HarnessID string
	// Task is the validated task context, nil when the Authority sent none.
	Task *pass.Task
	// Scope is the effective scope now: what the credential was granted,
	// narrowed by the latest authorization check (never widened: the user
	// approved no more than the redemption granted).
	Scope pass.Scope
	// AuthorizationExpiresAt is the delegation's end, zero when the
	// Authority does not say.
	AuthorizationExpiresAt time.Time
	// Credential is how the request authenticated: bearer, DPoP-bound
	// token or browser session. Empty in OnDelegation.
	Credential CredentialKind
	// ExpiresAt is when the credential expires. Zero in OnDelegation.
	ExpiresAt time.Time
	// MissionID is the delegation's mission at its Authority, empty when
	// the Authority does not speak the mission extension. It is unique per
	// Authority only: compare (Authority, MissionID).
	MissionID string
	// Chain is, for a sub-agent, who acts for whom, outermost first: this
	// agent (Chain[0].Sub is Agent), then the agent it acts for, up to the
	// root, each with its mission id (Act nil). Empty for an agent acting
	// directly for the User. Only Agent and Scope should drive access
	// decisions; the chain is for audit and display.
	Chain []pass.Actor

	// A delegation staged in place: the bound every stage stays within
	// (the redemption-time scope and the credential's), the current stage
	// and the plan. They are read only when a scope is refused.
	bound, credScope pass.Scope
	stage            string
	stages           []pass.Stage
	missionVersion   int64

	// reporter reports refusals to the delegation's Authority (set by the
	// middleware when that Authority speaks the mission extension), with
	// the configuration URL the report endpoint is found through.
	reporter         *Service
	configurationURL string
}

// Allows reports whether the delegation's scope grants every given scope.
func (d *Delegation) Allows(scopes ...string) bool { return d.Scope.AllowsAll(scopes...) }

func (r *DelegationRecord) delegation(c *CredentialRecord) *Delegation {
	d := new(Delegation)
	r.fill(d, c, new(pass.Task))
	return d
}

// fill sets d from the delegation and, when c is not nil, the credential
// of a request; task is where d.Task points when the record has one. The
// scope is shared with c when the delegation's current scope grants all of
// it (the usual case), so the allowed path copies no slice.
func (r *DelegationRecord) fill(d *Delegation, c *CredentialRecord, task *pass.Task) {
	*d = Delegation{
		AuthorizationID:        r.AuthorizationID,
		Authority:              r.Authority,
		TrustMode:              r.TrustMode,
		User:                   r.User,
		Agent:                  r.Agent,
		HarnessID:              r.HarnessID,
		AuthorizationExpiresAt: r.ExpiresAt,
		MissionID:              r.MissionID,
		Chain:                  slices.Clone(r.Chain),
	}
	if r.Task != (pass.Task{}) {
		*task = r.Task
		d.Task = task
	}
	if r.staged() {
		d.bound, d.stage, d.stages, d.missionVersion = r.Scope, r.Stage, r.Stages, r.MissionVersion
	}
	if c != nil {
		d.credScope = c.Scope
		d.Scope = narrowed(c.Scope, r.CurrentScope)
		d.Credential = c.Kind
		d.ExpiresAt = c.ExpiresAt
	} else {
		d.Scope = cloneScope(r.CurrentScope)
	}
}

// narrowed is cred.Intersect(current) without a copy when the result is
// one of the two itself: cred when current grants every value of it (the
// usual case), or current when cred grants every value of current (a
// delegation staged in place, whose credential holds the bound and whose
// current scope is one stage's). Either side must hold neither the
// wildcard nor a repeated value to be shared.
func narrowed(cred, current pass.Scope) pass.Scope {
	if within(cred, current) {
		return cred
	}
	if within(current, cred) {
		return current
	}
	return cred.Intersect(current)
}

// within reports whether s, a short list without the wildcard or a
// repeated value, is granted entirely by by.
func within(s, by pass.Scope) bool {
	if len(s) == 0 || len(s) > 16 || s.HasWildcard() {
		return false
	}
	for i, v := range s {
		if !by.Allows(v) || slices.Contains(s[:i], v) {
			return false
		}
	}
	return true
}

// delegationView is a Delegation made from one snapshot of a delegation
// record and one credential, for one Service (which reports the
// delegation's refusals). Nothing changes it once made, so the requests
// that read the same snapshot share it.
type delegationView struct {
	snap *DelegationRecord
	svc  *Service
	d    Delegation
	task pass.Task

	// reusable: the snapshot, as the credential sees it, lets a request
	// through with no check as long as its last check is recent (not
	// invalidated, not told of a change, not held, some scope left).
	// until is the end of that, worked out once, so a request compares
	// times instead of subtracting them: CheckInterval after the check,
	// or the delegation's expiry when that comes first and untilExpiry
	// says the two could be folded into one comparison.
	reusable    bool
	untilExpiry bool
	until       time.Time
}

// init makes v's Delegation from its snapshot and the credential c.
func (v *delegationView) init(c *CredentialRecord) {
	r := v.snap
	r.fill(&v.d, c, &v.task)
	if r.MissionID != "" && v.svc.reports != nil {
		v.d.reporter, v.d.configurationURL = v.svc, r.ConfigurationURL
	}
	if v.svc.cfg == nil {
		return
	}
	v.reusable = !r.Invalidated && !r.Stale && !r.held() && !v.d.Scope.IsEmpty()
	v.until = r.CheckedAt.Add(v.svc.cfg.CheckInterval)
	// A time with a monotonic reading is compared with now by that
	// reading, one without by the wall clock, so the earlier of the two
	// ends may stand for both only when neither has one (a configured
	// clock, a check time read back from a store).
	switch {
	case r.ExpiresAt.IsZero():
		v.untilExpiry = true
	case v.until == v.until.Round(0) && r.ExpiresAt == r.ExpiresAt.Round(0):
		v.untilExpiry = true
		if r.ExpiresAt.Before(v.until) {
			v.until = r.ExpiresAt
		}
	}
}

// usableAt reports whether a request at now may use v without a check: the
// same answer Service.fresh gives from its cached path (a check time in the
// future is not fresh, nor is one CheckInterval old, nor an expired
// delegation), followed by check's empty-scope refusal.
func (v *delegationView) usableAt(now time.Time) bool {
	r := v.snap
	return v.reusable && now.Before(v.until) && !now.Before(r.CheckedAt) &&
		(v.untilExpiry || r.ExpiresAt.After(now))
}

// delegation returns the Delegation of the credential as of rec, the
// delegation's current snapshot, for s: the one made for an earlier
// request when the delegation has not changed since, so the hot path
// builds nothing. A view made from an older snapshot is never used (the
// snapshot pointer differs), whichever request stored it last.
func (c *memCred) delegation(s *Service, rec *DelegationRecord) *Delegation {
	if v := c.view.Load(); v != nil && v.snap == rec && v.svc == s {
		return &v.d
	}
	v := &delegationView{snap: rec, svc: s}
	v.init(c.rec)
	c.view.Store(v)
	return &v.d
}

// requestDelegation is the context the middleware hands to the next
// handler: the request's context and its delegation.
type requestDelegation struct {
	context.Context
	d *Delegation
}

// servedRequest is the request the middleware hands to the next handler
// with the context in it, in one allocation: Request.WithContext's copy
// would be one, and a context of its own another.
type servedRequest struct {
	r  http.Request
	rd requestDelegation
}

// serve returns r with a context that carries d.
func serve(r *http.Request, d *Delegation) *http.Request {
	sr := &servedRequest{rd: requestDelegation{Context: r.Context(), d: d}}
	// WithContext is inlined and its copy does not escape, so the copy
	// lives on the stack and only sr is allocated.
	sr.r = *r.WithContext(&sr.rd)
	return &sr.r
}

// Value returns the delegation for DelegationFrom and asks the parent
// context for any other key.
func (c *requestDelegation) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c.d
	}
	return c.Context.Value(key)
}

type ctxKey struct{}

// DelegationFrom returns the delegation the middleware authenticated for
// the request whose context is ctx, as a copy of its own: a handler may
// change its fields without affecting other requests. Its slices are
// shared, so never write into them (replace them instead).
func DelegationFrom(ctx context.Context) (*Delegation, bool) {
	d, ok := sharedDelegation(ctx)
	if !ok {
		return nil, false
	}
	cp := *d
	return &cp, true
}

// sharedDelegation returns the middleware's own Delegation for ctx, which
// the credential's requests share until the delegation changes: only this
// package reads it (RequireScope), and never writes to it.
func sharedDelegation(ctx context.Context) (*Delegation, bool) {
	// The middleware's own context, when no other wraps it, without the
	// dynamic call of Value.
	if rd, ok := ctx.(*requestDelegation); ok {
		return rd.d, rd.d != nil
	}
	d, ok := ctx.Value(ctxKey{}).(*Delegation)
	return d, ok
}

// WithDelegation returns a context carrying d, for tests of handlers that
// read DelegationFrom.
func WithDelegation(ctx context.Context, d *Delegation) context.Context {
	return context.WithValue(ctx, ctxKey{}, d)
}

// ErrNoCredential is returned by Check for a request that carries no
// AgentPass credential: no session cookie, and no Authorization header
// with a token this Service issued. Whether a token is ours is decided by
// its prefix (TokenPrefix), never by a store lookup, so another token
// reaches the application's own authentication and is never checked
// against ours. Applications that serve humans and agents on the same
// routes pass such requests on to their own authentication
// (Config.Fallback).
var ErrNoCredential = errors.New("service: no AgentPass credential")

// TokenPrefix starts every access token the Service issues, so that the
// middleware tells its own tokens from others without a lookup and secret
// scanners recognise a leaked one.
const TokenPrefix = prefixToken

// Middleware authenticates agent requests before next: a bearer token
// ("Authorization: Bearer"), a DPoP-bound token ("Authorization: DPoP"
// with a DPoP proof) or the browser-session cookie. It re-checks the
// delegation with its Authority when the last check is older than
// CheckInterval, so a revocation stops the agent within that time, puts
// the [Delegation] in the request
// context and calls next. Otherwise it answers 401 invalid_token or
// delegation_revoked, 403 scope_empty when an authorization check narrowed
// the delegation to no scope at all, 403 mission_suspended while the
// delegation's mission is suspended, or 503 authority_unavailable when the
// Authority cannot be reached (fail closed), with a WWW-Authenticate
// header.
//
// A request whose credential is not one this Service issued (see
// ErrNoCredential) goes to Config.Fallback when it is set.
//
// Sessions ride on a SameSite=Lax cookie: protect state-changing routes
// against cross-site requests (for example with http.CrossOriginProtection).
// DPoP proofs are checked against Origin plus r.URL.Path: mount the
// middleware where it sees the full request path (outside any
// http.StripPrefix).
func (s *Service) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.tel.Quiet(r.Context()) {
			s.serveObserved(w, r, next)
			return
		}
		d, rec, err := s.check(r, true)
		if err != nil {
			s.refuse(w, r, rec, err)
			return
		}
		next.ServeHTTP(w, serve(r, d))
	})
}

// serveObserved is the middleware when a span or a request count records
// it.
func (s *Service) serveObserved(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx, span := s.tel.Start(r.Context(), "agentpass.check", trace.SpanKindInternal)
	if span.IsRecording() {
		r = r.WithContext(ctx)
	}
	d, rec, err := s.check(r, false)
	s.observeCheck(ctx, span, rec, err)
	if err != nil {
		s.refuse(w, r, rec, err)
		return
	}
	next.ServeHTTP(w, serve(r, d))
}

// refuse passes a request without an AgentPass credential to the
// Fallback, when there is one, and denies any other failed check.
func (s *Service) refuse(w http.ResponseWriter, r *http.Request, rec *DelegationRecord, err error) {
	if s.cfg != nil && s.cfg.Fallback != nil && errors.Is(err, ErrNoCredential) {
		s.cfg.Fallback.ServeHTTP(w, r)
		return
	}
	s.deny(w, r, rec, err)
}

// observeCheck ends the middleware's span and counts the request, with
// the delegation's audit fields.
func (s *Service) observeCheck(ctx context.Context, span trace.Span, rec *DelegationRecord, err error) {
	outcome := telemetry.ErrOutcome(err)
	if errors.Is(err, ErrNoCredential) {
		outcome = "no_credential"
	}
	if rec != nil {
		telemetry.Annotate(ctx, rec.User, rec.Agent, rec.Task.ID, rec.Authority, rec.AuthorizationID)
	}
	telemetry.End(span, outcome)
	s.tel.Request(ctx, "middleware", outcome)
}

// Check authenticates r as Middleware does and returns its delegation, or
// an error: ErrNoCredential when r carries no AgentPass credential, a
// *pass.Error (matching pass.ErrUnauthenticated, pass.ErrRevoked or
// pass.ErrUnavailable, a 403 scope_empty when an authorization check left
// the delegation no scope, or a 403 mission_suspended while its mission is
// suspended) otherwise. It is safe for concurrent use. The Delegation is
// a copy of the caller's own; its slices are shared, so never write into
// them.
func (s *Service) Check(r *http.Request) (*Delegation, error) {
	d, _, err := s.check(r, false)
	if err != nil {
		return nil, err
	}
	cp := *d
	return &cp, nil
}

// check is Check that returns the middleware's Delegation, which requests
// may share (never write to it), and also the delegation record, when one
// was found, for the audit of a rejection. quiet says telemetry.T.Quiet
// held for the request, so a cached check need not be counted.
func (s *Service) check(r *http.Request, quiet bool) (*Delegation, *DelegationRecord, error) {
	if s == nil || s.cfg == nil {
		return nil, nil, pass.Fail(pass.CodeInternal, "service not configured").WithCause(errNotNew)
	}
	ctx := r.Context()
	kind, tok, err := credentialOf(r)
	if err != nil {
		return nil, nil, err
	}
	now := s.cfg.Now()
	c, rec, mc, err := s.credential(ctx, tok, now)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, errInvalidToken("unknown or expired credential")
		}
		return nil, nil, err
	}
	switch {
	case kind == KindBearer && c.Kind == KindBearer:
		// Presented as issued, the usual case: nothing else to test.
	case kind == KindSession && c.Kind != KindSession,
		kind != KindSession && c.Kind == KindSession:
		return nil, rec, errInvalidToken("credential presented the wrong way")
	case c.Kind == KindDPoP && kind != KindDPoP:
		return nil, rec, errInvalidToken("DPoP-bound token presented as a bearer token")
	case c.Kind == KindBearer && kind == KindDPoP:
		return nil, rec, errInvalidToken("bearer token presented as a DPoP token")
	}
	if c.Kind == KindDPoP {
		if err := s.checkDPoP(r, tok, c.JKT); err != nil {
			return nil, rec, err
		}
	}
	// The usual request: the Delegation made for this snapshot of the
	// delegation is there and its last check is recent.
	if mc != nil {
		if v := mc.view.Load(); v != nil && v.snap == rec && v.svc == s && v.usableAt(now) {
			if !quiet {
				s.tel.CheckCache(ctx, true)
			}
			return &v.d, rec, nil
		}
	}
	fresh, err := s.fresh(ctx, rec, now)
	if err != nil {
		return nil, rec, err
	}
	var d *Delegation
	if mc != nil && fresh == rec {
		d = mc.delegation(s, rec)
	} else {
		// A Store other than MemoryStore, or a record this request has
		// just checked: a Delegation for this request alone.
		v := &delegationView{snap: fresh, svc: s}
		v.init(c)
		d = &v.d
	}
	if d.Scope.IsEmpty() {
		// A check narrowed the delegation to nothing: no authority is
		// left, just as an empty scope is refused at redemption.
		return nil, fresh, pass.Fail(pass.CodeScopeEmpty, "the delegation grants no scope now")
	}
	return d, fresh, nil
}

// credential looks the token up: in a MemoryStore by its SHA-256, reading
// the snapshots in place and returning the entry that keeps the
// credential's Delegation; in any other Store by its hex hash.
func (s *Service) credential(ctx context.Context, tok string, now time.Time) (*CredentialRecord, *DelegationRecord, *memCred, error) {
	if m, ok := s.cfg.Store.(*MemoryStore); ok {
		sum := secret.Sum(tok)
		mc, rec, err := m.credentialSnapshot(ctx, &sum, now)
		if err != nil {
			return nil, nil, nil, err
		}
		return mc.rec, rec, mc, nil
	}
	c, rec, err := s.cfg.Store.Credential(ctx, secret.Hash(tok), now)
	return c, rec, nil, err
}

// credentialOf extracts the credential of a request.
func credentialOf(r *http.Request) (CredentialKind, string, error) {
	// The key is already canonical: index the header map directly rather
	// than canonicalize it again (Header.Get) on every request.
	if v := r.Header["Authorization"]; len(v) > 0 && v[0] != "" {
		h := v[0]
		// The usual request, "Bearer " and a token of ours ending in a
		// printable ASCII byte, needs neither a search nor a trim.
		// (Two short constant comparisons compile to a few loads; one of
		// eleven bytes calls memequal.)
		if len(h) <= len(bearerOurs)+512-len(prefixToken) && strings.HasPrefix(h, "Bearer ") &&
			strings.HasPrefix(h[len("Bearer "):], prefixToken) {
			if last := h[len(h)-1]; last > ' ' && last < 0x7f {
				return KindBearer, h[len("Bearer "):], nil
			}
		}
		var scheme, tok string
		if strings.HasPrefix(h, "Bearer ") {
			scheme, tok = h[:6], h[7:] // the usual spelling, without a search
		} else {
			scheme, tok, _ = strings.Cut(h, " ")
		}
		// A token of ours that ends in a printable ASCII byte has no space
		// for TrimSpace to remove.
		if !strings.HasPrefix(tok, prefixToken) || tok[len(tok)-1] <= ' ' || tok[len(tok)-1] >= 0x7f {
			tok = strings.TrimSpace(tok)
		}
		// Only the prefix decides whether a token is ours: another scheme
		// or token (the application's own API key) is not, and a session
		// cookie may still be present.
		if strings.HasPrefix(tok, prefixToken) {
			if len(tok) > 512 {
				return "", "", errInvalidToken("malformed Authorization header")
			}
			// The schemes are case-insensitive; their usual spelling is
			// matched first, without folding.
			switch {
			case scheme == "Bearer" || strings.EqualFold(scheme, "Bearer"):
				return KindBearer, tok, nil
			case scheme == "DPoP" || strings.EqualFold(scheme, "DPoP"):
				return KindDPoP, tok, nil
			}
		}
	}
	if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
		if len(ck.Value) > 512 {
			return "", "", errInvalidToken("malformed session cookie")
		}
		return KindSession, ck.Value, nil
	}
	return "", "", ErrNoCredential
}

// bearerOurs starts the usual Authorization header of a request with one
// of our tokens.
const bearerOurs = "Bearer " + prefixToken

// checkDPoP verifies the DPoP proof of a request made with a DPoP-bound
// token (RFC 9449 §7): htm and htu of this request, ath of the token, the
// token's key.
func (s *Service) checkDPoP(r *http.Request, tok, jkt string) error {
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return pass.Fail(pass.CodeInvalidToken, "exactly one DPoP proof is required").WithCause(errDPoP)
	}
	if _, err := s.dpop.Verify(r.Context(), proofs[0], r.Method, s.requestURL(r), tok, jkt); err != nil {
		return wireError(proofError(err, pass.CodeInvalidToken, errDPoP))
	}
	return nil
}

// requestURL is the URL of r as the client addressed it: the Service
// origin plus the path (query and fragment are not part of htu).
func (s *Service) requestURL(r *http.Request) string {
	p := r.URL.EscapedPath()
	if p == "" {
		p = "/"
	}
	return s.cfg.origin + p
}

func errInvalidToken(msg string) error {
	return pass.Fail(pass.CodeInvalidToken, msg)
}

// deny answers a failed Check; rec, when known, names the delegation in
// the audit record.
func (s *Service) deny(w http.ResponseWriter, r *http.Request, rec *DelegationRecord, err error) {
	if errors.Is(err, errNotNew) {
		httpx.NoStore(w.Header())
		httpx.WriteError(w, nil, err)
		return
	}
	a := &audit{event: eventRequest, endpoint: "middleware", requestID: requestID(r)}
	if rec != nil {
		a.fromDelegation(rec)
	}
	if errors.Is(err, ErrNoCredential) {
		err = pass.Fail(pass.CodeInvalidToken, "an AgentPass credential is required").WithCause(err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass"`)
		httpx.WriteError(w, nil, err)
		return
	}
	pe := wireError(err)
	scheme := "Bearer"
	if errors.Is(err, errDPoP) {
		scheme = "DPoP"
	}
	switch pe.Status {
	case http.StatusUnauthorized, http.StatusConflict:
		w.Header().Set("WWW-Authenticate", scheme+` realm="agentpass", error="invalid_token", error_description="`+string(pe.Code)+`"`)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(5))
	}
	httpx.NoStore(w.Header())
	s.fail(w, r, a, err)
}

// laterStage returns the stage of a delegation staged in place that would
// allow scopes, when every missing one is within the delegation's bound
// (so a stage move, not a new delegation, would allow the request), or "".
func (d *Delegation) laterStage(scopes, missing []string) string {
	if len(d.stages) == 0 {
		return ""
	}
	for _, m := range missing {
		if !d.bound.Allows(m) || d.credScope != nil && !d.credScope.Allows(m) {
			return ""
		}
	}
	for _, st := range d.stages {
		if st.Scope.AllowsAll(scopes...) {
			return st.Name
		}
	}
	for _, st := range d.stages {
		if st.Scope.Allows(missing[0]) {
			return st.Name
		}
	}
	return ""
}

// denyStage answers 403 stage_scope_exceeded: the scope belongs to a later
// stage of the delegation's mission. The body names the current stage (in
// mission) and the stage that would allow the request; the refusal is
// reported like any other.
func denyStage(w http.ResponseWriter, r *http.Request, d *Delegation, scopes []string, missing, later string) {
	d.observe(pass.ObservationStageScopeExceeded, missing, d.stage)
	body := pass.Failf(pass.CodeStageScopeExceeded, "scope %q needs stage %q; the mission is at stage %q", missing, later, d.stage).Body()
	body.Mission = &pass.MissionInfo{ID: d.MissionID, State: pass.MissionActive, Version: d.missionVersion, Stage: d.stage}
	body.RequiredStage = later
	w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass", error="insufficient_scope", scope="`+strings.Join(scopes, " ")+`"`)
	httpx.NoStore(w.Header())
	httpx.WriteJSON(w, http.StatusForbidden, &body)
}

// literally reports whether s holds every value of want itself.
func literally(s pass.Scope, want []string) bool {
	for _, w := range want {
		if !slices.Contains(s, w) {
			return false
		}
	}
	return true
}

// RequireScope returns middleware that lets a request through only when
// the delegation in its context (set by [Service.Middleware]) grants every
// given scope; otherwise it answers 403 insufficient_scope naming the first
// missing scope (403 stage_scope_exceeded, naming the stage that would
// allow it, when the scope belongs to a later stage of the delegation's
// mission), or 401 when no delegation is present (the scope middleware
// was mounted without the authentication middleware). When the
// delegation's Authority speaks the mission extension, each refusal is
// also reported to it (batched by [Service.Run]), so that an agent trying
// to step outside its mission becomes visible to the people who approved
// it.
func RequireScope(scopes ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, ok := sharedDelegation(r.Context())
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass"`)
				httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidToken, "an AgentPass credential is required"))
				return
			}
			// Granted literally (the usual case, tested inline) or through
			// the wildcard: nothing is built; the missing scopes are listed
			// only for a refusal.
			if literally(d.Scope, scopes) || d.Scope.AllowsAll(scopes...) {
				next.ServeHTTP(w, r)
				return
			}
			missing := d.Scope.Missing(scopes...)
			if later := d.laterStage(scopes, missing); later != "" {
				denyStage(w, r, d, scopes, missing[0], later)
				return
			}
			d.observe(pass.ObservationScopeDenied, missing[0], "")
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentpass", error="insufficient_scope", scope="`+strings.Join(scopes, " ")+`"`)
			httpx.WriteError(w, nil, pass.Failf(pass.CodeInsufficientScope,
				"the delegation lacks scope %q", missing[0]))
		})
	}
}
