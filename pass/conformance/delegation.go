package conformance

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// maxFanoutProbe bounds how many children the fan-out check creates: an
// Authority advertising more is not probed.
const maxFanoutProbe = 8

func (r *runner) delegationChecks() []def {
	ext := func(name, expected string, fn func(context.Context, *check)) def {
		return def{role: roleExtension, group: "delegation", id: "ext:delegation", name: name, level: Choice, expected: expected, fn: fn}
	}
	return []def{
		ext("a child's key is proven fresh, and is not its parent's",
			"Delegation extension: the delegate request carries harness_proof signed by the child key with iss = the child's harness.id and aph over <parent mission id>.<child key thumbprint>; a proof by another key or over another binding is refused (401 invalid_harness_proof), and a child holding its parent's key is refused (422 holder_key_reused).",
			r.delegationFresh),
		ext("delegation stops at the depth and fan-out it allows",
			"Delegation extension: a mission at max_depth 0 cannot delegate (403 depth_exceeded, or delegation_not_permitted for a root), and a parent's live children never exceed the advertised max_children (429 fanout_exceeded).",
			r.delegationBounds),
	}
}

// delegationParent obtains a pass whose mission may be delegated from,
// with the scope it holds; it skips c when the approval granted no
// delegation rights.
func (r *runner) delegationParent(ctx context.Context, c *check) (*grant, string, pass.Scope) {
	u := r.needExtension(c, pass.ExtDelegation, "delegate")
	if u == "" {
		return nil, "", nil
	}
	g := r.missionGrant(ctx, c)
	if g == nil {
		return nil, "", nil
	}
	if r.cfg.KitService != nil && g.service == r.cfg.KitService.origins[0] {
		// Redeem (validate) the parent first, so its mission is active.
		r.validate(ctx, c, 0, g.value)
	}
	scope := pass.Scope{kitScope}
	if m := r.readMission(ctx, c, g); m != nil && len(m.AuthorityModel.Scope) > 0 && !m.AuthorityModel.Scope.HasWildcard() {
		scope = m.AuthorityModel.Scope[:1]
	}
	return g, u, scope
}

// childRequest builds a delegation request from g for a sub-agent holding
// k, whose key proof is signed by proofBy over binding ("" means the
// right one: the parent mission id and k's thumbprint).
func (r *runner) childRequest(g *grant, u, suffix string, k, proofBy *dpop.Key, binding string, scope pass.Scope) pass.DelegationRequest {
	childID := g.harnessID + "/" + suffix
	if binding == "" {
		binding = pass.ChildKeyBinding(g.pending.MissionID, k.Thumbprint())
	}
	taskID, desc := r.nextTask()
	att, _ := k.TaskAttestation(childID, taskID, desc, 0, time.Time{})
	proof, _ := proofBy.HarnessProof(dpop.ProofParams{HarnessID: childID, Audience: g.auth.cfg.Authority, Method: http.MethodPost, URL: u, AgentPass: binding, TTL: time.Minute})
	return pass.DelegationRequest{
		Parent: pass.DelegationParent{MissionID: g.pending.MissionID}, Type: g.typ,
		Harness: pass.HarnessInfo{ID: childID, Cnf: &pass.Cnf{JWK: k.PublicJSON()}},
		Task:    pass.Task{ID: taskID, Description: desc, Attestation: &pass.JWTContainer{JWT: att}},
		Scope:   scope, HarnessProof: pass.JWTContainer{JWT: proof},
	}
}

// delegate sends body with the parent's holder proof and, on success,
// returns the child as a grant that can delegate in turn.
func (r *runner) delegate(ctx context.Context, c *check, g *grant, u string, k *dpop.Key, body pass.DelegationRequest) (*answer, *grant) {
	a := r.missionPost(ctx, c, g, g.key, u, g.pending.MissionID, body)
	var st pass.IssuanceStatus
	if !a.ok() || pass.Decode(a.body, &st) != nil || st.Mission == nil {
		return a, nil
	}
	child := &grant{key: k, harnessID: body.Harness.ID, typ: g.typ, service: g.service, auth: g.auth, status: st,
		pending: Pending{Authority: g.pending.Authority, RequestID: st.ID, MissionID: st.Mission.ID, User: g.pending.User}}
	if st.AgentPass != nil {
		r.secrets.add(st.AgentPass.Value)
	}
	return a, child
}

