package authority

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// This file serves the delegation extension's endpoint: a mission's Harness,
// proving its holder key, asks for a child mission bound to a sub-agent's
// own key. The child can only hold less than its parent (scope, expiry,
// depth), so within those bounds it is approved without a person and a
// spawn costs one round trip.

// pathDelegate is the path of the delegate endpoint, relative to the path
// of Config.BaseURL.
const pathDelegate = "/missions/delegate"

// maxSpawnsPerMinute bounds the child missions created under one root
// mission, at any depth: a runaway orchestrator cannot flood the store or
// the approvers. The count is kept in memory by each replica (at most
// maxSpawnRoots roots, beyond which new roots share one budget), so n
// replicas allow up to n times as many.
const maxSpawnsPerMinute = 60

const maxSpawnRoots = 10000

// delegatedBy prefixes the DecidedBy of a child approved within its
// parent's bounds; the rest is the mission whose approval, by a person or
// a rule, it rests on.
const delegatedBy = "delegation:"

// serveDelegate is POST {delegate}.
func (a *Authority) serveDelegate(w http.ResponseWriter, r *http.Request) {
	const event = "delegate"
	logged := func(in *pass.DelegationRequest) []slog.Attr {
		return []slog.Attr{slog.String("parent", in.Parent.MissionID), slog.String("harness", in.Harness.ID), slog.String("task", in.Task.ID)}
	}
	in, parent, signer, ok := harnessCall(a, w, r, event, a.base+pathDelegate,
		func(in *pass.DelegationRequest) string { return in.Parent.MissionID }, logged)
	if !ok {
		return
	}
	ctx := r.Context()
	attrs := logged(in)
	child, reqID, value, err := a.delegate(ctx, in, parent, signer)
	if err != nil {
		a.reject(w, event, err, attrs...)
		return
	}
	now := a.now()
	attrs = append(attrs, slog.String("outcome", string(child.Status)), slog.String("mission_id", child.MissionID),
		slog.String("user", child.User), slog.String("service", child.Service))
	if d := child.Decision; d != nil {
		attrs = append(attrs, slog.String("decided_by", d.DecidedBy), slog.Any("scope", d.Scope), slog.Int("max_depth", d.MaxDepth))
	} else {
		attrs = append(attrs, slog.Any("scope", child.ProposedScope))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "agentpass "+event, attrs...)
	st := a.statusBody(child, reqID, value, child.State, now)
	st.Mission.Parent = child.ParentMissionID
	if child.Status == pass.StatusPending {
		if a.onPending != nil {
			a.onPending(ctx, *child.Clone())
		}
		httpx.WriteJSON(w, http.StatusAccepted, st)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, st)
}

