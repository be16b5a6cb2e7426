package conformance

import (
	"context"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

const roleExtension = "extension"

// needExtension skips c unless the Authority under test advertises uri
// with the endpoint name.
func (r *runner) needExtension(c *check, uri, endpoint string) string {
	if !r.needAuthority(c) {
		return ""
	}
	u := r.auth.cfg.Extensions.Endpoint(uri, endpoint)
	if u == "" {
		c.skipf("the Authority does not advertise %s (plain v0.1 is fine)", uri)
	}
	return u
}

func (r *runner) extensionChecks() []def {
	return []def{
		{role: roleExtension, group: "holder binding", id: "ext:holder-binding", level: Choice,
			name:     "Authority: a hardened request's pass is released only to its key",
			expected: "Holder-binding extension: when harness.extensions lists it, an approved status carries agentpass only for a poller sending AgentPass-Proof signed by harness.cnf (G-2).",
			fn:       r.hardenedStatus},
		{role: roleExtension, group: "holder binding", id: "ext:holder-binding", level: Choice,
			name:     "Service: a hardened pass is not redeemable with a plain v0.1 proof",
			expected: "Holder-binding extension: a pass requested with the extension is redeemable only with a proof carrying htm, htu and aph; a v0.1 proof is refused.",
			fn:       r.hardenedRedemption},
		{role: roleExtension, group: "mission", id: "ext:mission", level: Choice,
			name:     "a mission is read with its holder proof, and only with it",
			expected: "Mission extension: POST {mission} with mission_id answers the Harness's view when the AgentPass-Proof header is a proof by the pass's holder key (aud = authority, htm, htu, aph = hash of the mission id); without a proof, or with another key's, it is refused.",
			fn:       r.missionRead},
		{role: roleExtension, group: "delegation", id: "ext:delegation", level: Choice,
			name:     "a child asking for more than its parent holds is refused",
			expected: "Delegation extension: a child's scope must be within the parent's current scope; a wider scope is refused (403 not_attenuated), as is a parent approved without delegation rights (403 delegation_not_permitted).",
			fn:       r.delegationWider},
	}
}

// missionGrant obtains a pass whose status names its mission.
func (r *runner) missionGrant(ctx context.Context, c *check) *grant {
	svc := r.issuanceService()
	if svc == "" {
		c.skipf("needs a Service the Authority issues for")
		return nil
	}
	g, err := r.acquire(ctx, c, r.auth, svc, pass.BearerToken)
	if err != nil {
		c.skipf("could not obtain a pass: %v", err)
		return nil
	}
	if g.pending.MissionID == "" {
		c.failf("the Authority advertises missions but its status answer names none")
		return nil
	}
	return g
}

func missionProof(k *dpop.Key, harnessID, authority, endpoint, missionID string) string {
	p, _ := k.HarnessProof(dpop.ProofParams{HarnessID: harnessID, Audience: authority, Method: http.MethodPost, URL: endpoint, AgentPass: missionID, TTL: time.Minute})
	return p
}

func (r *runner) missionRead(ctx context.Context, c *check) {
	u := r.needExtension(c, pass.ExtMission, "mission")
	if u == "" {
		return
	}
	g := r.missionGrant(ctx, c)
	if g == nil {
		return
	}
	body := pass.MissionReadRequest{MissionID: g.pending.MissionID}
	a := c.send(ctx, http.MethodPost, u, http.Header{pass.ProofHeader: {missionProof(g.key, g.harnessID, r.auth.cfg.Authority, u, g.pending.MissionID)}}, body)
	var m pass.MissionResponse
	if !a.ok() {
		c.failf("read with the holder proof: %s", a)
	} else if err := pass.Decode(a.body, &m); err != nil {
		c.failf("%v", err)
	} else if m.Mission.ID != g.pending.MissionID {
		c.failf("the record is of mission %q", m.Mission.ID)
	}
	c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, body), "no proof")
	other, _ := es256Key()
	c.expectRefusal(c.send(ctx, http.MethodPost, u, http.Header{pass.ProofHeader: {missionProof(other, g.harnessID, r.auth.cfg.Authority, u, g.pending.MissionID)}}, body), "proof by another key")
}

