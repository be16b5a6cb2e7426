package authority

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/proofwire"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// Prefixes of the secrets and ids the Authority mints.
const (
	requestIDPrefix       = "req_"
	passPrefix            = "ap_"
	authorizationIDPrefix = "authz_"
	maxIDLength           = 128
)

// serveIssuance is POST {issuance} (§5.3.1).
// A client or network over RateLimits.Issuance is refused before its body
// is read, a user or domain over it before anything is verified or stored,
// so a flood costs little and cannot fill the store.
func (a *Authority) serveIssuance(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if ok, wait := a.limits.issuance.AllowClient(a.limits.key(r)); !a.allow(w, r, "issuance", ok, wait) {
		return
	}
	var in pass.IssuanceRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, "issuance", err, slog.String("service", "-"))
		return
	}
	if ok, wait := a.limits.issuance.AllowUser(in.User.Email); !a.allow(w, r, "issuance", ok, wait) {
		return
	}
	attrs := []slog.Attr{
		slog.String("user", in.User.Email), slog.String("harness", in.Harness.ID),
		slog.String("task", in.Task.ID), slog.String("service", in.Service.Origin),
	}
	req, reqID, value, err := a.issue(r.Context(), &in)
	if err != nil {
		a.reject(w, "issuance", err, attrs...)
		return
	}
	attrs = append(attrs, slog.String("mission_id", req.MissionID), slog.String("request_id_hash", req.IDHash), slog.String("agent", req.AgentID),
		slog.String("tier", string(req.Tier)), slog.Bool("task_attested", req.TaskAttested),
		slog.String("outcome", string(req.Status)))
	if req.Decision != nil {
		attrs = append(attrs, slog.String("decided_by", req.Decision.DecidedBy), slog.Any("scope", req.Decision.Scope))
	}
	telemetry.Annotate(r.Context(), req.User, req.AgentID, req.TaskID, a.id, "")
	if req.Status != pass.StatusPending {
		a.tel.Decision(r.Context(), "policy", string(req.Status))
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "agentpass issuance", attrs...)
	if req.Status == pass.StatusPending && a.onPending != nil {
		a.onPending(r.Context(), *req.Clone())
	}
	httpx.WriteJSON(w, http.StatusAccepted, a.statusBody(req, reqID, value, req.State, a.now()))
}

// issue verifies an issuance request, asks the Approver and stores the
// request with its mission. It returns the request id (the polling secret,
// of which the store keeps only a hash) and the pass value when the request
// was approved at once.
func (a *Authority) issue(ctx context.Context, in *pass.IssuanceRequest) (*Request, string, string, error) {
	req, value, err := a.issueRequest(ctx, in)
	if err != nil {
		return nil, "", "", err
	}
	reqID := secret.ID(requestIDPrefix)
	req.IDHash = secret.Hash(reqID)
	if err := a.store.CreateRequest(ctx, req); err != nil {
		return nil, "", "", err // a full store is 503 temporarily_unavailable (wireError)
	}
	return req, reqID, value, nil
}

