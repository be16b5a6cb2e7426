package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/foldmark"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/replayns"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

var errNoAssertion = pass.Fail(pass.CodeInvalidAssertion, "missing Authorization: Bearer assertion")

// authenticate verifies a Service assertion and returns the Service origin
// and the verified token. The keys come only from the configuration found
// by Service discovery on the assertion's iss; no URL is taken from the
// token. Everything that needs no network (audience, times, kid) is checked
// before discovery, so junk tokens naming fresh issuers cost no DNS query.
//
// The assertion's jti is not recorded here: the caller calls [Authority.spend]
// once its request succeeded, so a Service (anyone who publishes a
// configuration is one) cannot fill the replay cache with assertions spent
// on unknown passes or authorizations. A jti already recorded is refused.
// Validation on a shared replay table records first (see spendsFirst).
func (a *Authority) authenticate(ctx context.Context, r *http.Request) (string, *assertion.Token, error) {
	svc, tok, _, err := a.authenticateService(ctx, r, false)
	return svc, tok, err
}

// authenticateService is authenticate that also returns the Service's
// configuration the assertion was verified with. With spend, the jti is
// recorded as the last step of the verification (one atomic record, a
// replay refused by it), and the caller does not call spend.
func (a *Authority) authenticateService(ctx context.Context, r *http.Request, spend bool) (string, *assertion.Token, *pass.ServiceConfiguration, error) {
	check := a.verifier.Check
	if spend {
		check = a.verifier.Verify
	}
	return a.authenticateWith(ctx, r, check)
}

// authenticateWith is authenticateService with the last step, the
// verification against the Service's keys, made by check.
func (a *Authority) authenticateWith(ctx context.Context, r *http.Request,
	check func(context.Context, *assertion.Token, string, string) (*assertion.Claims, error),
) (string, *assertion.Token, *pass.ServiceConfiguration, error) {
	tok := httpx.BearerToken(r)
	if tok == "" {
		return "", nil, nil, errNoAssertion
	}
	parsed, err := assertion.Parse(tok)
	if err != nil {
		return "", nil, nil, pass.Fail(pass.CodeInvalidAssertion, "invalid assertion").WithCause(err)
	}
	iss := parsed.Issuer()
	if err := pass.CheckOrigin(iss); err != nil {
		return "", nil, nil, pass.Fail(pass.CodeInvalidAssertion, "assertion iss must be a Service origin").WithCause(err)
	}
	if err := a.verifier.Precheck(parsed); err != nil {
		return "", nil, nil, pass.Fail(pass.CodeInvalidAssertion, "invalid assertion").WithCause(err)
	}
	origin, _ := pass.Origin(iss)
	info, err := a.disc.DiscoverService(ctx, origin)
	if err != nil {
		if errors.Is(err, discovery.ErrLookupFailed) || errors.Is(err, discovery.ErrFetchFailed) {
			return "", nil, nil, pass.Fail(pass.CodeDiscoveryFailed, "the Service could not be discovered").WithCause(err)
		}
		return "", nil, nil, pass.Fail(pass.CodeInvalidAssertion, "the assertion's Service could not be verified").WithCause(err)
	}
	if _, err := check(ctx, parsed, info.Configuration.JWKSURI, iss); err != nil {
		return "", nil, nil, assertionError(err)
	}
	return origin, parsed, info.Configuration, nil
}

// spend records the jti of an assertion whose request succeeded: our
// Services put a fresh jti in every assertion, so a repeated one is a
// replay; a plain v0.1 Service without jti cannot be checked.
func (a *Authority) spend(ctx context.Context, tok *assertion.Token) error {
	if err := a.verifier.Record(ctx, tok); err != nil {
		return assertionError(err)
	}
	return nil
}

