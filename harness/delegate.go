package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// Sub-agent delegation: a mission's Harness hands part of its task to a
// sub-agent, which gets its own mission and pass, bound to its own key and
// never holding more than the parent (scope, expiry, depth). Within those
// bounds the Authority approves without a person: one round trip.
//
// The exchange, when the sub-agent runs apart from the parent:
//
//  1. the parent calls Mission.Offer and hands the ChildOffer to the
//     sub-agent;
//  2. the sub-agent, with a key it generated and keeps, calls ProveChild and
//     hands back the ChildProofs (public key, proof, task attestation);
//  3. the parent calls Mission.Delegate and hands the Grant to the
//     sub-agent, which sets Grant.Key to its key and redeems it.
//
// The Grant is useless without the sub-agent's key, so steps 1 and 3 may
// cross any channel that keeps them intact.

// ChildOffer is what a parent tells a sub-agent so that it can prove its
// key for the delegation: no secret.
type ChildOffer struct {
	// HarnessID is the child's harness id: the parent's, "/" and a
	// suffix.
	HarnessID string
	// ParentMissionID is the mission the child is delegated from.
	ParentMissionID string
	// Authority is the Authority identifier, the proof's audience.
	Authority string
	// Task is the sub-task.
	Task pass.Task
}

// ChildProofs are what a sub-agent hands its parent: its public key, a
// fresh proof of that key bound to the parent mission, and its attestation
// of the sub-task. They are valid for 60 seconds.
type ChildProofs struct {
	PublicKey       json.RawMessage
	Proof           string
	TaskAttestation string
}

// Child describes a delegation to a sub-agent.
type Child struct {
	// Offer is the offer made to the sub-agent (Mission.Offer). Required.
	Offer ChildOffer
	// Proofs are the sub-agent's answer to the offer (ProveChild).
	// Required.
	Proofs ChildProofs
	// Scope is the child's scope: concrete, non-empty and within the
	// parent's current scope. Required.
	Scope pass.Scope
	// ExpiresIn, when positive, ends the child's delegation that long
	// from now; it may not outlive the parent. If zero, the Authority's
	// default (at most an hour, never beyond the parent).
	ExpiresIn time.Duration
	// MaxDepth lets the child delegate further this many generations,
	// within what the parent has left. Zero, the default, allows none.
	MaxDepth int
}

// Offer returns the offer for a sub-agent named suffix ([a-z0-9_-], at
// most 32 characters) that is to do task.
func (m *Mission) Offer(suffix string, task pass.Task) (ChildOffer, error) {
	id := m.harnessID + "/" + suffix
	if _, ok := pass.ChildSuffix(id); !ok {
		return ChildOffer{}, fmt.Errorf("%w: child suffix %q is not 1 to 32 characters [a-z0-9_-]", ErrInvalidRequest, suffix)
	}
	if task.ID == "" || task.Description == "" {
		return ChildOffer{}, fmt.Errorf("%w: a child's task needs an id and a description", ErrInvalidRequest)
	}
	return ChildOffer{HarnessID: id, ParentMissionID: m.id, Authority: m.authority, Task: task}, nil
}

// ProveChild answers offer with the sub-agent's own key: the proof binds
// the key to the parent mission (so it cannot be replayed for another
// parent), and the attestation binds it to the sub-task. delegateURL is
// the Authority's delegate endpoint if the sub-agent knows it, else "".
// It runs in the sub-agent; its key never leaves it.
func ProveChild(key *dpop.Key, offer ChildOffer, delegateURL string, now time.Time) (ChildProofs, error) {
	if key == nil {
		return ChildProofs{}, fmt.Errorf("%w: no child key", ErrInvalidRequest)
	}
	p := dpop.ProofParams{HarnessID: offer.HarnessID, Audience: offer.Authority, AgentPass: pass.ChildKeyBinding(offer.ParentMissionID, key.Thumbprint()),
		TTL: defaultTaskAttestationTTL, Now: now}
	if delegateURL != "" {
		p.Method, p.URL = http.MethodPost, delegateURL
	}
	proof, err := key.HarnessProof(p)
	if err != nil {
		return ChildProofs{}, fmt.Errorf("harness: child proof: %w", err)
	}
	att, err := key.TaskAttestation(offer.HarnessID, offer.Task.ID, offer.Task.Description, defaultTaskAttestationTTL, now)
	if err != nil {
		return ChildProofs{}, fmt.Errorf("harness: child task attestation: %w", err)
	}
	return ChildProofs{PublicKey: key.PublicJSON(), Proof: proof, TaskAttestation: att}, nil
}

