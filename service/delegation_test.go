package service_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// delegNet is a Service with a real Enterprise Authority for deleg.test
// whose approvals allow two generations of sub-agents.
type delegNet struct {
	*env
	ent *authority.Authority
}

const delegUser = "alex@deleg.test"

func newDelegNet(t *testing.T) *delegNet {
	t.Helper()
	e := newNet(t)
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	ent, err := authority.New(authority.Config{
		Identifier: "https://idp.deleg.test", TrustMode: pass.TrustEnterprise, Keys: keys,
		Approver:  authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: 2}),
		Discovery: e.authorityDiscovery(), HTTPClient: e.client, InsecureAllowPrivateNetworks: true, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.net.Serve("idp.deleg.test", ent)
	e.net.PublishEnterprise("deleg.test", ent.ConfigurationURL())
	e.start(func(c *service.Config) {
		c.UserScopes = func(context.Context, string) ([]string, error) { return []string{"tickets:read", "tickets:write"}, nil }
	})
	return &delegNet{env: e, ent: ent}
}

// agent is a redeemed delegation: its holder, token, authorization and
// mission.
type agent struct {
	h                   *harness
	token, authz, msnID string
}

// root acquires and redeems a pass of its own for a new Harness.
func (n *delegNet) root(t *testing.T) *agent {
	t.Helper()
	h := newHarness(t)
	value := n.acquire(t, n.ent, h, pass.BearerToken, delegUser, "")
	return n.redeemAgent(t, h, value)
}

func (n *delegNet) redeemAgent(t *testing.T, h *harness, value string) *agent {
	t.Helper()
	r := n.redeemReal(t, n.ent, h, pass.BearerToken, delegUser, value)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	a := &agent{h: h, token: resp.BearerToken}
	var st *service.DelegationRecord
	for _, d := range n.delegations(t) {
		if d.Agent == h.id {
			st = d
		}
	}
	if st == nil {
		t.Fatalf("no delegation stored for %s", h.id)
	}
	a.authz, a.msnID = st.AuthorizationID, st.MissionID
	return a
}

