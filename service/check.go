package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/telemetry"
	"github.com/agentpass-go/agentpass/pass"
)

// errRevoked is the cause of a delegation_revoked answer.
var errRevoked = errors.New("service: delegation revoked or expired")

func errDelegationRevoked(msg string) error {
	return pass.Fail(pass.CodeDelegationRevoked, msg).WithCause(errRevoked)
}

// fresh returns rec if it may be used at now: not invalidated, not past
// authorization_expires_at, not held for a suspended mission, and checked
// with the Authority within CheckInterval, running the check when it is
// older, so a revocation at the Authority takes effect within
// CheckInterval. A held delegation is checked at the same interval, so it
// is released soon after its mission resumes.
func (s *Service) fresh(ctx context.Context, rec *DelegationRecord, now time.Time) (*DelegationRecord, error) {
	if rec.Invalidated {
		return nil, errDelegationRevoked("the delegation is no longer active")
	}
	if !rec.ExpiresAt.IsZero() && !rec.ExpiresAt.After(now) {
		return nil, errDelegationRevoked("the delegation has expired")
	}
	// A Stale delegation was told by an event of a change that only the
	// Authority's answer may confirm: check now, whatever the interval.
	if !rec.Stale && checkedWithin(rec.CheckedAt, now, s.cfg.CheckInterval) {
		s.tel.CheckCache(ctx, true)
		if rec.held() {
			return nil, errMissionSuspended
		}
		return rec, nil
	}
	// Concurrent requests of one delegation share one check; the check
	// runs on a context detached from any one caller, so a caller that
	// goes away does not fail the others.
	s.tel.CheckCache(ctx, false)
	ch := s.checks.DoChan(rec.AuthorizationID, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CheckTimeout)
		defer cancel()
		cctx, span := s.tel.Start(cctx, "agentpass.authorization_check", trace.SpanKindClient)
		telemetry.Annotate(cctx, rec.User, rec.Agent, rec.Task.ID, rec.Authority, rec.AuthorizationID)
		out, err := s.checkNow(cctx, rec)
		telemetry.End(span, telemetry.ErrOutcome(err))
		return out, err
	})
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*DelegationRecord), nil
	}
}

// checkedWithin reports whether a check made at checkedAt is less than d
// old at now. A check time in the future (a replica whose clock runs ahead
// wrote it to the shared store, or the clock was stepped back) is never
// fresh: otherwise the cached result would be used for as long as the skew,
// past CheckInterval.
//
// It compares rather than subtracts: Time.Sub of two times without a
// monotonic reading (a configured clock, a time read back from a store)
// takes a slow path several times the cost of two comparisons.
func checkedWithin(checkedAt, now time.Time, d time.Duration) bool {
	return !now.Before(checkedAt) && now.Before(checkedAt.Add(d))
}