func (a *Authority) issueRequest(ctx context.Context, in *pass.IssuanceRequest) (*Request, string, error) {
	now := a.now()
	origin, err := pass.Origin(in.Service.Origin)
	if err != nil {
		return nil, "", httpx.InvalidRequest(err)
	}
	// Bound what one unauthenticated request can make the store keep.
	switch {
	case len(in.Task.Description) > maxTaskDescription:
		return nil, "", pass.Failf(pass.CodeInvalidRequest, "task.description is longer than %d bytes", maxTaskDescription)
	case len(in.Task.ID) > maxIDLength, len(in.Harness.ID) > maxIDLength:
		return nil, "", pass.Failf(pass.CodeInvalidRequest, "task.id and harness.id must be at most %d bytes", maxIDLength)
	}
	hardened := in.Harness.Extensions.Has(pass.ExtHolderBinding)
	switch {
	case hardened && in.Harness.Cnf == nil:
		return nil, "", pass.Fail(pass.CodeInvalidRequest, "harness.extensions lists holder-binding: harness.cnf is required")
	case a.hardened && !hardened:
		return nil, "", pass.Fail(pass.CodeInvalidRequest, "this Authority requires the holder-binding extension in harness.extensions")
	}
	// A task attestation must verify before anything else: one that fails
	// refuses the request, it is never just ignored.
	attested := false
	if in.Task.Attestation != nil {
		var cnf []byte
		if in.Harness.Cnf != nil {
			cnf = in.Harness.Cnf.JWK
		}
		if err := dpop.VerifyTaskAttestation(in.Task.Attestation.JWT, cnf, in.Harness.ID, in.Task.ID, in.Task.Description, now, 0); err != nil {
			return nil, "", pass.Fail(pass.CodeInvalidTaskAttest, "task attestation failed verification").WithCause(err)
		}
		attested = true
	}
	// Harness identity and trust tier: the agent id is the attested sub,
	// the registered name, or else harness.id.
	ident, err := a.attest.Verify(ctx, in.Harness)
	switch {
	case errors.Is(err, dpop.ErrUntrustedAttester):
		return nil, "", pass.Fail(pass.CodeInvalidAttestation, "the attestation issuer is not trusted by this Authority").WithStatus(http.StatusForbidden).WithCause(err)
	case errors.Is(err, dpop.ErrInvalidConfig):
		return nil, "", err
	case err != nil:
		return nil, "", pass.Fail(pass.CodeInvalidAttestation, "harness attestation failed verification").WithCause(err)
	}
	if !slices.Contains(a.tiers, ident.Tier) {
		return nil, "", pass.Failf(pass.CodeTrustTierRejected, "harness trust tier %q is not accepted by this Authority", ident.Tier)
	}
	// An Enterprise Authority serves only the domains that name it.
	if a.domainGate {
		if err := a.checkDomain(ctx, in.User.Email); err != nil {
			return nil, "", err
		}
	}
	// The Service must be discoverable and describe service.origin, so no
	// pass is issued for an origin that does not run AgentPass.
	svc, err := a.disc.DiscoverService(ctx, origin)
	if err != nil {
		return nil, "", discoveryError(err, "the Service could not be discovered")
	}
	dest := ""
	if in.Type == pass.BrowserSession && in.Intent != nil && in.Intent.DestinationURL != "" {
		if !pass.SameOrigin(in.Intent.DestinationURL, origin) {
			return nil, "", pass.Fail(pass.CodeDestinationNotAllowed, "intent.destination_url must be same-origin with service.origin")
		}
		dest = in.Intent.DestinationURL
	}
	// Ask the Service which scopes it offers: an approval can grant only
	// those.
	offered, err := a.availableScopes(ctx, svc.Configuration, origin, in.User.Email, ident.AgentID, in.Task)
	if err != nil {
		return nil, "", err
	}
	avail := make(pass.Scope, len(offered))
	for i, s := range offered {
		avail[i] = s.Name
	}
	req := &Request{
		MissionID: secret.ID(pass.MissionIDPrefix), Status: pass.StatusPending, CreatedAt: now, ExpiresAt: now.Add(a.reqTTL),
		Type: in.Type, Service: origin, User: in.User.Email, HarnessID: in.Harness.ID,
		AgentID: ident.AgentID, Tier: ident.Tier, AttestationIssuer: ident.Issuer,
		TaskID: in.Task.ID, TaskDescription: in.Task.Description, TaskAttested: attested,
		DestinationURL: dest, AvailableScope: avail,
	}
	if in.Harness.Cnf != nil {
		req.Cnf = cloneRaw(in.Harness.Cnf.JWK)
		req.HardenedBinding = hardened
	}
	req.Effects = a.effectsOf(offered)
	person, err := a.planScope(ctx, req, in, offered)
	if err != nil {
		return nil, "", err
	}
	// The plan comes from the request, else from the proposal. Transitions
	// need the holder key's proof, so a Harness without one gets any plan
	// collapsed, like one that does not speak stages.
	var proposed []pass.Stage
	if req.Proposal != nil {
		proposed = req.Proposal.Stages
	}
	req.Stages = a.planFor(ctx, req, in.Stages, proposed, svc.Configuration.Extensions.Has(pass.ExtStages),
		in.Harness.Extensions.Has(pass.ExtStages) && in.Harness.Cnf != nil)
	d := a.decide(ctx, req)
	if len(req.AvailableScope) > 0 {
		d = a.gate(ctx, req, person, d)
	}
	if d.Outcome == Approve && len(req.Stages) > 0 && req.Stages[0].Gate == pass.GateHuman {
		// The first stage is gated by its effects like any later one: no
		// policy enters it on a person's behalf.
		d = Decision{Outcome: Pending, Scope: d.Scope, DecidedBy: d.DecidedBy}
	}
	value := ""
	switch d.Outcome {
	case Pending:
		if d.Scope != nil && req.ProposedScope == nil {
			if s, err := a.grantScope(req, d.Scope); err == nil {
				req.ProposedScope, req.ProposedBy = s, d.DecidedBy
			}
		}
	default:
		e, err := a.evidence(req, d, now)
		if err != nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass approver decision unusable; request left pending",
				slog.String("mission_id", req.MissionID), slog.String("reason", err.Error()))
			break
		}
		if e.Status == pass.StatusApproved {
			e.ScopeDecision = scopeDecision(req, e.Scope, false)
		}
		granted := d
		granted.Scope = e.Scope
		if a.validateDecision(ctx, req, granted) != nil {
			break // left to a person; validateDecision logged why
		}
		req.Status, req.Decision = e.Status, &e
		if e.Status == pass.StatusApproved {
			value = secret.Token(passPrefix)
			req.PassHash = secret.Hash(value)
		}
	}
	return req, value, nil
}

