package authority

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

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

// Request returns the issuance request of the mission with the given id
// (ErrNotFound). Requests are known to operators by their mission id; the
// request id is the Harness's polling secret and is not kept.
func (a *Authority) Request(ctx context.Context, missionID string) (*Request, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	return a.store.Request(ctx, missionID)
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

// Decide records a person's decision on the pending request of the mission
// with the given id: Approve (with d.Scope narrowing the proposal or the
// available scopes; nil grants the proposal, or everything available), Deny
// or Cancel. The Harness sees it at its next poll. Errors: ErrNotFound,
// ErrNotPending (already decided; terminal states never change),
// ErrExpired, ErrInvalidDecision, ErrScopeNotAvailable.
func (a *Authority) Decide(ctx context.Context, missionID string, d Decision) (*Request, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if d.Outcome == Pending {
		return nil, fmt.Errorf("%w: Decide needs Approve, Deny or Cancel", ErrInvalidDecision)
	}
	if d.DecidedBy == "" {
		d.DecidedBy = "operator"
	}
	req, err := a.store.Request(ctx, missionID)
	if err != nil {
		return nil, err
	}
	now := a.now()
	switch req.StatusAt(now) {
	case pass.StatusPending:
	case pass.StatusExpired:
		a.expire(ctx, req.MissionID)
		return nil, ErrExpired
	default:
		return nil, ErrNotPending
	}
	e, err := a.evidence(req, d, now)
	if err != nil {
		return nil, err
	}
	if e.Status == pass.StatusApproved {
		e.ScopeDecision = scopeDecision(req, e.Scope, true)
	}
	if req.ParentMissionID != "" && e.Status == pass.StatusApproved {
		if err := a.boundChild(ctx, req, &e); err != nil {
			return nil, err
		}
	}
	granted := d
	granted.Scope = e.Scope
	if err := a.validateDecision(ctx, req, granted); err != nil {
		return nil, err
	}
	c := MissionChange{From: []pass.MissionState{pass.MissionPending}, To: pass.MissionActive, By: d.DecidedBy, Reason: d.Reason, Decision: &e}
	switch e.Status {
	case pass.StatusDenied:
		c.To, c.Cause = pass.MissionRevoked, pass.CauseDenied
	case pass.StatusCanceled:
		c.To, c.Cause = pass.MissionRevoked, pass.CauseCanceled
	}
	out, err := a.store.TransitionMission(ctx, missionID, c, now)
	switch {
	case errors.Is(err, ErrState) || errors.Is(err, ErrTerminal):
		err = ErrNotPending
	case errors.Is(err, ErrExpired):
		a.expire(ctx, missionID)
	}
	attrs := []slog.Attr{
		slog.String("mission_id", missionID), slog.String("request_id_hash", req.IDHash), slog.String("user", req.User), slog.String("agent", req.AgentID),
		slog.String("task", req.TaskID), slog.String("service", req.Service), slog.String("decided_by", d.DecidedBy),
		slog.String("tier", string(req.Tier)), slog.Bool("task_attested", req.TaskAttested),
		slog.Any("available", req.AvailableScope), slog.Any("scope", e.Scope),
	}
	if err != nil {
		a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass decision", append(attrs, slog.String("outcome", "rejected"), slog.String("reason", err.Error()))...)
		return nil, err
	}
	a.tel.Decision(ctx, "operator", string(out.Status))
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass decision", append(attrs, slog.String("outcome", string(out.Status)),
		slog.Int64("version", out.Version), slog.String("reason", d.Reason))...)
	return out, nil
}

// The lifecycle calls below take an authorization id (they act on that
// authorization's mission) or a mission id (starting with msn_). Each
// change is one atomic step of the store with its history entry; ending a
// mission ends its descendants, and suspending, resuming or narrowing it
// is recorded in theirs. by names the operator for the evidence.

// Revoke ends a live mission (and its descendants) at once; every Service
// sees 404 at its next authorization check.
func (a *Authority) Revoke(ctx context.Context, id, by, reason string) (*pass.MissionRecord, error) {
	return a.change(ctx, "revoke", id, MissionChange{From: liveMission, To: pass.MissionRevoked, Cause: pass.CauseOperator, By: by, Reason: reason})
}

// Complete ends a live mission (and its descendants) as done.
func (a *Authority) Complete(ctx context.Context, id, by, reason string) (*pass.MissionRecord, error) {
	return a.change(ctx, "complete", id, MissionChange{From: liveMission, To: pass.MissionCompleted, Cause: pass.CauseOperator, By: by, Reason: reason})
}

// Suspend pauses an active mission: authorization checks of it and of its
// descendants answer 404 until Resume.
func (a *Authority) Suspend(ctx context.Context, id, by, reason string) (*pass.MissionRecord, error) {
	return a.change(ctx, "suspend", id, MissionChange{From: []pass.MissionState{pass.MissionActive}, To: pass.MissionSuspended, By: by, Reason: reason})
}

// Resume reactivates a suspended mission that has not expired; ErrState
// when it is not suspended.
func (a *Authority) Resume(ctx context.Context, id, by string) (*pass.MissionRecord, error) {
	return a.change(ctx, "resume", id, MissionChange{From: []pass.MissionState{pass.MissionSuspended}, To: pass.MissionActive, By: by})
}

// NarrowScope replaces a live mission's scope by a subset of it (its
// descendants keep at most the new scope); a wider scope is refused with
// ErrScopeWiden. Services see it at their next check.
func (a *Authority) NarrowScope(ctx context.Context, id, by string, scope pass.Scope) (*pass.MissionRecord, error) {
	if scope == nil {
		scope = pass.Scope{}
	}
	return a.change(ctx, "narrow scope", id, MissionChange{From: liveMission, Scope: scope.Dedupe(), By: by})
}

var liveMission = []pass.MissionState{pass.MissionActive, pass.MissionSuspended}

// missionID resolves an operator's id: a mission id as such, an
// authorization id to its mission.
func (a *Authority) missionID(ctx context.Context, id string) (string, error) {
	if strings.HasPrefix(id, pass.MissionIDPrefix) {
		return id, nil
	}
	az, err := a.store.Authorization(ctx, id)
	if err != nil {
		return "", err
	}
	return az.MissionID, nil
}

func (a *Authority) change(ctx context.Context, op, id string, c MissionChange) (*pass.MissionRecord, error) {
	if err := a.ready(); err != nil {
		return nil, err
	}
	if c.By == "" {
		c.By = "operator"
	}
	mid, err := a.missionID(ctx, id)
	attrs := []slog.Attr{slog.String("id", logID(id)), slog.String("mission_id", mid), slog.String("by", c.By), slog.String("reason", c.Reason)}
	if err == nil {
		var r *Request
		r, err = a.store.TransitionMission(ctx, mid, c, a.now())
		if errors.Is(err, ErrExpired) {
			a.expire(ctx, mid)
		}
		if err == nil {
			a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+op, append(attrs, slog.String("outcome", "ok"),
				slog.String("request_id_hash", r.IDHash), slog.String("user", r.User), slog.String("agent", r.AgentID), slog.String("task", r.TaskID),
				slog.String("service", r.Service), slog.String("state", string(r.State)), slog.Int64("version", r.Version),
				slog.Any("scope", r.Scope))...)
			return a.Mission(ctx, mid)
		}
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+op, append(attrs, slog.String("outcome", "rejected"), slog.String("code", err.Error()))...)
	return nil, err
}