// Delegate asks the Authority for a child mission described by c, proving
// this mission's key, and returns the child's Grant without a Key: the
// sub-agent sets Grant.Key to its own key before redeeming it. When the
// Authority's policy leaves the child for a person, the Grant is Pending
// and holds no pass: the sub-agent sets Grant.Key and calls
// Client.WaitDelegation, since only its key may read the decision. Refusals
// are *pass.PeerError matching the codes pass.CodeNotAttenuated,
// CodeDepthExceeded, CodeDelegationNotPermitted, CodeFanoutExceeded and
// CodeHolderKeyReused. An Authority without the delegation extension gives
// ErrMissionUnsupported.
func (m *Mission) Delegate(ctx context.Context, c Child) (*Grant, error) {
	if m.Closed() {
		return nil, ErrMissionClosed
	}
	g := m.grant
	endpoint := ""
	if g != nil && g.AuthorityConfiguration != nil {
		endpoint = g.AuthorityConfiguration.Extensions.Endpoint(pass.ExtDelegation, "delegate")
	}
	if endpoint == "" {
		return nil, fmt.Errorf("%w: no delegate endpoint", ErrMissionUnsupported)
	}
	if c.Offer.ParentMissionID != m.id {
		return nil, fmt.Errorf("%w: the offer is for another mission", ErrInvalidRequest)
	}
	body := pass.DelegationRequest{
		Parent: pass.DelegationParent{MissionID: m.id}, Type: g.Type,
		Harness: pass.HarnessInfo{ID: c.Offer.HarnessID, Cnf: &pass.Cnf{JWK: c.Proofs.PublicKey}},
		Task: pass.Task{ID: c.Offer.Task.ID, Description: c.Offer.Task.Description,
			Attestation: &pass.JWTContainer{JWT: c.Proofs.TaskAttestation}},
		Scope: c.Scope, ExpiresIn: int64(c.ExpiresIn / time.Second), HarnessProof: pass.JWTContainer{JWT: c.Proofs.Proof},
	}
	if c.MaxDepth > 0 {
		body.Delegation = &pass.DelegationLimits{MaxDepth: c.MaxDepth}
	}
	if err := body.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	var st pass.IssuanceStatus
	if err := m.call(ctx, endpoint, body, &st); err != nil {
		m.c.log.LogAttrs(ctx, slog.LevelWarn, "agentpass delegate", slog.String("mission_id", m.id),
			slog.String("child", c.Offer.HarnessID), slog.String("outcome", "failed"), slog.String("error", err.Error()))
		return nil, err
	}
	pending := st.Status == pass.StatusPending && st.AgentPass == nil
	if (!pending && (st.Status != pass.StatusApproved || st.AgentPass == nil || st.AgentPass.Type != g.Type)) ||
		st.Mission == nil || st.Mission.Parent != m.id || st.Mission.ID == "" || st.ID == "" {
		return nil, &ProtocolError{Peer: "authority", URL: endpoint, Reason: "the delegation answer is neither an approved child pass nor a pending child"}
	}
	child := &Grant{
		Type: g.Type, Service: g.Service, ServiceConfiguration: g.ServiceConfiguration,
		Authority: g.Authority, AuthorityConfiguration: g.AuthorityConfiguration, Branch: g.Branch,
		HarnessID: c.Offer.HarnessID, User: g.User, Task: c.Offer.Task, RequestID: st.ID, Destination: g.Destination,
		MissionID: st.Mission.ID, pending: pending,
	}
	if !pending {
		child.pass = *st.AgentPass
	}
	if st.ExpiresAt != nil {
		child.ExpiresAt = *st.ExpiresAt
	}
	if pending {
		m.c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass delegate", slog.String("mission_id", m.id),
			slog.String("child", c.Offer.HarnessID), slog.String("child_mission_id", st.Mission.ID), slog.String("outcome", "pending"))
		return child, nil
	}
	m.c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass delegate", slog.String("mission_id", m.id),
		slog.String("child", c.Offer.HarnessID), slog.String("child_mission_id", st.Mission.ID), slog.String("outcome", "ok"))
	return child, nil
}