// decide asks the Approver; an error or panic-free misuse leaves the request
// pending. A Service offering nothing is denied at once.
func (a *Authority) decide(ctx context.Context, req *Request) Decision {
	if len(req.AvailableScope) == 0 {
		return Decision{Outcome: Deny, DecidedBy: "authority", Reason: "the Service offers no scopes for this user and agent"}
	}
	d, err := a.approver.Decide(ctx, req.Clone())
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass approver failed; request left pending",
			slog.String("mission_id", req.MissionID), slog.String("reason", err.Error()))
		return Decision{Outcome: Pending}
	}
	if d.Outcome == Cancel {
		d.Outcome = Deny
	}
	if d.DecidedBy == "" {
		d.DecidedBy = "approver"
	}
	return d
}

// checkDomain refuses a user whose domain's _agentpass record does not
// point to this Authority, so it approves only for domains it serves.
func (a *Authority) checkDomain(ctx context.Context, email string) error {
	domain, err := pass.EmailDomain(email)
	if err != nil {
		return httpx.InvalidRequest(err)
	}
	u, err := a.disc.LookupEnterpriseTXT(ctx, domain)
	switch {
	case errors.Is(err, discovery.ErrDelegationDisabled):
		return pass.Fail(pass.CodeDelegationDisabled, "the user's domain has disabled agent delegation").WithCause(err)
	case errors.Is(err, discovery.ErrNoRecord) || errors.Is(err, discovery.ErrInvalidRecord):
		return pass.Fail(pass.CodeUntrustedAuthority, "this Authority does not serve the user's domain").WithCause(err)
	case err != nil:
		return pass.Fail(pass.CodeDiscoveryFailed, "enterprise discovery for the user's domain failed").WithCause(err)
	case u != a.ConfigurationURL():
		return pass.Fail(pass.CodeUntrustedAuthority, "this Authority does not serve the user's domain")
	}
	return nil
}