// spendsFirst reports whether a validation records its assertion's jti
// before it consumes the pass, in the one atomic record with no lookup
// before it: a round trip fewer on the busiest path when the cache is a
// shared table. Unlike a Harness's proof at a Service, an assertion is
// signed by a key found through discovery and its requests are
// rate-limited per Service, and a Service mints a fresh jti for each one,
// so a validation that fails after the record costs the Service only a
// new assertion, and a replayed one is still refused before any
// consumption. Only a cache that says it has no fixed capacity
// (dpop.UnboundedReplayCache) is recorded first: the in-memory one, or a
// custom cache that may refuse when full, could otherwise be filled by
// anyone who publishes a configuration, so with it the jti is recorded
// only after the pass was consumed. A [RecordingStore] then carries the
// record in the round trip of the consumption's first statement.
func (a *Authority) spendsFirst() bool {
	_, unbounded := a.replay.(dpop.UnboundedReplayCache)
	return unbounded
}

// replayRole prefixes the issuers of every kind of jti this Authority
// records (the assertion verifier adds its own "assertion:").
const replayRole = "authority:"

// RecordingStore is implemented by a Store that can record a validation's
// Service assertion in the round trip of its consumption's first
// statement, such as authoritypg's with a dpoppg replay table on the same
// pool: on a shared database every round trip costs both sides CPU, and
// the record and the read (or a write that applies only if the record
// claimed the pair) then travel together. The Authority uses it in place of
// recording the assertion and then calling ConsumePass, when its replay
// cache has no fixed capacity (dpop.UnboundedReplayCache), the case where
// the record comes first.
type RecordingStore interface {
	// ConsumePassRecorded is ConsumePass preceded by the record of the
	// request's assertion. It calls record once, before it reads or
	// writes anything, with the cache to record into: replay itself, or,
	// when replay is a table the store reaches on its own connections, a
	// cache of the store whose Seen sends the record with the
	// consumption's first statement and answers as replay's Seen would.
	// That statement may be the consumption's write itself, made only if
	// the record claimed the pair, so record must return Seen's outcome
	// and nothing after it: an error from record (a replay, a failed
	// record) then means nothing was consumed, and the consumption stops
	// and returns it. If record calls no Seen (an assertion without jti),
	// the consumption reads as ConsumePass does.
	ConsumePassRecorded(ctx context.Context, passHash, audience, authorizationID string, now time.Time,
		replay dpop.ReplayCache, record func(dpop.ReplayCache) error) (*Consumption, error)
}

// recordingStore returns the store as a RecordingStore, if it is one
// (under the events wrapper, which leaves consumptions as they are).
func (a *Authority) recordingStore() (RecordingStore, bool) {
	st := a.store
	if es, ok := st.(eventStore); ok {
		st = es.Store
	}
	rs, ok := st.(RecordingStore)
	// Never a value embedding this module's store (an operator's policy
	// around ConsumePass): it has ConsumePassRecorded by promotion, which
	// would bypass its override.
	return rs, ok && !foldmark.Wraps(st)
}

// consumeRecorded consumes the pass of a validation whose assertion tok
// is verified but not yet recorded, recording it first in the round trip
// of the consumption's first statement when the store can (see [RecordingStore]). A
// refused or failed record is returned as the assertion's error, before
// anything was consumed. The store cannot skip the record: a consumption
// that never called record is followed by the record, as when the jti is
// recorded last.
func (a *Authority) consumeRecorded(ctx context.Context, rs RecordingStore, tok *assertion.Token, passHash, svc string) (*Consumption, error) {
	rec := &assertionRecord{a: a, ctx: ctx, tok: tok}
	c, err := rs.ConsumePassRecorded(ctx, passHash, svc, secret.ID(authorizationIDPrefix), a.now(), a.replay, rec.record)
	switch {
	case rec.err != nil:
		return nil, rec.err
	case !rec.called && err == nil:
		if err := a.spend(ctx, tok); err != nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass validation: assertion not recorded",
				slog.String("service", svc), slog.String("reason", err.Error()))
		}
	case err != nil:
		return nil, consumeError(err)
	}
	return c, nil
}