// DelegateNewKey generates the child's key in this process, delegates to
// it, and returns the Grant with its Key set.
//
// It is the weaker convenience for a sub-agent that shares the parent's
// process: the parent held the child's private key, so the key proves
// nothing about which of the two acts, and the Authority cannot tell. Hand
// the Grant over and drop every other reference to it. Prefer Offer,
// ProveChild (in the sub-agent) and Delegate.
func (m *Mission) DelegateNewKey(ctx context.Context, suffix string, task pass.Task, scope pass.Scope, expiresIn time.Duration) (*Grant, error) {
	offer, err := m.Offer(suffix, task)
	if err != nil {
		return nil, err
	}
	key, err := dpop.GenerateKey("ES256")
	if err != nil {
		return nil, fmt.Errorf("harness: child key: %w", err)
	}
	proofs, err := ProveChild(key, offer, "", m.c.now())
	if err != nil {
		return nil, err
	}
	g, err := m.Delegate(ctx, Child{Offer: offer, Proofs: proofs, Scope: scope, ExpiresIn: expiresIn})
	if err != nil {
		return nil, err
	}
	g.Key = key
	return g, nil
}

// WaitDelegation polls a Pending child Grant (from Mission.Delegate, with
// Key set to the sub-agent's key) until a person decides, and returns the
// approved Grant. It runs in the sub-agent, whose Client has the child's
// harness id: each poll proves the child's key, so the parent, which never
// holds that key, cannot read the child's pass. Refusals are as for Wait:
// a *DeniedError, ErrExpired or ErrCanceled. If ctx ends first, the child
// stays pending and WaitDelegation can be called again.
func (c *Client) WaitDelegation(ctx context.Context, g *Grant) (*Grant, error) {
	if err := c.ready(); err != nil {
		return nil, err
	}
	switch {
	case g == nil || !g.pending:
		return nil, fmt.Errorf("%w: the grant is not a pending delegation", ErrInvalidRequest)
	case g.Key == nil:
		return nil, fmt.Errorf("%w: set the pending grant's Key to the sub-agent's key", ErrInvalidRequest)
	case g.HarnessID != c.harnessID:
		return nil, fmt.Errorf("%w: the pending delegation is for harness %q, this Client is %q", ErrInvalidRequest, g.HarnessID, c.harnessID)
	case g.AuthorityConfiguration == nil || g.RequestID == "":
		return nil, fmt.Errorf("%w: the grant does not come from Mission.Delegate", ErrInvalidRequest)
	}
	child := &Grant{
		Type: g.Type, Service: g.Service, ServiceConfiguration: g.ServiceConfiguration,
		Authority: g.Authority, AuthorityConfiguration: g.AuthorityConfiguration, Branch: g.Branch,
		HarnessID: g.HarnessID, User: g.User, Task: g.Task, RequestID: g.RequestID, Destination: g.Destination,
		Key: g.Key, MissionID: g.MissionID,
	}
	a := &acquisition{grant: child, statusOK: true}
	st, err := c.poll(ctx, a, &pass.IssuanceStatus{ID: g.RequestID, Status: pass.StatusPending}, c.now())
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass delegation ended", slog.String("child_mission_id", g.MissionID),
			slog.String("outcome", outcome(err)), slog.String("error", err.Error()))
		return nil, err
	}
	if st.Mission != nil && st.Mission.ID != "" && st.Mission.ID != g.MissionID {
		return nil, &ProtocolError{Peer: "authority", URL: g.AuthorityConfiguration.Endpoints.IssuanceStatus, Reason: "the status is for another mission"}
	}
	child.pass = *st.AgentPass
	if st.ExpiresAt != nil {
		child.ExpiresAt = *st.ExpiresAt
	}
	c.log.LogAttrs(ctx, slog.LevelInfo, "agentpass delegation approved", slog.String("child_mission_id", g.MissionID), slog.String("outcome", "ok"))
	return child, nil
}