// delegations lists what the Service holds, through the Authority's list
// of authorizations.
func (n *delegNet) delegations(t *testing.T) []*service.DelegationRecord {
	t.Helper()
	auths, err := n.ent.Authorizations(t.Context(), authority.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*service.DelegationRecord
	for _, az := range auths {
		if d, err := n.store.Delegation(t.Context(), az.ID); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// spawn has parent delegate scope to a new sub-agent with its own key
// (suffix of the parent's harness id), which then redeems its pass here.
func (n *delegNet) spawn(t *testing.T, parent *agent, suffix string, scope ...string) *agent {
	t.Helper()
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	c := &harness{id: parent.h.id + "/" + suffix, key: k}
	x, _ := n.ent.Configuration().Extensions.Get(pass.ExtDelegation)
	url, now, aud := x.Endpoints["delegate"], n.clock.Now(), n.ent.Identifier()
	childProof, err := k.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: aud, Method: http.MethodPost, URL: url,
		AgentPass: pass.ChildKeyBinding(parent.msnID, k.Thumbprint()), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	att, err := k.TaskAttestation(c.id, "task-"+suffix, "Read ticket 4411", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	parentProof, err := parent.h.key.HarnessProof(dpop.ProofParams{HarnessID: parent.h.id, Audience: aud, Method: http.MethodPost,
		URL: url, AgentPass: parent.msnID, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	req := pass.DelegationRequest{
		Parent: pass.DelegationParent{MissionID: parent.msnID}, Type: pass.BearerToken,
		Harness:      pass.HarnessInfo{ID: c.id, Cnf: c.cnf()},
		Task:         pass.Task{ID: "task-" + suffix, Description: "Read ticket 4411", Attestation: &pass.JWTContainer{JWT: att}},
		Scope:        scope,
		Delegation:   &pass.DelegationLimits{MaxDepth: 1},
		HarnessProof: pass.JWTContainer{JWT: childProof},
	}
	var st pass.IssuanceStatus
	if _, err := httpx.Do(t.Context(), n.client, httpx.Call{URL: url, Body: req, Header: http.Header{pass.ProofHeader: {parentProof}}}, &st); err != nil {
		t.Fatalf("delegate: %v", err)
	}
	if st.Status != pass.StatusApproved || st.AgentPass == nil {
		t.Fatalf("delegate: %+v", st)
	}
	value := st.AgentPass.Value
	if value == "" { // the child reads its pass with its own key
		statusURL := n.ent.StatusURL(st.ID)
		p, err := k.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: aud, Method: http.MethodGet, URL: statusURL, AgentPass: st.ID, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := httpx.Do(t.Context(), n.client, httpx.Call{URL: statusURL, Header: http.Header{pass.ProofHeader: {p}}}, &st); err != nil || st.AgentPass == nil {
			t.Fatalf("child status: %+v %v", st, err)
		}
		value = st.AgentPass.Value
	}
	return n.redeemAgent(t, c, value)
}

// whoami calls the API with a's token and returns the delegation the
// handler saw (DelegationFrom), or the refusal.
func (n *delegNet) whoami(t *testing.T, a *agent) (*response, []pass.Actor) {
	t.Helper()
	r := n.get("/api/tickets", bearer(a.token))
	if r.status != http.StatusOK {
		return r, nil
	}
	var body struct {
		Agent string
		Chain []pass.Actor
	}
	r.decode(t, &body)
	if body.Agent != a.h.id {
		t.Fatalf("handler saw agent %q, want %q", body.Agent, a.h.id)
	}
	return r, body.Chain
}

func (n *delegNet) wantInvalidated(t *testing.T, a *agent, reason string) {
	t.Helper()
	d, err := n.store.Delegation(t.Context(), a.authz)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Invalidated || d.InvalidReason != reason {
		t.Fatalf("%s: invalidated=%v %q, want %q", a.h.id, d.Invalidated, d.InvalidReason, reason)
	}
}

// D1 at the Service: a sub-agent's redemption keeps the delegation chain
// the Authority validated (outermost first, with missions) and its
// ancestors; handlers see it through DelegationFrom; a root's chain is
// empty. A grandchild's chain has three actors.
func TestDelegationChainD1(t *testing.T) {
	n := newDelegNet(t)
	root := n.root(t)
	child := n.spawn(t, root, "reader", "tickets:read")
	grand := n.spawn(t, child, "helper", "tickets:read")

	if _, chain := n.whoami(t, root); len(chain) != 0 {
		t.Errorf("root chain %+v, want none", chain)
	}
	r, chain := n.whoami(t, child)
	if r.status != http.StatusOK {
		t.Fatalf("child call: %d %s", r.status, r.body)
	}
	want := []pass.Actor{{Sub: child.h.id, MissionID: child.msnID}, {Sub: root.h.id, MissionID: root.msnID}}
	if diff := cmp.Diff(want, chain); diff != "" {
		t.Errorf("child chain (-want +got):\n%s", diff)
	}
	_, chain = n.whoami(t, grand)
	want = append([]pass.Actor{{Sub: grand.h.id, MissionID: grand.msnID}}, want...)
	if diff := cmp.Diff(want, chain); diff != "" {
		t.Errorf("grandchild chain (-want +got):\n%s", diff)
	}
	d, err := n.store.Delegation(t.Context(), grand.authz)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{child.msnID, root.msnID}, d.Ancestors); diff != "" {
		t.Errorf("grandchild ancestors (-want +got):\n%s", diff)
	}
	recs := n.logs.records("agentpass redemption")
	if last := recs[len(recs)-1]; last["parent_mission_id"] != child.msnID {
		t.Errorf("redemption audit parent_mission_id = %v, want %s", last["parent_mission_id"], child.msnID)
	}
}

// D7 at the Service: the parent is revoked at the Authority. A Service
// holding only the child refuses it at its next check (the Authority's
// cascade); a Service holding both ends the child as soon as it learns
// of the parent (the local cascade), without asking about the child.
func TestDelegationParentRevokedD7(t *testing.T) {
	n := newDelegNet(t)
	root := n.root(t)
	child := n.spawn(t, root, "reader", "tickets:read")
	grand := n.spawn(t, child, "helper", "tickets:read")
	other := n.spawn(t, n.root(t), "reader", "tickets:read") // another tree

	if _, err := n.ent.Revoke(t.Context(), root.msnID, "admin@deleg.test", "laptop lost"); err != nil {
		t.Fatal(err)
	}
	n.clock.Advance((30 * time.Second) + time.Second)
	// The parent's check answers 404: the parent, its child and grandchild
	// end in one store operation.
	if r, _ := n.whoami(t, root); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Fatalf("root after revoke: %d %s", r.status, r.body)
	}
	n.wantInvalidated(t, root, "authorization check: not found")
	n.wantInvalidated(t, child, "cascade: authorization check: not found")
	n.wantInvalidated(t, grand, "cascade: authorization check: not found")
	for _, a := range []*agent{child, grand} {
		if r, _ := n.whoami(t, a); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
			t.Errorf("%s after its ancestor was revoked: %d %s", a.h.id, r.status, r.body)
		}
	}
	if r, _ := n.whoami(t, other); r.status != http.StatusOK {
		t.Errorf("an unrelated sub-agent was refused: %d %s", r.status, r.body)
	}
	recs := n.logs.records("agentpass authorization check")
	if !hasOutcome(recs, "cascade") {
		t.Errorf("no cascade audit record in %v", recs)
	}

	// Holding only the child: its own check sees the Authority's cascade.
	n2 := newDelegNet(t)
	root2 := n2.root(t)
	child2 := n2.spawn(t, root2, "reader", "tickets:read")
	if _, err := n2.ent.Revoke(t.Context(), root2.msnID, "admin@deleg.test", "laptop lost"); err != nil {
		t.Fatal(err)
	}
	n2.clock.Advance((30 * time.Second) + time.Second)
	if r, _ := n2.whoami(t, child2); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Fatalf("child after its parent was revoked at the Authority: %d %s", r.status, r.body)
	}
	n2.wantInvalidated(t, child2, "authorization check: not found")
}

// An operator revoke at the Service (Close) ends the sub-agents' delegations
// it holds at once, before any check, and closing a child leaves its
// parent alone.
func TestDelegationCloseCascades(t *testing.T) {
	n := newDelegNet(t)
	root := n.root(t)
	c1 := n.spawn(t, root, "reader", "tickets:read")
	c2 := n.spawn(t, root, "writer", "tickets:write", "tickets:read")
	if err := n.svc.CloseAuthorization(t.Context(), c2.authz, pass.CloseRevoke, "done"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []*agent{root, c1} {
		if r, _ := n.whoami(t, a); r.status != http.StatusOK {
			t.Fatalf("%s after a sibling was closed: %d %s", a.h.id, r.status, r.body)
		}
	}
	if err := n.svc.CloseAuthorization(t.Context(), root.authz, pass.CloseRevoke, "operator"); err != nil {
		t.Fatal(err)
	}
	n.wantInvalidated(t, c1, "cascade: closed by the Service: revoke")
	if r, _ := n.whoami(t, c1); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Errorf("child after its parent was closed: %d %s", r.status, r.body)
	}
}

// A validation answer whose chain does not begin with the validated agent
// and its mission, or that names a parent without one, cannot be
// attributed: the redemption is refused (fail closed). A consistent chain
// from the fake Authority is kept.
func TestDelegationChainInconsistent(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	const self, parent = "msn_self", "msn_parent"
	agentID := validation(corpUser, pass.BearerToken).Agent.ID
	for _, tc := range []struct {
		name string
		m    *pass.MissionInfo
		ok   bool
	}{
		{"consistent", &pass.MissionInfo{Parent: parent, Act: &pass.Actor{Sub: agentID, MissionID: self, Act: &pass.Actor{Sub: "orchestrator", MissionID: parent}}}, true},
		{"parent without act", &pass.MissionInfo{Parent: parent}, true},
		{"another current actor", &pass.MissionInfo{Parent: parent, Act: &pass.Actor{Sub: "someone-else", Act: &pass.Actor{Sub: "orchestrator"}}}, false},
		{"another current mission", &pass.MissionInfo{Parent: parent, Act: &pass.Actor{Sub: agentID, MissionID: "msn_other", Act: &pass.Actor{Sub: "orchestrator"}}}, false},
		{"act without parent", &pass.MissionInfo{Act: &pass.Actor{Sub: agentID, Act: &pass.Actor{Sub: "orchestrator"}}}, false},
		{"one actor", &pass.MissionInfo{Parent: parent, Act: &pass.Actor{Sub: agentID}}, false},
		{"cycle", &pass.MissionInfo{Parent: parent, Act: &pass.Actor{Sub: agentID, Act: &pass.Actor{Sub: "o", MissionID: parent,
			Act: &pass.Actor{Sub: "r", MissionID: self}}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			m.ID, m.State, m.Version = self, pass.MissionActive, 1
			vr := validation(corpUser, pass.BearerToken)
			vr.AuthorizationID = "authz-" + randomID()
			vr.Mission = m
			r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
			if !tc.ok {
				if r.status == http.StatusOK || r.errorCode() != pass.CodeAgentPassInvalid {
					t.Fatalf("redeem: %d %s, want agentpass_invalid", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("redeem: %d %s", r.status, r.body)
			}
			d, err := e.store.Delegation(t.Context(), vr.AuthorizationID)
			if err != nil {
				t.Fatal(err)
			}
			if d.Ancestors[0] != parent || (m.Act != nil) != (len(d.Chain) == 2) {
				t.Errorf("stored chain %+v ancestors %v", d.Chain, d.Ancestors)
			}
		})
	}
}