// assertionRecord is the record function of consumeRecorded, with what
// it saw.
type assertionRecord struct {
	a      *Authority
	ctx    context.Context
	tok    *assertion.Token
	called bool
	err    error // the assertion's error, a refused or failed record
}

func (r *assertionRecord) record(cache dpop.ReplayCache) error {
	r.called = true
	if err := r.a.verifier.RecordIn(r.ctx, r.tok, replayns.Namespace(cache, replayRole)); err != nil {
		r.err = assertionError(err)
		return r.err
	}
	return nil
}

func assertionError(err error) error {
	switch {
	case errors.Is(err, assertion.ErrReplay):
		return pass.Fail(pass.CodeInvalidAssertion, "assertion replayed").WithCause(err)
	case errors.Is(err, assertion.ErrInvalid):
		return pass.Fail(pass.CodeInvalidAssertion, "invalid assertion").WithCause(err)
	}
	return pass.Fail(pass.CodeTemporarilyUnavailable, "try again later").WithCause(err)
}

// serveValidate is POST {validate} (§5.4.1). The pass is checked and
// consumed in one store call, so of concurrent validations only one
// succeeds, and a Service that is not its audience gets 403 without
// burning it.
func (a *Authority) serveValidate(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, "validation") {
		return
	}
	ctx := r.Context()
	if httpx.BearerToken(r) == "" {
		a.reject(w, "validation", errNoAssertion)
		return
	}
	var in pass.ValidationRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, "validation", err)
		return
	}
	first := a.spendsFirst()
	rs, folds := a.recordingStore()
	folds = folds && first
	var svc string
	var tok *assertion.Token
	var cfg *pass.ServiceConfiguration
	var err error
	if folds {
		// Recorded by the consumption, in the round trip of its read.
		svc, tok, cfg, err = a.authenticateWith(ctx, r, a.verifier.VerifyUnrecorded)
	} else {
		svc, tok, cfg, err = a.authenticateService(ctx, r, first)
	}
	if err != nil {
		a.reject(w, "validation", err)
		return
	}
	a.noteReceiver(ctx, svc, cfg)
	var c *Consumption
	if folds {
		c, err = a.consumeRecorded(ctx, rs, tok, secret.Hash(in.AgentPass.Value), svc)
	} else if c, err = a.store.ConsumePass(ctx, secret.Hash(in.AgentPass.Value), svc, secret.ID(authorizationIDPrefix), a.now()); err != nil {
		err = consumeError(err)
	}
	if err != nil {
		a.reject(w, "validation", err, slog.String("service", svc))
		return
	}
	az, m := c.Authorization, c.Mission
	if az == nil || m == nil {
		a.reject(w, "validation", errors.New("authority: the store's consumption lacks its authorization or mission"), slog.String("service", svc))
		return
	}
	// The pass is consumed: the answer is the Service's now. A replay that
	// raced this request got the same pass consumed only once, so a failed
	// record is logged, not answered.
	if !first {
		if err := a.spend(ctx, tok); err != nil {
			a.log.LogAttrs(ctx, slog.LevelWarn, "agentpass validation: assertion not recorded",
				slog.String("service", svc), slog.String("authorization_id", az.ID), slog.String("reason", err.Error()))
		}
	}
	telemetry.Annotate(ctx, az.User, az.AgentID, az.TaskID, a.id, az.ID)
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass validation",
		slog.String("outcome", "ok"), slog.String("service", svc), slog.String("authorization_id", az.ID),
		slog.String("user", az.User), slog.String("agent", az.AgentID), slog.String("task", az.TaskID),
		slog.String("harness", az.HarnessID), slog.String("mission_id", az.MissionID), slog.Any("scope", az.Scope))
	out := validationBody(az)
	// The mission and its ancestors come from the consumption itself,
	// which checked them under the same lock: no second read.
	*out.Mission = pass.MissionInfo{ID: m.MissionID, State: pass.MissionActive, Version: m.Version, Parent: m.ParentMissionID,
		HistoryHead: m.HistoryHead}
	if len(m.Stages) > 0 {
		// A Service that stages in place keeps the ceiling as its
		// bound and the current stage's scope (out.Scope) as what it
		// allows now; one that does not sees only the current scope.
		// m is the consumption's own copy.
		out.Mission.Stage, out.Mission.Stages, out.Mission.Ceiling = m.Stage, m.Stages, m.Ceiling()
	}
	// A sub-agent's pass names who it acts for, up to the root, for
	// the Service's audit and local cascade.
	if m.ParentMissionID != "" {
		anc, err := consumedAncestors(m, c.Ancestors)
		if err != nil {
			// The pass is spent; an answer without the chain's bound
			// could grant more than an ancestor now holds.
			a.reject(w, "validation", err, slog.String("service", svc))
			return
		}
		out.Mission.Act = actChain(m, anc)
		out.Scope = attenuate(out.Scope, anc)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// consumedAncestors completes the ancestors a consumption returned: a
// store returns them up to the first one it could not find (pruned after
// it ended, which only a retried consumption can meet), and that one
// counts as ended, as in [Authority.ancestors], so its descendants hold
// nothing.
func consumedAncestors(m *Request, anc []*Request) ([]*Request, error) {
	top := m.ParentMissionID
	if n := len(anc); n > 0 {
		top = anc[n-1].ParentMissionID
	}
	switch {
	case top == "":
		return anc, nil
	case len(anc) >= maxMissionDepth:
		return nil, fmt.Errorf("authority: delegation chain of %s is deeper than %d", m.MissionID, maxMissionDepth)
	}
	return append(anc, &Request{MissionID: top, State: pass.MissionRevoked}), nil
}

func consumeError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return pass.Fail(pass.CodeAgentPassInvalid, "unknown AgentPass").WithStatus(http.StatusNotFound)
	case errors.Is(err, ErrWrongAudience):
		return pass.Fail(pass.CodeAudienceMismatch, "the AgentPass was issued for another Service")
	case errors.Is(err, ErrConsumed):
		return pass.Fail(pass.CodeAgentPassConsumed, "the AgentPass was already used")
	case errors.Is(err, ErrExpired):
		return pass.Fail(pass.CodeAgentPassExpired, "the AgentPass has expired")
	}
	return err
}