// delegate checks a delegate request against its parent (whose holder
// proof, signed by signer's key, the caller verified) and stores the
// child. It returns the child, its request id and its pass value.
func (a *Authority) delegate(ctx context.Context, in *pass.DelegationRequest, parent, signer *Request) (*Request, string, string, error) {
	endpoint := a.base + pathDelegate
	// Only the parent's own key delegates: an ancestor that wants a child
	// delegates from its own mission.
	if signer.MissionID != parent.MissionID {
		return nil, "", "", errMissionUnknown.WithCause(errors.New("an ancestor's key signed a delegation"))
	}
	now := a.now()
	ancestors, err := a.ancestors(ctx, parent)
	if err != nil {
		return nil, "", "", err
	}
	if EffectiveMissionState(parent, ancestors, now) != pass.MissionActive || parent.Decision == nil {
		return nil, "", "", pass.Fail(pass.CodeMissionNotActive, "only an active mission can delegate")
	}
	pd := parent.Decision
	// A parent granted "*" hands down only scopes its Service listed for
	// it, never names the Service has not defined.
	bound := parent.Scope
	if bound.HasWildcard() {
		bound = parent.AvailableScope
	}
	switch {
	case pd.MaxDepth < 1 && parent.ParentMissionID == "":
		return nil, "", "", pass.Fail(pass.CodeDelegationNotPermitted, "the mission was approved without delegation rights")
	case pd.MaxDepth < 1:
		return nil, "", "", pass.Fail(pass.CodeDepthExceeded, "the mission may not delegate further")
	case in.Type != parent.Type:
		return nil, "", "", pass.Fail(pass.CodeNotAttenuated, "a child has its parent's pass type")
	case !strings.HasPrefix(in.Harness.ID, parent.HarnessID+"/") || strings.Contains(in.Harness.ID[len(parent.HarnessID)+1:], "/"):
		return nil, "", "", pass.Fail(pass.CodeInvalidRequest, "harness.id must be the parent's harness id, '/' and a suffix")
	case len(in.Harness.ID) > maxIDLength || len(in.Task.ID) > maxIDLength:
		return nil, "", "", pass.Failf(pass.CodeInvalidRequest, "task.id and harness.id must be at most %d bytes", maxIDLength)
	case len(in.Task.Description) > maxTaskDescription:
		return nil, "", "", pass.Failf(pass.CodeInvalidRequest, "task.description is longer than %d bytes", maxTaskDescription)
	case in.Scope.HasWildcard() || !in.Scope.SubsetOf(bound):
		return nil, "", "", pass.Fail(pass.CodeNotAttenuated, "the scope asked for is not within the parent's current scope")
	}
	end := pd.AuthorizationExpiresAt
	if in.ExpiresIn > 0 {
		if in.ExpiresIn > int64(maxAuthorizationTTL/time.Second) || now.Add(time.Duration(in.ExpiresIn)*time.Second).After(end) {
			return nil, "", "", pass.Fail(pass.CodeNotAttenuated, "expires_in reaches beyond the parent's expiry")
		}
		end = now.Add(time.Duration(in.ExpiresIn) * time.Second)
	} else if d := now.Add(a.childTTL); d.Before(end) {
		end = d
	}
	cnf := []byte(in.Harness.Cnf.JWK)
	key, err := dpop.ParsePublicJWK(cnf)
	if err != nil {
		return nil, "", "", pass.Fail(pass.CodeInvalidRequest, "harness.cnf.jwk is not a usable public key").WithCause(err)
	}
	thumb, err := dpop.Thumbprint(key)
	if err != nil {
		return nil, "", "", pass.Fail(pass.CodeInvalidRequest, "harness.cnf.jwk is not a usable public key").WithCause(err)
	}
	// A fresh key per child keeps every actor in the chain accountable
	// for its own proofs, and stops a child from speaking as its parent.
	for _, m := range append([]*Request{parent}, ancestors...) {
		if jkt(m) == thumb {
			return nil, "", "", pass.Fail(pass.CodeHolderKeyReused, "the child key is the key of its parent or an ancestor")
		}
	}
	// The child proves, fresh, that it holds the key for this parent: a
	// task attestation alone could be old or made for another parent.
	binding := pass.ChildKeyBinding(parent.MissionID, thumb)
	claims, err := a.proofs.Verify(ctx, in.HarnessProof.JWT, cnf, dpop.ProofRequest{Method: http.MethodPost, URL: endpoint,
		AgentPass: binding, HarnessID: in.Harness.ID})
	if err == nil && claims.APH != dpop.PassHash(binding) {
		return nil, "", "", pass.Fail(pass.CodeInvalidHarnessProof, "harness_proof must carry aph over the parent mission id and the child key").WithCause(errors.New("no aph"))
	}
	if err != nil {
		if !errors.Is(err, dpop.ErrInvalidProof) {
			return nil, "", "", err // the replay cache failed: 503
		}
		return nil, "", "", pass.Fail(pass.CodeInvalidHarnessProof, "harness_proof by the child key failed verification").WithCause(err)
	}
	if err := dpop.VerifyTaskAttestation(in.Task.Attestation.JWT, cnf, in.Harness.ID, in.Task.ID, in.Task.Description, now, 0); err != nil {
		return nil, "", "", pass.Fail(pass.CodeInvalidTaskAttest, "task attestation failed verification").WithCause(err)
	}
	maxDepth := pd.MaxDepth - 1
	if in.Delegation == nil {
		maxDepth = 0
	} else {
		maxDepth = min(maxDepth, in.Delegation.MaxDepth)
	}
	maxChildren := 0
	if maxDepth > 0 {
		maxChildren = pd.MaxChildren
	}
	root := parent.MissionID
	if r, ok := strings.CutPrefix(pd.DecidedBy, delegatedBy); ok {
		root = r
	}
	scope := in.Scope.Dedupe()
	passEnd := now.Add(a.passTTL)
	if end.Before(passEnd) {
		passEnd = end
	}
	child := &Request{
		MissionID: secret.ID(pass.MissionIDPrefix), Status: pass.StatusApproved, CreatedAt: now, ExpiresAt: now.Add(a.reqTTL),
		Type: parent.Type, Service: parent.Service, User: parent.User, HarnessID: in.Harness.ID,
		Cnf: cloneRaw(cnf), HardenedBinding: true, AgentID: in.Harness.ID, Tier: dpop.TierUnverified,
		TaskID: in.Task.ID, TaskDescription: in.Task.Description, TaskAttested: true,
		DestinationURL: parent.DestinationURL, AvailableScope: cloneScope(parent.Scope), ParentMissionID: parent.MissionID,
		Decision: &Evidence{Status: pass.StatusApproved, DecidedBy: delegatedBy + root, DecidedAt: now,
			Reason: "within the parent mission's grant", Scope: scope, PassExpiresAt: passEnd,
			AuthorizationExpiresAt: end, MaxDepth: maxDepth, MaxChildren: maxChildren},
	}
	value := ""
	within := Decision{Outcome: Approve, Scope: scope, DecidedBy: child.Decision.DecidedBy, Reason: child.Decision.Reason, MaxDepth: maxDepth}
	if a.delegationPolicy != nil && !a.delegationPolicy(ctx, parent.Clone(), child.Clone()) ||
		a.validateDecision(ctx, child, within) != nil {
		// A person decides, as for any request; the asked scope is what
		// an approval without a scope grants.
		child.Status, child.Decision, child.ProposedScope, child.ProposedBy = pass.StatusPending, nil, scope, "delegation_policy"
	} else {
		value = secret.Token(passPrefix)
		child.PassHash = secret.Hash(value)
	}
	reqID := secret.ID(requestIDPrefix)
	child.IDHash = secret.Hash(reqID)
	if ok, _ := a.spawns.AllowClient(root); !ok {
		return nil, "", "", pass.Fail(pass.CodeFanoutExceeded, "the mission tree has created as many children as it may this minute")
	}
	switch err := a.store.CreateChild(ctx, child, now); {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		return nil, "", "", errMissionUnknown.WithCause(err)
	case errors.Is(err, ErrState), errors.Is(err, ErrTerminal), errors.Is(err, ErrExpired):
		return nil, "", "", pass.Fail(pass.CodeMissionNotActive, "only an active mission can delegate").WithCause(err)
	case errors.Is(err, ErrTooManyChildren):
		return nil, "", "", pass.Fail(pass.CodeFanoutExceeded, "the mission has as many live children as it may").WithCause(err)
	case errors.Is(err, ErrScopeWiden):
		return nil, "", "", pass.Fail(pass.CodeNotAttenuated, "the child asks for more than its parent holds now").WithCause(err)
	default:
		return nil, "", "", err
	}
	return child, reqID, value, nil
}