// discoveryError maps a Service discovery failure: transient failures are
// 502, a Service that does not exist or misdescribes itself is 422.
func discoveryError(err error, msg string) *pass.Error {
	if errors.Is(err, discovery.ErrLookupFailed) || errors.Is(err, discovery.ErrFetchFailed) {
		return pass.Fail(pass.CodeDiscoveryFailed, msg).WithCause(err)
	}
	return pass.Fail(pass.CodeServiceUnverified, msg).WithStatus(http.StatusUnprocessableEntity).WithCause(err)
}

// availableScopes calls the Service's available_scopes endpoint with a
// signed assertion (§4.3).
func (a *Authority) availableScopes(ctx context.Context, cfg *pass.ServiceConfiguration, origin, email, agentID string, task pass.Task) ([]AvailableScope, error) {
	now := a.now()
	tok, err := assertion.Sign(a.keys.Current(), a.id, origin, assertion.DefaultTTL, now)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, defaultScopesTimeout)
	defer cancel()
	body := pass.AvailableScopesRequest{
		User: pass.User{Email: email}, Agent: pass.Agent{ID: agentID},
		Task: &pass.Task{ID: task.ID, Description: task.Description},
	}
	var out pass.AvailableScopesResponse
	_, err = httpx.Do(ctx, a.client, httpx.Call{Peer: pass.PeerService, URL: cfg.Endpoints.AvailableScopes, Bearer: tok, Body: body}, &out)
	if err != nil {
		var pe *pass.PeerError
		if errors.As(err, &pe) && (pe.Status == http.StatusUnauthorized || pe.Status == http.StatusForbidden) {
			return nil, pass.Fail(pass.CodeUntrustedAuthority, "the Service does not accept this Authority").WithCause(err)
		}
		return nil, pass.Fail(pass.CodeServiceUnverified, "the Service's available_scopes endpoint failed").WithCause(err)
	}
	names := out.Names()
	if len(names) > maxAvailableScopes {
		return nil, pass.Failf(pass.CodeServiceUnverified, "the Service offered more than %d scopes", maxAvailableScopes)
	}
	// One entry per name; a name listed twice keeps its first description
	// and the highest effect it was declared with.
	scopes := make([]AvailableScope, 0, len(names))
	at := make(map[string]int, len(names))
	for _, s := range out.Scopes {
		if len(s.Name) > maxScopeName {
			return nil, pass.Failf(pass.CodeServiceUnverified, "the Service offered a scope name longer than %d bytes", maxScopeName)
		}
		e := declaredEffect(s.Effect)
		if i, dup := at[s.Name]; dup {
			if e.Compare(scopes[i].Effect) > 0 || scopes[i].Effect == "" {
				scopes[i].Effect = e
			}
			continue
		}
		at[s.Name] = len(scopes)
		scopes = append(scopes, AvailableScope{Name: s.Name, Description: truncateUTF8(s.Description, maxScopeDescription), Effect: e})
	}
	return scopes, nil
}

// maxScopeDescription bounds a scope description kept for a compiler.
const maxScopeDescription = 512

// declaredEffect reads a Service's effect member: empty stays empty (not
// declared), a known effect is kept, anything else is unknown.
func declaredEffect(s string) Effect {
	if s == "" {
		return ""
	}
	return normalEffect(Effect(s))
}

// truncateUTF8 cuts s to at most n bytes at a rune boundary and replaces
// invalid UTF-8, so a Service's text can be hashed and shown.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Bounds on what an issuance request and a Service's scope list may make an
// Authority store, so the memory a record costs stays small whatever a
// caller or a Service sends.
const (
	// maxTaskDescription is the longest task.description accepted (bytes).
	maxTaskDescription = 4096
	// maxAvailableScopes is the most scopes kept from available_scopes;
	// a Service offering more fails the issuance (502).
	maxAvailableScopes = 256
	maxScopeName       = 256
)