// checkNow calls the Authority's authorization check endpoint and applies
// the answer: 200 narrows the scope and records the time; 404 invalidates
// every credential of the delegation at once; anything else is
// "unreachable", which rejects unless UnreachableGrace allows the last
// result: an Authority we cannot ask may have revoked the delegation.
func (s *Service) checkNow(ctx context.Context, rec *DelegationRecord) (*DelegationRecord, error) {
	a := &audit{event: eventCheck}
	a.fromDelegation(rec)
	now := s.cfg.Now()
	// Precedence again at every check: the user's domain may have published
	// "none", or an Enterprise Authority, since the redemption.
	if reason, err := s.stillTrusted(ctx, rec); err != nil {
		return s.unverifiable(ctx, a, rec, now, err)
	} else if reason != "" {
		if err := s.invalidateTree(ctx, a, rec, now, "precedence: "+reason); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("service: invalidate delegation: %w", err)
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("revoked"), slog.String("reason", "precedence: "+reason))...)
		return nil, errDelegationRevoked("the user's domain no longer permits this delegation")
	}
	var resp pass.AuthorizationCheckResponse
	acfg, err := s.callAuthority(ctx, rec, func(cfg *pass.AuthorityConfiguration) string { return cfg.Endpoints.AuthorizationCheck },
		pass.AuthorizationCheckRequest{AuthorizationID: rec.AuthorizationID}, &resp)
	var pe *pass.PeerError
	switch {
	case err == nil:
		s.events.remember(rec.Authority, rec.ConfigurationURL)
		scope := rec.Scope.Intersect(resp.Scope)
		var exp time.Time
		if resp.AuthorizationExpiresAt != nil {
			exp = *resp.AuthorizationExpiresAt
		}
		out := rec.clone()
		if rec.MissionID == "" {
			if err := s.cfg.Store.RecordCheck(ctx, rec.AuthorizationID, now, scope, exp); err != nil {
				return nil, fmt.Errorf("service: record authorization check: %w", err)
			}
			out.CurrentScope = scope
		} else if out, err = s.recordMission(ctx, a, rec, now, scope, exp, resp.Mission); err != nil {
			return nil, err
		}
		out.CheckedAt = now
		if !exp.IsZero() && (out.ExpiresAt.IsZero() || exp.Before(out.ExpiresAt)) {
			out.ExpiresAt = exp // an expiry only moves earlier
		}
		if !out.ExpiresAt.IsZero() && !out.ExpiresAt.After(now) {
			return nil, errDelegationRevoked("the delegation has expired")
		}
		if out.held() {
			return nil, errMissionSuspended
		}
		s.cfg.Logger.LogAttrs(ctx, levelDebug, a.event, a.attrs("ok")...)
		return out, nil
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		if m := suspendedMission(acfg, rec, pe); m != nil {
			if _, err := s.recordMission(ctx, a, rec, now, nil, time.Time{}, m); err != nil {
				return nil, err
			}
			// Held, whatever the version: a stale suspension changes
			// nothing stored, but this one request is still refused.
			return nil, errMissionSuspended
		}
		if err := s.invalidateTree(ctx, a, rec, now, "authorization check: not found"); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("service: invalidate delegation: %w", err)
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, a.attrs("revoked")...)
		return nil, errDelegationRevoked("the Authority no longer vouches for the delegation")
	default:
		return s.unverifiable(ctx, a, rec, now, err)
	}
}

// invalidateTree invalidates rec and, in the same store operation, the
// delegations of its sub-agents held here (the local cascade): a child
// whose own revocation is late or lost stops with its parent. Whatever
// ends a delegation at this Service goes through it.
func (s *Service) invalidateTree(ctx context.Context, a *audit, rec *DelegationRecord, now time.Time, reason string) error {
	n, err := s.cfg.Store.InvalidateTree(ctx, rec.AuthorizationID, now, reason)
	if err != nil {
		return err
	}
	if rec.MissionID != "" && n > 1 {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("cascade"), slog.Int("invalidated", n))...)
	}
	return nil
}

// errMissionSuspended refuses requests of a held delegation.
var errMissionSuspended = pass.Fail(pass.CodeMissionSuspended, "the delegation's mission is suspended")