// actChain returns the RFC 8693 actor chain of m given its ancestors
// (parent first): m's agent outermost, then each ancestor's, each with its
// mission so a Service can end the descendants of a mission it ends.
func actChain(m *Request, ancestors []*Request) *pass.Actor {
	if m.ParentMissionID == "" {
		return nil
	}
	out := &pass.Actor{Sub: m.AgentID, MissionID: m.MissionID}
	cur := out
	for _, p := range ancestors {
		cur.Act = &pass.Actor{Sub: p.AgentID, MissionID: p.MissionID}
		cur = cur.Act
	}
	return out
}

// attenuate bounds a child's scope by the current scope of each of its
// ancestors: a sub-agent never holds what one of those it acts for no
// longer holds, and an ancestor that widens never widens it past its own
// grant.
func attenuate(scope pass.Scope, ancestors []*Request) pass.Scope {
	for _, p := range ancestors {
		scope = scope.Intersect(p.Scope)
	}
	return scope
}

// boundChild keeps a person's approval of a pending child within what its
// parent holds now: the parent may have narrowed, or be nearer its end,
// since the child was asked for.
func (a *Authority) boundChild(ctx context.Context, r *Request, e *Evidence) error {
	parent, err := a.store.Request(ctx, r.ParentMissionID)
	if errors.Is(err, ErrNotFound) {
		return ErrState
	} else if err != nil {
		return err
	}
	pd := parent.Decision
	if pd == nil || parent.State.Terminal() {
		return ErrState
	}
	if e.Scope.HasWildcard() {
		e.Scope = cloneScope(r.ProposedScope)
	}
	e.Scope = e.Scope.Intersect(parent.Scope)
	if e.Scope.HasWildcard() {
		e.Scope = pass.Scope{}
	}
	if e.AuthorizationExpiresAt.After(pd.AuthorizationExpiresAt) {
		e.AuthorizationExpiresAt = pd.AuthorizationExpiresAt
	}
	if e.PassExpiresAt.After(e.AuthorizationExpiresAt) {
		e.PassExpiresAt = e.AuthorizationExpiresAt
	}
	e.MaxDepth = min(e.MaxDepth, max(pd.MaxDepth-1, 0))
	if e.MaxDepth == 0 {
		e.MaxChildren = 0
	} else {
		e.MaxChildren = min(e.MaxChildren, pd.MaxChildren)
	}
	return nil
}