// serveStatus is GET {issuance_status} (§5.3.2). The endpoint is
// unauthenticated and its URL is the Harness's secret: answers are
// no-store, a client over RateLimits.Status is refused before the store is
// read, and once the pass was redeemed or expired the answer is 410, so an
// old status URL never yields a pass again.
func (a *Authority) serveStatus(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if ok, wait := a.limits.status.AllowClient(a.limits.key(r)); !a.allow(w, r, "status", ok, wait) {
		return
	}
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDLength {
		a.reject(w, "status", pass.Fail(pass.CodeRequestUnknown, "unknown request"))
		return
	}
	ctx := r.Context()
	req, err := a.store.RequestByIDHash(ctx, secret.Hash(id))
	if errors.Is(err, ErrNotFound) {
		a.reject(w, "status", pass.Fail(pass.CodeRequestUnknown, "unknown request"))
		return
	} else if err != nil {
		a.reject(w, "status", err)
		return
	}
	// The first reader after a deadline commits the expiry.
	req, state, err := a.missionState(ctx, req)
	if err != nil {
		a.reject(w, "status", err)
		return
	}
	now := a.now()
	value := ""
	if req.StatusAt(now) == pass.StatusApproved && req.ConsumedAt.IsZero() {
		attrs := []slog.Attr{slog.String("mission_id", req.MissionID), slog.String("harness", req.HarnessID)}
		if state != pass.MissionActive {
			// A mission that ended or is held before redemption gets no
			// new pass: validation would refuse it anyway.
			a.reject(w, "status", pass.Fail(pass.CodeRequestGone, "the AgentPass of this request is no longer valid"), attrs...)
			return
		}
		// Only a Harness that opted into the hardening proves its key here;
		// for any other request the unguessable, rate-limited, no-store
		// status URL is the credential, as v0.1 defines it, and holder
		// binding at redemption makes a leaked pass useless.
		if req.HardenedBinding {
			if err := a.checkStatusProof(ctx, r, req, id); err != nil {
				a.reject(w, "status", err, attrs...)
				return
			}
		}
		value = secret.Token(passPrefix)
		req, err = a.store.RotatePass(ctx, req.MissionID, secret.Hash(value), now)
		switch {
		case errors.Is(err, ErrConsumed):
			a.reject(w, "status", pass.Fail(pass.CodeRequestGone, "the AgentPass of this request was already redeemed"), attrs...)
			return
		case errors.Is(err, ErrExpired):
			a.reject(w, "status", pass.Fail(pass.CodeRequestGone, "the AgentPass of this request has expired"), attrs...)
			return
		case err != nil:
			a.reject(w, "status", err, attrs...)
			return
		}
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass delivered", slog.String("mission_id", req.MissionID),
			slog.String("user", req.User), slog.String("agent", req.AgentID), slog.String("service", req.Service),
			slog.String("task", req.TaskID), slog.String("outcome", "ok"))
	} else if req.StatusAt(now) == pass.StatusApproved {
		a.reject(w, "status", pass.Fail(pass.CodeRequestGone, "the AgentPass of this request was already redeemed"),
			slog.String("mission_id", req.MissionID))
		return
	}
	st := a.statusBody(req, id, value, state, now)
	if st.Status == pass.StatusPending && a.compiler != nil && req.Cnf != nil && r.Header.Get(pass.ProofHeader) != "" {
		// The proposal goes only to the holder of the request's key; any
		// other poller, or a bad proof, gets the plain pending status.
		if err := a.checkStatusProof(ctx, r, req, id); err == nil {
			st.Proposal = a.statusProposal(req)
		} else {
			a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass status proposal withheld", slog.String("mission_id", req.MissionID),
				slog.String("reason", err.Error()))
		}
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

