package authority

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentpass-go/agentpass/pass"
)

// This file is the operator API: what an approval UI or an admin console
// calls. None of it is reachable over the Authority's HTTP endpoints; the
// application puts its own authentication in front of it.

// errNotNew is returned by every method of an Authority that was not made
// by New (the zero value): it has no store and no keys to act with.
var errNotNew = fmt.Errorf("%w: the Authority was not created with New", ErrInvalidConfig)

// ready reports errNotNew for a zero or nil Authority.
func (a *Authority) ready() error {
	if a == nil || a.store == nil {
		return errNotNew
	}
	return nil
}

// Request returns the issuance request with the given id (ErrNotFound).
func (a *Authority) Request(ctx context.Context, id string) (*Request, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.store.Request(ctx, id)
}

// Pending lists the requests waiting for a decision, oldest first. A zero
// opts.Now means the Authority's clock.
func (a *Authority) Pending(ctx context.Context, opts ListOptions) ([]*Request, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if opts.Now.IsZero() {
		opts.Now = a.now()
	}
	return a.store.PendingRequests(ctx, opts)
}

// Authorizations lists the live (active or suspended) delegations, newest
// first. A zero opts.Now means the Authority's clock.
func (a *Authority) Authorizations(ctx context.Context, opts ListOptions) ([]*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if opts.Now.IsZero() {
		opts.Now = a.now()
	}
	return a.store.Authorizations(ctx, opts)
}

// Authorization returns the delegation with the given id, whatever its
// state (ErrNotFound).
func (a *Authority) Authorization(ctx context.Context, id string) (*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.store.Authorization(ctx, id)
}

// Decide records a person's decision on a pending request: Approve (with
// d.Scope narrowing the proposal or the available scopes; nil grants the
// proposal, or everything available), Deny or Cancel. The Harness sees it at
// its next poll. Errors: ErrNotFound, ErrNotPending (already decided;
// terminal states never change), ErrExpired, ErrInvalidDecision,
// ErrScopeNotAvailable.
func (a *Authority) Decide(ctx context.Context, id string, d Decision) (*Request, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if d.Outcome == Pending {
		return nil, fmt.Errorf("%w: Decide needs Approve, Deny or Cancel", ErrInvalidDecision)
	}
	if d.DecidedBy == "" {
		d.DecidedBy = "operator"
	}
	req, err := a.store.Request(ctx, id)
	if err != nil {
		return nil, err
	}
	now := a.now()
	switch req.StatusAt(now) {
	case pass.StatusPending:
	case pass.StatusExpired:
		return nil, ErrExpired
	default:
		return nil, ErrNotPending
	}
	e, err := a.evidence(req, d, now)
	if err != nil {
		return nil, err
	}
	out, err := a.store.DecideRequest(ctx, id, e, now)
	attrs := []slog.Attr{
		slog.String("request_id", logID(id)), slog.String("user", req.User), slog.String("agent", req.AgentID),
		slog.String("task", req.TaskID), slog.String("service", req.Service), slog.String("decided_by", d.DecidedBy),
		slog.String("tier", string(req.Tier)), slog.Bool("task_attested", req.TaskAttested),
		slog.Any("available", req.AvailableScope), slog.Any("scope", e.Scope),
	}
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass decision", append(attrs, slog.String("outcome", "rejected"), slog.String("reason", err.Error()))...)
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass decision", append(attrs, slog.String("outcome", string(out.Status)), slog.String("reason", d.Reason))...)
	return out, nil
}

// Revoke ends a live delegation (and its sub-delegations) at once; every
// Service sees 404 at its next authorization check (A-AUTHZ-4). by names
// the operator for the evidence.
func (a *Authority) Revoke(ctx context.Context, id, by, reason string) (*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.update(ctx, "revoke", id, AuthorizationUpdate{From: liveStates, To: pass.DelegationRevoked, By: by, Reason: reason})
}

// Suspend pauses an active delegation: authorization checks answer 404
// until Resume.
func (a *Authority) Suspend(ctx context.Context, id, by, reason string) (*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.update(ctx, "suspend", id, AuthorizationUpdate{From: []pass.DelegationState{pass.DelegationActive}, To: pass.DelegationSuspended, By: by, Reason: reason})
}

// Resume reactivates a suspended delegation that has not expired.
func (a *Authority) Resume(ctx context.Context, id, by string) (*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.update(ctx, "resume", id, AuthorizationUpdate{From: []pass.DelegationState{pass.DelegationSuspended}, To: pass.DelegationActive, By: by})
}

// NarrowScope replaces a live delegation's scope by a subset of it; a wider
// scope is refused with ErrScopeWiden. Services see it at their next check.
func (a *Authority) NarrowScope(ctx context.Context, id, by string, scope pass.Scope) (*Authorization, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if scope == nil {
		scope = pass.Scope{}
	}
	return a.update(ctx, "narrow scope", id, AuthorizationUpdate{From: liveStates, Scope: scope.Dedupe(), By: by})
}

func (a *Authority) update(ctx context.Context, op, id string, u AuthorizationUpdate) (*Authorization, error) {
	if u.By == "" {
		u.By = "operator"
	}
	az, err := a.store.UpdateAuthorization(ctx, id, u, a.now())
	attrs := []slog.Attr{slog.String("authorization_id", id), slog.String("by", u.By), slog.String("reason", u.Reason)}
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+op, append(attrs, slog.String("outcome", "rejected"), slog.String("code", err.Error()))...)
		return nil, err
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+op, append(attrs, slog.String("outcome", "ok"),
		slog.String("user", az.User), slog.String("agent", az.AgentID), slog.String("task", az.TaskID),
		slog.String("service", az.Service), slog.String("state", string(az.State)), slog.Any("scope", az.Scope))...)
	return az, nil
}