// validationBody renders the validation response. It always echoes the
// holder key (cnf) the request carried: without it the Service could not
// tell that a proof is required, and holder binding would silently vanish.
// az is the caller's own copy (the store's answer), so its scope and key
// are used as they are.
//
// The answer and the members it points to are one allocation; its Mission
// points to a zero MissionInfo for the caller to fill.
func validationBody(az *Authorization) *pass.ValidationResponse {
	parts := &struct {
		out     pass.ValidationResponse
		exp     time.Time
		task    pass.Task
		harness pass.HarnessRef
		cnf     pass.Cnf
		mission pass.MissionInfo
	}{
		exp:     az.ExpiresAt.UTC(),
		task:    pass.Task{ID: az.TaskID, Description: az.TaskDescription, Attested: az.TaskAttested},
		harness: pass.HarnessRef{ID: az.HarnessID},
	}
	out := &parts.out
	*out = pass.ValidationResponse{
		AuthorizationID: az.ID, User: pass.User{Email: az.User}, Agent: pass.Agent{ID: az.AgentID},
		Scope: az.Scope, Type: az.Type,
		Task:                   &parts.task,
		AuthorizationExpiresAt: &parts.exp,
		Harness:                &parts.harness,
		Mission:                &parts.mission,
	}
	if az.HardenedBinding {
		// The Service then requires htm, htu and aph for this pass only.
		out.Harness.Extensions = pass.HarnessExtensions{pass.ExtHolderBinding}
	}
	if out.Scope == nil {
		out.Scope = pass.Scope{}
	}
	if az.Type == pass.BrowserSession {
		out.DestinationURL = az.DestinationURL
	}
	if az.Cnf != nil {
		parts.cnf.JWK = az.Cnf
		out.Cnf = &parts.cnf
	}
	return out
}