// checkStatusProof requires the holder proof of pass.ProofHeader; a refusal
// names the failed check from the fixed set of proof reasons.
func (a *Authority) checkStatusProof(ctx context.Context, r *http.Request, req *Request, reqID string) error {
	proof := r.Header.Get(pass.ProofHeader)
	if proof == "" {
		return pass.Fail(pass.CodeProofRequired, "reading an approved request needs a proof of the holder key in the "+pass.ProofHeader+" header")
	}
	if req.Cnf == nil {
		return proofwire.FailReason(pass.CodeProofRequired, proofwire.BadKey).WithStatus(http.StatusUnauthorized)
	}
	_, err := a.proofs.Verify(ctx, proof, req.Cnf, dpop.ProofRequest{
		Method: http.MethodGet, URL: a.StatusURL(reqID), AgentPass: reqID, HarnessID: req.HarnessID,
		RequireBinding: true,
	})
	if err != nil {
		if !errors.Is(err, dpop.ErrInvalidProof) {
			return err // the replay cache failed: wireError answers 503
		}
		return proofwire.Fail(pass.CodeProofRequired, err).WithStatus(http.StatusUnauthorized).WithCause(err)
	}
	return nil
}

// statusBody renders the issuance-status document of req at now; reqID is
// the request id the Harness holds, value the pass value to deliver
// (approved only) and state the mission's state as every surface reports
// it. The v0.1 status stays approved once approved; the mission member
// carries the live state.
func (a *Authority) statusBody(req *Request, reqID, value string, state pass.MissionState, now time.Time) *pass.IssuanceStatus {
	st := &pass.IssuanceStatus{ID: reqID, Status: req.StatusAt(now), Type: req.Type, Links: &pass.Links{Self: a.StatusURL(reqID)},
		Mission: &pass.MissionInfo{ID: req.MissionID, State: state, Version: req.Version}}
	switch st.Status {
	case pass.StatusPending:
		ms := a.pollAfter.Milliseconds()
		st.PollAfterMS = &ms
		exp := req.ExpiresAt.UTC()
		st.ExpiresAt = &exp
		if a.approval != nil {
			st.Links.Approval = a.approval(req.MissionID)
		}
	case pass.StatusApproved:
		exp := req.Decision.PassExpiresAt.UTC()
		st.ExpiresAt = &exp
		st.AgentPass = &pass.AgentPass{Type: req.Type, Value: value}
	case pass.StatusExpired:
		st.Reason = "the request was not decided in time"
	default:
		if req.Decision != nil {
			st.Reason = req.Decision.Reason
		}
	}
	return st
}

// reject answers err as a structured error and logs it: the one place the
// Authority writes an error, through wireError.
func (a *Authority) reject(w http.ResponseWriter, event string, err error, attrs ...slog.Attr) {
	if pe := wireError(err); pe.Code != pass.CodeInternal {
		err = pe
	}
	var pe *pass.Error
	if errors.As(err, &pe) {
		attrs = append(attrs, slog.String("outcome", "rejected"), slog.String("code", string(pe.Code)), slog.Int("status", pe.Status))
		if pe.Err != nil {
			attrs = append(attrs, slog.String("reason", pe.Err.Error()))
		} else {
			attrs = append(attrs, slog.String("reason", pe.Message))
		}
		a.log.LogAttrs(context.Background(), slog.LevelInfo, "agentpass "+event, attrs...)
	} else {
		attrs = append(attrs, slog.String("outcome", "error"), slog.String("reason", err.Error()))
		a.log.LogAttrs(context.Background(), slog.LevelError, "agentpass "+event, attrs...)
	}
	httpx.WriteError(w, nil, err)
}

// answers maps any error of an Authority handler to what the peer sees
// (the one mapping of internal/httpx, with the Authority's own sentinels).
var answers = httpx.Answers{Busy: []error{ErrStoreFull}, Self: "the Authority",
	PeerCode: pass.CodeServiceUnverified, Peer: "the Service"}

func wireError(err error) *pass.Error { return answers.Wire(err) }

// logID shortens a secret id for logs and pages: enough to correlate, not
// enough to poll the status (a request id is a bearer secret for polling).
func logID(id string) string {
	if len(id) > 12 {
		return id[:12] + "…"
	}
	return id
}