// firstChild creates a well-formed child of g, skipping c when the parent
// may not delegate at all.
func (r *runner) firstChild(ctx context.Context, c *check, g *grant, u string, scope pass.Scope) *grant {
	k, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return nil
	}
	a, child := r.delegate(ctx, c, g, u, k, r.childRequest(g, u, "conf-first", k, k, "", scope))
	switch {
	case a.refused() && a.errorCode() == string(pass.CodeDelegationNotPermitted):
		c.skipf("the parent was approved without delegation rights (an Approver granting them lets this check run)")
		return nil
	case child == nil:
		c.failf("a well-formed child within the parent's scope was refused: %s", a)
		return nil
	}
	return child
}

func (r *runner) delegationFresh(ctx context.Context, c *check) {
	g, u, scope := r.delegationParent(ctx, c)
	if g == nil || r.firstChild(ctx, c, g, u, scope) == nil {
		return
	}
	keys := make([]*dpop.Key, 2)
	for i := range keys {
		var err error
		if keys[i], err = es256Key(); err != nil {
			c.failf("%v", err)
			return
		}
	}
	a, _ := r.delegate(ctx, c, g, u, keys[0], r.childRequest(g, u, "conf-byparent", keys[0], g.key, "", scope))
	c.expectCode(a, "a child key proof signed by the parent's key", 401, pass.CodeInvalidHarnessProof)
	a, _ = r.delegate(ctx, c, g, u, keys[1], r.childRequest(g, u, "conf-stale", keys[1], keys[1], g.pending.MissionID, scope))
	c.expectCode(a, "a child key proof with aph over the mission id alone", 401, pass.CodeInvalidHarnessProof)
	a, _ = r.delegate(ctx, c, g, u, g.key, r.childRequest(g, u, "conf-same", g.key, g.key, "", scope))
	c.expectCode(a, "a child holding its parent's key", 422, pass.CodeHolderKeyReused)
}

func (r *runner) delegationBounds(ctx context.Context, c *check) {
	g, u, scope := r.delegationParent(ctx, c)
	if g == nil {
		return
	}
	ext, _ := r.auth.cfg.Extensions.Get(pass.ExtDelegation)
	var maxDepth, maxChildren int
	ext.Member("max_depth", &maxDepth)
	ext.Member("max_children", &maxChildren)
	first := r.firstChild(ctx, c, g, u, scope)
	if first == nil {
		return
	}
	// Depth: delegate down until refused; never deeper than advertised.
	cur, depth := first, 1
	for ; ; depth++ {
		k, err := es256Key()
		if err != nil {
			c.failf("%v", err)
			return
		}
		a, next := r.delegate(ctx, c, cur, u, k, r.childRequest(cur, u, fmt.Sprintf("conf-d%d", depth), k, k, "", scope))
		if next == nil {
			c.expectCode(a, fmt.Sprintf("a child at depth %d delegating further", depth), 403, pass.CodeDepthExceeded)
			break
		}
		if maxDepth > 0 && depth >= maxDepth || depth > maxDelegationProbe {
			c.failf("delegated %d generations deep, beyond the advertised max_depth %d", depth+1, maxDepth)
			return
		}
		cur = next
	}
	if maxChildren < 1 || maxChildren > maxFanoutProbe {
		c.got("depth stopped at %d; fan-out not probed (max_children %d)", depth, maxChildren)
		return
	}
	// Fan-out: the first child is live; add siblings until refused.
	for n := 2; ; n++ {
		k, err := es256Key()
		if err != nil {
			c.failf("%v", err)
			return
		}
		a, child := r.delegate(ctx, c, g, u, k, r.childRequest(g, u, fmt.Sprintf("conf-f%d", n), k, k, "", scope))
		if child == nil {
			c.expectCode(a, fmt.Sprintf("live child number %d", n), 429, pass.CodeFanoutExceeded)
			c.got("depth stopped at %d, fan-out at %d live children", depth, n-1)
			return
		}
		if n > maxChildren {
			c.failf("%d live children, beyond the advertised max_children %d", n, maxChildren)
			return
		}
	}
}

// maxDelegationProbe bounds the depth the kit probes.
const maxDelegationProbe = 8