// recordMission stores a check answer of a delegation that has a mission
// and returns the delegation as it now stands. An answer that names
// another mission, or none, cannot be ordered and counts as older than
// anything held: a stale answer only narrows, so a lagging Authority
// replica can neither release a hold nor give back a scope a newer version
// took away.
func (s *Service) recordMission(ctx context.Context, a *audit, rec *DelegationRecord, now time.Time, scope pass.Scope, exp time.Time, m *pass.MissionInfo) (*DelegationRecord, error) {
	c := MissionCheck{At: now, Scope: scope, ExpiresAt: exp}
	if m != nil && m.ID == rec.MissionID {
		c.State, c.Version = m.State, m.Version
		if rec.staged() && stageOf(rec.Stages, m.Stage) {
			c.Stage = m.Stage
		}
	}
	// A 200 whose mission is not active is read as the Authority's word
	// that it is suspended: fail closed.
	if scope != nil && c.State != pass.MissionActive {
		c.State = pass.MissionSuspended
	}
	applied, err := s.cfg.Store.RecordMissionCheck(ctx, rec.AuthorizationID, c)
	if err != nil {
		return nil, fmt.Errorf("service: record authorization check: %w", err)
	}
	out := rec.clone()
	if applied {
		if scope != nil {
			out.CurrentScope = scope
		}
		out.MissionState, out.MissionVersion = c.State, c.Version
		if c.Stage != "" {
			out.Stage = c.Stage
		}
	} else if scope != nil {
		out.CurrentScope = rec.CurrentScope.Intersect(scope)
	}
	outcome := "ok"
	switch {
	case !applied:
		outcome = "stale"
	case c.State == pass.MissionSuspended && !rec.held():
		outcome = "held"
	case c.State == pass.MissionActive && rec.held():
		outcome = "released"
	}
	if outcome != "ok" {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs(outcome),
			slog.String("mission_id", rec.MissionID), slog.Int64("mission_version", c.Version),
			slog.Int64("held_version", rec.MissionVersion))...)
	}
	return out, nil
}

// stageOf reports whether name is a stage of the plan.
func stageOf(stages []pass.Stage, name string) bool {
	for _, st := range stages {
		if st.Name == name {
			return true
		}
	}
	return false
}

// suspendedMission returns the mission of a 404 that says the delegation's
// mission is suspended, or nil when the 404 is to be read as in v0.1 (the
// delegation is no longer active). Only an Authority that advertises the
// mission extension is believed, and only about the delegation's own
// mission: the body is the Authority's claim, and holding instead of
// invalidating keeps credentials alive.
func suspendedMission(acfg *pass.AuthorityConfiguration, rec *DelegationRecord, pe *pass.PeerError) *pass.MissionInfo {
	m := pe.Mission
	switch {
	case acfg == nil || !acfg.Extensions.Has(pass.ExtMission), rec.MissionID == "", m == nil,
		pe.Code != pass.CodeMissionSuspended, m.Validate() != nil, m.ID != rec.MissionID, m.State != pass.MissionSuspended:
		return nil
	}
	return m
}

// unverifiable answers a check that could not be made (Authority or DNS
// unreachable): the request is refused unless UnreachableGrace allows the
// last result; the delegation itself is kept, as an outage says nothing
// about whether it was revoked.
func (s *Service) unverifiable(ctx context.Context, a *audit, rec *DelegationRecord, now time.Time, err error) (*DelegationRecord, error) {
	if rec.held() {
		// Nothing newer is known than the suspension: keep refusing.
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, a.event, append(a.attrs("unreachable"), slog.String("reason", err.Error()))...)
		return nil, errMissionSuspended
	}
	if g := s.cfg.UnreachableGrace; g > 0 && checkedWithin(rec.CheckedAt, now, s.cfg.CheckInterval+g) {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, a.event, append(a.attrs("grace"), slog.String("reason", err.Error()))...)
		return rec, nil
	}
	s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, a.event, append(a.attrs("unreachable"), slog.String("reason", err.Error()))...)
	return nil, pass.Fail(pass.CodeAuthorityUnavailable,
		"the delegation cannot be verified now").WithStatus(http.StatusServiceUnavailable).WithCause(err)
}

// stillTrusted re-applies the precedence rules of redemption to a live
// delegation. It returns a reason when they now refuse it (the domain
// publishes "none", an Enterprise Authority other than the delegation's
// now governs the user, or that Enterprise Authority forbids Service
// Authorities), and an error when it cannot tell (a DNS or configuration
// failure), which the caller treats like an unreachable Authority.
func (s *Service) stillTrusted(ctx context.Context, rec *DelegationRecord) (string, error) {
	set, err := s.trustFor(ctx, rec.User)
	if err == nil {
		var src *source
		if src, err = s.accept(ctx, set, rec.Authority); err == nil {
			if src.mode != rec.TrustMode {
				return "the Authority is no longer trusted as " + string(rec.TrustMode), nil
			}
			return "", nil
		}
	}
	var pe *pass.Error
	if errors.As(err, &pe) && pe.Status == http.StatusForbidden {
		return pe.Message, nil
	}
	return "", err
}