var errUnknownAuthorization = pass.Fail(pass.CodeAuthorizationUnknown, "unknown or inactive authorization")

// serveCheck is POST {authorization_check} (§5.5.1). Only the Service that
// redeemed the delegation gets an answer; any other gets 404, as for an
// unknown id, so Services cannot probe each other's authorizations.
func (a *Authority) serveCheck(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, "authorization check") {
		return
	}
	ctx := r.Context()
	if httpx.BearerToken(r) == "" {
		a.reject(w, "authorization check", errNoAssertion)
		return
	}
	var in pass.AuthorizationCheckRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, "authorization check", err)
		return
	}
	svc, tok, cfg, err := a.authenticateService(ctx, r, false)
	if err != nil {
		a.reject(w, "authorization check", err)
		return
	}
	// A Service that starts taking events after its redemptions is
	// learned here.
	a.noteReceiver(ctx, svc, cfg)
	attrs := []slog.Attr{slog.String("service", svc), slog.String("authorization_id", in.AuthorizationID)}
	az, m, state, err := a.checkAuthorization(ctx, in.AuthorizationID, svc)
	if errors.Is(err, ErrNotFound) {
		if az != nil {
			attrs = append(attrs, slog.String("state", string(az.StateAt(a.now()))), slog.String("mission_state", string(state)))
		}
		if az != nil && m != nil && state == pass.MissionSuspended && az.StateAt(a.now()) != pass.DelegationExpired &&
			a.serviceSpeaksMission(ctx, svc) {
			// The Service's own delegation, held rather than ended: the
			// answer is about it, so the assertion is spent.
			if err := a.spend(ctx, tok); err != nil {
				a.reject(w, "authorization check", err, attrs...)
				return
			}
			a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass authorization check", append(attrs, slog.String("outcome", "suspended"),
				slog.String("mission_id", m.MissionID), slog.Int64("version", m.Version))...)
			a.writeSuspended(w, m)
			return
		}
		a.reject(w, "authorization check", errUnknownAuthorization, attrs...)
		return
	} else if err != nil {
		a.reject(w, "authorization check", err, attrs...)
		return
	}
	if err := a.spend(ctx, tok); err != nil {
		a.reject(w, "authorization check", err, attrs...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass authorization check", append(attrs, slog.String("outcome", "ok"),
		slog.String("user", az.User), slog.String("agent", az.AgentID), slog.String("task", az.TaskID),
		slog.String("mission_id", m.MissionID), slog.Int64("version", m.Version))...)
	exp := az.ExpiresAt.UTC()
	scope := cloneScope(az.Scope)
	if m.ParentMissionID != "" {
		// The store narrows descendants with their ancestors, but an
		// ancestor's scope can also change by other paths (a stage step);
		// bounding the answer here keeps a child within every ancestor's
		// current scope whatever changed it.
		anc, err := a.ancestors(ctx, m)
		if err != nil {
			a.reject(w, "authorization check", err, attrs...)
			return
		}
		scope = attenuate(scope, anc)
	}
	if scope == nil {
		scope = pass.Scope{}
	}
	httpx.WriteJSON(w, http.StatusOK, &pass.AuthorizationCheckResponse{Scope: scope, AuthorizationExpiresAt: &exp,
		Mission: &pass.MissionInfo{ID: m.MissionID, State: pass.MissionActive, Version: m.Version, Stage: m.Stage}})
}

