package authoritytest

import (
	"errors"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// DecideRequest decides a pending request through TransitionMission, as
// Authority.Decide does.
func DecideRequest(s authority.Store, id string, e authority.Evidence, now time.Time) (*authority.Request, error) {
	if !strings.HasPrefix(id, pass.MissionIDPrefix) {
		id = pass.MissionIDPrefix + id
	}
	c := authority.MissionChange{From: []pass.MissionState{pass.MissionPending}, To: pass.MissionActive, By: e.DecidedBy, Reason: e.Reason, Decision: &e}
	switch e.Status {
	case pass.StatusDenied:
		c.To, c.Cause = pass.MissionRevoked, pass.CauseDenied
	case pass.StatusCanceled:
		c.To, c.Cause = pass.MissionRevoked, pass.CauseCanceled
	}
	r, err := s.TransitionMission(ctx, id, c, now)
	if errors.Is(err, authority.ErrState) || errors.Is(err, authority.ErrTerminal) {
		return nil, authority.ErrNotPending
	}
	return r, err
}

// AuthUpdate is a change of an authorization's mission, in the terms of
// the authorization.
type AuthUpdate struct {
	From    []pass.DelegationState
	To      pass.DelegationState
	Scope   pass.Scope
	Service string
	By      string
	Reason  string
}

// UpdateAuthorization applies u to the mission of authorization id, as the
// operator calls and the close endpoint do, and returns the authorization.
func UpdateAuthorization(s authority.Store, id string, u AuthUpdate, now time.Time) (*authority.Authorization, error) {
	a, err := s.Authorization(ctx, id)
	if err != nil {
		return nil, err
	}
	c := authority.MissionChange{To: pass.MissionState(u.To), Scope: u.Scope, Service: u.Service, By: u.By, Reason: u.Reason}
	for _, f := range u.From {
		c.From = append(c.From, pass.MissionState(f))
	}
	if c.To.Terminal() {
		c.Cause = pass.CauseOperator
	}
	if _, err := s.TransitionMission(ctx, a.MissionID, c, now); err != nil {
		if errors.Is(err, authority.ErrTerminal) {
			err = errors.Join(authority.ErrState, err)
		}
		return nil, err
	}
	return s.Authorization(ctx, id)
}