func (r *runner) delegationWider(ctx context.Context, c *check) {
	u := r.needExtension(c, pass.ExtDelegation, "delegate")
	if u == "" {
		return
	}
	g := r.missionGrant(ctx, c)
	if g == nil {
		return
	}
	if r.cfg.KitService != nil && g.service == r.cfg.KitService.origins[0] {
		// Redeem (validate) the parent first, so its mission is active.
		r.validate(ctx, c, 0, g.value)
	}
	child, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return
	}
	childID := g.harnessID + "/conformance"
	taskID, desc := r.nextTask()
	att, _ := child.TaskAttestation(childID, taskID, desc, 0, time.Time{})
	proof, _ := child.HarnessProof(dpop.ProofParams{HarnessID: childID, Audience: r.auth.cfg.Authority, Method: http.MethodPost, URL: u,
		AgentPass: pass.ChildKeyBinding(g.pending.MissionID, child.Thumbprint()), TTL: time.Minute})
	body := pass.DelegationRequest{
		Parent: pass.DelegationParent{MissionID: g.pending.MissionID}, Type: pass.BearerToken,
		Harness: pass.HarnessInfo{ID: childID, Cnf: &pass.Cnf{JWK: child.PublicJSON()}},
		Task:    pass.Task{ID: taskID, Description: desc, Attestation: &pass.JWTContainer{JWT: att}},
		Scope:   pass.Scope{"conformance:wider-than-parent-" + r.runID}, HarnessProof: pass.JWTContainer{JWT: proof},
	}
	a := c.send(ctx, http.MethodPost, u, http.Header{pass.ProofHeader: {missionProof(g.key, g.harnessID, r.auth.cfg.Authority, u, g.pending.MissionID)}}, body)
	c.expectRefusal(a, "child scope wider than the parent's", 403)
	if code := a.errorCode(); a.refused() && code != string(pass.CodeNotAttenuated) && code != string(pass.CodeDelegationNotPermitted) {
		c.failf("refused with %q, not for the scope (want not_attenuated or delegation_not_permitted)", code)
	}
}

func (r *runner) hardenedStatus(ctx context.Context, c *check) {
	if !r.needAuthority(c) {
		return
	}
	if !r.auth.cfg.Extensions.Has(pass.ExtHolderBinding) {
		c.skipf("the Authority does not advertise %s (plain v0.1 is fine)", pass.ExtHolderBinding)
		return
	}
	svc := r.issuanceService()
	if svc == "" {
		c.skipf("needs a Service the Authority issues for")
		return
	}
	g, err := r.acquireWith(ctx, c, r.auth, svc, pass.BearerToken, hardened)
	if err != nil {
		c.failf("a hardened Harness proving its key got no pass: %v", err)
		return
	}
	with := c.send(ctx, http.MethodGet, g.statusURL, http.Header{pass.ProofHeader: {g.statusProof()}}, nil)
	var own pass.IssuanceStatus
	if !with.ok() || with.json(&own) != nil || own.AgentPass == nil {
		c.failf("a status read with the holder key's proof did not carry the pass: %s", with)
	}
	a := c.send(ctx, http.MethodGet, g.statusURL, nil, nil)
	var st pass.IssuanceStatus
	if a.ok() && a.json(&st) == nil && st.AgentPass != nil {
		c.failf("the approved status released the pass without a proof")
	}
	other, _ := es256Key()
	if other != nil {
		h := &grant{key: other, harnessID: g.harnessID, auth: g.auth, statusURL: g.statusURL, status: g.status}
		b := c.send(ctx, http.MethodGet, g.statusURL, http.Header{pass.ProofHeader: {h.statusProof()}}, nil)
		var st2 pass.IssuanceStatus
		if b.ok() && b.json(&st2) == nil && st2.AgentPass != nil {
			c.failf("the approved status released the pass to a proof by another key")
		}
	}
}

func (r *runner) hardenedRedemption(ctx context.Context, c *check) {
	if !r.needResolved(c) {
		return
	}
	if !r.svc.cfg.Extensions.Has(pass.ExtHolderBinding) || !r.svcAuth.cfg.Extensions.Has(pass.ExtHolderBinding) {
		c.skipf("the Service or its Authority does not advertise %s (plain v0.1 is fine)", pass.ExtHolderBinding)
		return
	}
	g, err := r.acquireWith(ctx, c, r.svcAuth, r.svc.cfg.Service.Origin, pass.BearerToken, hardened)
	if err != nil {
		c.skipf("could not obtain a pass: %v", err)
		return
	}
	body, err := g.redemption(r.svc.cfg.Service.Origin) // a plain v0.1 proof
	if err != nil {
		c.failf("%v", err)
		return
	}
	a := r.redeem(ctx, c, pass.BearerToken, body)
	c.expectRefusal(a, "hardened pass with a v0.1 proof", 401)
	noCredential(c, a, "hardened pass with a v0.1 proof")
}