// checkAuthorization returns the authorization id of Service svc with its
// mission when both are active (the mission with no suspended or ended
// ancestor), and ErrNotFound otherwise (with what was found, for the log).
func (a *Authority) checkAuthorization(ctx context.Context, id, svc string) (*Authorization, *Request, pass.MissionState, error) {
	az, err := a.store.Authorization(ctx, id)
	if err != nil {
		return nil, nil, "", err
	}
	if az.Service != svc {
		return nil, nil, "", ErrNotFound
	}
	m, err := a.store.Request(ctx, az.MissionID)
	if err != nil {
		return az, nil, "", err
	}
	m, state, err := a.missionState(ctx, m)
	if err != nil {
		return az, nil, "", err
	}
	if state != pass.MissionActive || az.StateAt(a.now()) != pass.DelegationActive {
		return az, m, state, ErrNotFound
	}
	return az, m, state, nil
}

// serveClose is POST {authorization_close}, an addition to v0.1 that the
// configuration advertises: the redeeming Service completes or revokes the
// delegation. Closing a closed delegation answers its current state again.
func (a *Authority) serveClose(w http.ResponseWriter, r *http.Request) {
	httpx.NoStore(w.Header())
	if !a.allowService(w, r, "authorization close") {
		return
	}
	ctx := r.Context()
	if httpx.BearerToken(r) == "" {
		a.reject(w, "authorization close", errNoAssertion)
		return
	}
	var in pass.AuthorizationCloseRequest
	if err := httpx.ReadRequest(w, r, &in); err != nil {
		a.reject(w, "authorization close", err)
		return
	}
	svc, tok, err := a.authenticate(ctx, r)
	if err != nil {
		a.reject(w, "authorization close", err)
		return
	}
	c := MissionChange{From: liveMission, To: pass.MissionCompleted, Cause: pass.CauseService, Service: svc,
		By: "service:" + svc, Reason: in.Reason, Details: map[string]any{"authorization_id": in.AuthorizationID}}
	if in.Action == pass.CloseRevoke {
		c.To = pass.MissionRevoked
	}
	attrs := []slog.Attr{slog.String("service", svc), slog.String("authorization_id", in.AuthorizationID), slog.String("action", string(in.Action))}
	// One authorization per mission: closing it ends the mission, and
	// with it every descendant.
	az, err := a.store.Authorization(ctx, in.AuthorizationID)
	if err == nil && az.Service != svc {
		err = ErrNotFound
	}
	if err == nil {
		// The Service's own authorization: the assertion is spent before
		// anything changes.
		if err := a.spend(ctx, tok); err != nil {
			a.reject(w, "authorization close", err, attrs...)
			return
		}
		_, err = a.store.TransitionMission(ctx, az.MissionID, c, a.now())
		if errors.Is(err, ErrExpired) {
			a.expire(ctx, az.MissionID)
		}
		if err == nil || errors.Is(err, ErrTerminal) {
			// Idempotent: an already closed delegation answers how it
			// ended.
			cur, gerr := a.store.Authorization(ctx, in.AuthorizationID)
			switch {
			case gerr != nil:
				err = gerr
			case cur.State == pass.DelegationCompleted || cur.State == pass.DelegationRevoked:
				az, err = cur, nil
			default:
				err = ErrState
			}
		}
	}
	switch {
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrExpired) || errors.Is(err, ErrState) || errors.Is(err, ErrTerminal):
		a.reject(w, "authorization close", errUnknownAuthorization, attrs...)
		return
	case err != nil:
		a.reject(w, "authorization close", err, attrs...)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass authorization close", append(attrs, slog.String("outcome", "ok"),
		slog.String("state", string(az.State)), slog.String("user", az.User), slog.String("agent", az.AgentID),
		slog.String("task", az.TaskID), slog.String("reason", in.Reason))...)
	httpx.WriteJSON(w, http.StatusOK, &pass.AuthorizationCloseResponse{Status: az.State, ClosedAt: az.ClosedAt.UTC()})
}
