package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// errRevoked is the cause of a delegation_revoked answer.
var errRevoked = errors.New("service: delegation revoked or expired")

func errDelegationRevoked(msg string) error {
	return pass.Fail(pass.CodeDelegationRevoked, msg).WithCause(errRevoked)
}

// fresh returns rec if it may be used at now: not invalidated, not past
// authorization_expires_at, and checked with the Authority within
// CheckInterval, running the check when it is older (S-AUTHZ-1..8, G-15).
func (s *Service) fresh(ctx context.Context, rec *DelegationRecord, now time.Time) (*DelegationRecord, error) {
	if rec.Invalidated {
		return nil, errDelegationRevoked("the delegation is no longer active")
	}
	if !rec.ExpiresAt.IsZero() && !rec.ExpiresAt.After(now) {
		return nil, errDelegationRevoked("the delegation has expired")
	}
	if checkedWithin(rec.CheckedAt, now, s.cfg.CheckInterval) {
		return rec, nil
	}
	// Concurrent requests of one delegation share one check; the check
	// runs on a context detached from any one caller, so a caller that
	// goes away does not fail the others.
	ch := s.checks.DoChan(rec.AuthorizationID, func() (any, error) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CheckTimeout)
		defer cancel()
		return s.checkNow(cctx, rec)
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
// past CheckInterval (S-AUTHZ-5).
func checkedWithin(checkedAt, now time.Time, d time.Duration) bool {
	age := now.Sub(checkedAt)
	return age >= 0 && age < d
}

// checkNow calls the Authority's authorization check endpoint and applies
// the answer: 200 narrows the scope and records the time; 404 invalidates
// every credential of the delegation at once; anything else is
// "unreachable", which rejects unless UnreachableGrace allows the last
// result (S-AUTHZ-6, S-AUTHZ-7).
func (s *Service) checkNow(ctx context.Context, rec *DelegationRecord) (*DelegationRecord, error) {
	a := &audit{event: eventCheck}
	a.fromDelegation(rec)
	now := s.cfg.Now()
	// S-RED-7 at every check: the user's domain may have published "none",
	// or an Enterprise Authority, since the redemption.
	if reason, err := s.stillTrusted(ctx, rec); err != nil {
		return s.unverifiable(ctx, a, rec, now, err)
	} else if reason != "" {
		if err := s.cfg.Store.Invalidate(ctx, rec.AuthorizationID, now, "precedence: "+reason); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("service: invalidate delegation: %w", err)
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, append(a.attrs("revoked"), slog.String("reason", "precedence: "+reason))...)
		return nil, errDelegationRevoked("the user's domain no longer permits this delegation")
	}
	var resp pass.AuthorizationCheckResponse
	err := s.callAuthority(ctx, rec, func(cfg *pass.AuthorityConfiguration) string { return cfg.Endpoints.AuthorizationCheck },
		pass.AuthorizationCheckRequest{AuthorizationID: rec.AuthorizationID}, &resp)
	var pe *pass.PeerError
	switch {
	case err == nil:
		scope := rec.Scope.Intersect(resp.Scope)
		var exp time.Time
		if resp.AuthorizationExpiresAt != nil {
			exp = *resp.AuthorizationExpiresAt
		}
		if err := s.cfg.Store.RecordCheck(ctx, rec.AuthorizationID, now, scope, exp); err != nil {
			return nil, fmt.Errorf("service: record authorization check: %w", err)
		}
		out := rec.clone()
		out.CheckedAt, out.CurrentScope = now, scope
		if !exp.IsZero() && (out.ExpiresAt.IsZero() || exp.Before(out.ExpiresAt)) {
			out.ExpiresAt = exp // an expiry only moves earlier
		}
		if !out.ExpiresAt.IsZero() && !out.ExpiresAt.After(now) {
			return nil, errDelegationRevoked("the delegation has expired")
		}
		s.cfg.Logger.LogAttrs(ctx, levelDebug, a.event, a.attrs("ok")...)
		return out, nil
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		if err := s.cfg.Store.Invalidate(ctx, rec.AuthorizationID, now, "authorization check: not found"); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("service: invalidate delegation: %w", err)
		}
		s.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, a.event, a.attrs("revoked")...)
		return nil, errDelegationRevoked("the Authority no longer vouches for the delegation")
	default:
		return s.unverifiable(ctx, a, rec, now, err)
	}
}

// unverifiable answers a check that could not be made (Authority or DNS
// unreachable): the request is refused unless UnreachableGrace allows the
// last result; the delegation itself is kept (G-15).
func (s *Service) unverifiable(ctx context.Context, a *audit, rec *DelegationRecord, now time.Time, err error) (*DelegationRecord, error) {
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
// redemption, and must still name the same authority and trust mode.
func (s *Service) callAuthority(ctx context.Context, rec *DelegationRecord, endpoint func(*pass.AuthorityConfiguration) string, body any, out pass.Document) error {
	cfg, err := s.cfg.Discovery.AuthorityConfiguration(ctx, rec.ConfigurationURL)
	if err != nil {
		return err
	}
	if cfg.Authority != rec.Authority || cfg.TrustMode != rec.TrustMode {
		return fmt.Errorf("service: the configuration at %s no longer describes %s as %s", rec.ConfigurationURL, rec.Authority, rec.TrustMode)
	}
	u := endpoint(cfg)
	if u == "" {
		return errNotAdvertised
	}
	tok, err := assertion.Sign(s.cfg.Keys.Current(), s.cfg.origin, cfg.Authority, 0, s.cfg.Now())
	if err != nil {
		return err
	}
	_, err = httpx.Do(ctx, s.cfg.HTTPClient, httpx.Call{Peer: pass.PeerAuthority, URL: u, Bearer: tok, Body: body}, out)
	return err
}

var errNotAdvertised = errors.New("service: the Authority does not advertise this endpoint")

// Close ends a delegation on behalf of the application, for example when
// the agent's task is done (complete) or the user withdraws it (revoke).
// Every token and session of the delegation stops working at once, on
// every replica sharing the Store. When the Authority advertises
// endpoints.authorization_close (je.authorization-close) it is told too;
// a plain v0.1 Authority is not. The local invalidation happens even when
// the call to the Authority fails, whose error is then returned.
func (s *Service) Close(ctx context.Context, authorizationID string, action pass.CloseAction, reason string) error {
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
	if err := s.cfg.Store.Invalidate(ctx, authorizationID, s.cfg.Now(), "closed by the Service: "+string(action)); err != nil {
		return fmt.Errorf("service: Close: %w", err)
	}
	a := &audit{event: eventClose}
	a.fromDelegation(rec)
	var resp pass.AuthorizationCloseResponse
	err = s.callAuthority(ctx, rec, func(cfg *pass.AuthorityConfiguration) string { return cfg.Endpoints.AuthorizationClose }, req, &resp)
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