// callAuthority POSTs body to an endpoint of the delegation's Authority
// with a signed Service assertion. The Authority configuration is fetched
// again (through the discovery cache) from where it was found at
// redemption, and must still name the same authority and trust mode; it is
// returned (when it could be used) so the caller knows what the Authority
// advertised.
func (s *Service) callAuthority(ctx context.Context, rec *DelegationRecord, endpoint func(*pass.AuthorityConfiguration) string, body any, out pass.Document) (*pass.AuthorityConfiguration, error) {
	cfg, err := s.cfg.Discovery.AuthorityConfiguration(ctx, rec.ConfigurationURL)
	if err != nil {
		return nil, err
	}
	if cfg.Authority != rec.Authority || cfg.TrustMode != rec.TrustMode {
		return nil, fmt.Errorf("service: the configuration at %s no longer describes %s as %s", rec.ConfigurationURL, rec.Authority, rec.TrustMode)
	}
	u := endpoint(cfg)
	if u == "" {
		return cfg, errNotAdvertised
	}
	tok, err := assertion.Sign(s.cfg.Keys.Current(), s.cfg.origin, cfg.Authority, 0, s.cfg.Now())
	if err != nil {
		return cfg, err
	}
	_, err = httpx.Do(ctx, s.cfg.HTTPClient, httpx.Call{Peer: pass.PeerAuthority, URL: u, Bearer: tok, Body: body}, out)
	return cfg, err
}

var errNotAdvertised = errors.New("service: the Authority does not advertise this endpoint")

// CloseAuthorization ends a delegation on behalf of the application, for example when
// the agent's task is done (complete) or the user withdraws it (revoke).
// Every token and session of the delegation stops working at once, on
// every replica sharing the Store, and so do those of the sub-agents'
// delegations derived from it that this Service holds. When the Authority advertises
// endpoints.authorization_close (an extension of v0.1) it is told too, so
// it can end the delegation in its own records; a plain v0.1 Authority is
// not. The local invalidation happens even when
// the call to the Authority fails, whose error is then returned.
func (s *Service) CloseAuthorization(ctx context.Context, authorizationID string, action pass.CloseAction, reason string) error {
	if s == nil || s.cfg == nil {
		return errNotNew
	}
	req := pass.AuthorizationCloseRequest{AuthorizationID: authorizationID, Action: action, Reason: reason}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("service: Close: %w", err)
	}
	rec, err := s.cfg.Store.Delegation(ctx, authorizationID)
	if err != nil {
		return fmt.Errorf("service: Close: %w", err)
	}
	a := &audit{event: eventClose}
	a.fromDelegation(rec)
	if err := s.invalidateTree(ctx, a, rec, s.cfg.Now(), "closed by the Service: "+string(action)); err != nil {
		return fmt.Errorf("service: Close: %w", err)
	}
	var resp pass.AuthorizationCloseResponse
	_, err = s.callAuthority(ctx, rec, func(cfg *pass.AuthorityConfiguration) string { return cfg.Endpoints.AuthorizationClose }, req, &resp)
	var pe *pass.PeerError
	switch {
	case err == nil, errors.Is(err, errNotAdvertised):
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("ok"), slog.String("action", string(action)))...)
		return nil
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		// Already inactive at the Authority.
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("ok"), slog.String("action", string(action)))...)
		return nil
	}
	s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, a.event, append(a.attrs("failed"), slog.String("reason", err.Error()))...)
	return fmt.Errorf("service: Close: the Authority was not told: %w", err)
}
