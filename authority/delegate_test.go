package authority_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// approveDepth approves every request at once with all scopes and n
// generations of delegation.
func approveDepth(n int) func(*authority.Config) {
	return func(c *authority.Config) {
		c.Approver = authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: n})
	}
}

// subAgent is a sub-agent with its own key.
type subAgent struct {
	key *dpop.Key
	id  string
}

func (e *env) newSub(parentID, suffix string) *subAgent {
	e.t.Helper()
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		e.t.Fatal(err)
	}
	return &subAgent{key: k, id: parentID + "/" + suffix}
}

// delegation is the body the parent sends for c under mission pid: c's
// proof bound to pid and its key, and c's task attestation.
func (e *env) delegation(pid string, c *subAgent, scope ...string) pass.DelegationRequest {
	e.t.Helper()
	now := e.clock.Now()
	proof, err := c.key.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: authID, Method: http.MethodPost,
		URL: e.base + "/missions/delegate", AgentPass: pass.ChildKeyBinding(pid, c.key.Thumbprint()), Now: now})
	if err != nil {
		e.t.Fatal(err)
	}
	att, err := c.key.TaskAttestation(c.id, "task-"+c.id, "Reply to ticket 4411", 0, now)
	if err != nil {
		e.t.Fatal(err)
	}
	return pass.DelegationRequest{
		Parent: pass.DelegationParent{MissionID: pid}, Type: pass.BrowserSession,
		Harness: pass.HarnessInfo{ID: c.id, Cnf: &pass.Cnf{JWK: c.key.PublicJSON()}},
		Task:    pass.Task{ID: "task-" + c.id, Description: "Reply to ticket 4411", Attestation: &pass.JWTContainer{JWT: att}},
		Scope:   scope, Delegation: &pass.DelegationLimits{MaxDepth: 5},
		HarnessProof: pass.JWTContainer{JWT: proof},
	}
}

// delegate posts req with a holder proof by the parent's key (issuer iss).
func (e *env) delegate(key *dpop.Key, iss string, req pass.DelegationRequest) (response, *pass.IssuanceStatus) {
	e.t.Helper()
	r := e.postProof("/missions/delegate", req, e.missionProof(key, iss, "/missions/delegate", req.Parent.MissionID, 0))
	if r.status != http.StatusOK {
		return r, nil
	}
	var st pass.IssuanceStatus
	if err := pass.Decode(r.body, &st); err != nil {
		e.t.Fatalf("delegate body %s: %v", r.body, err)
	}
	return r, &st
}

func (e *env) mustDelegate(key *dpop.Key, iss string, req pass.DelegationRequest) *pass.IssuanceStatus {
	e.t.Helper()
	r, st := e.delegate(key, iss, req)
	if st == nil || st.Status != pass.StatusApproved || st.AgentPass == nil || st.Mission == nil {
		e.t.Fatalf("delegate: %d %s", r.status, r.body)
	}
	return st
}

// The configuration advertises the delegate endpoint and its caps.
func TestDelegationAdvertised(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authority.Config) { c.MaxDelegationDepth, c.MaxChildren = 2, 4 })
	r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil)
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	x, ok := cfg.Extensions.Get(pass.ExtDelegation)
	var depth, children int
	if !ok || x.Endpoints["delegate"] != e.base+"/missions/delegate" || !x.Member("max_depth", &depth) || depth != 2 ||
		!x.Member("max_children", &children) || children != 4 {
		t.Fatalf("delegation extension %+v (depth %d, children %d)", x, depth, children)
	}
	for _, bad := range []authority.Config{{MaxDelegationDepth: -1}, {MaxDelegationDepth: 16 + 1},
		{MaxChildren: 1000 + 1}, {ChildTTL: -time.Second}} {
		cfg := bad
		cfg.Identifier, cfg.TrustMode, cfg.Keys = authID, pass.TrustEnterprise, mustKeys(t)
		if _, err := authority.New(cfg); err == nil {
			t.Errorf("New accepted %+v", bad)
		}
	}
}

func mustKeys(t *testing.T) *dpop.KeySet {
	ks, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// D1: one round trip gives the child an approved pass bound to its key;
// it redeems, and validation names the parent and a two-level act chain.
func TestDelegateD1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(2))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c := e.newSub(harnessID, "sub-1")
	st := e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
	if st.Mission.Parent != root.Mission.ID || st.Mission.State != pass.MissionActive || st.AgentPass.Type != pass.BrowserSession {
		t.Fatalf("child status %+v", st.Mission)
	}
	// The child polls its status with its own key; the parent's key is
	// refused.
	parentProof, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: authID, Method: http.MethodGet,
		URL: e.auth.StatusURL(st.ID), AgentPass: st.ID, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := e.poll(st.ID, parentProof)
	wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)
	childProof, err := c.key.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: authID, Method: http.MethodGet,
		URL: e.auth.StatusURL(st.ID), AgentPass: st.ID, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	r, polled := e.poll(st.ID, childProof)
	if polled == nil || polled.AgentPass == nil {
		t.Fatalf("child poll: %d %s", r.status, r.body)
	}
	r, v := e.validate(e.svc, polled.AgentPass.Value)
	if v == nil {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	want := &pass.Actor{Sub: c.id, MissionID: st.Mission.ID, Act: &pass.Actor{Sub: harnessID, MissionID: root.Mission.ID}}
	if v.Agent.ID != c.id || v.Mission == nil || v.Mission.Parent != root.Mission.ID {
		t.Fatalf("validation %+v mission %+v", v, v.Mission)
	}
	if diff := cmp.Diff(want, v.Mission.Act); diff != "" {
		t.Errorf("act chain (-want +got):\n%s", diff)
	}
	if !v.Scope.Equal(pass.Scope{"tickets:read"}) {
		t.Errorf("child scope %v", v.Scope)
	}
	m, err := e.auth.Mission(ctx, st.Mission.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Approval == nil || m.Approval.Method != pass.ApprovalDelegation || m.Approval.Root == nil || *m.Approval.Root != root.Mission.ID ||
		m.Harness.Tier != string(dpop.TierUnverified) || m.Delegation.Depth != 1 || m.Delegation.MaxDepth != 1 {
		t.Errorf("child record approval %+v harness %+v delegation %+v", m.Approval, m.Harness, m.Delegation)
	}
}

// D2: a scope the parent lacks, "*", and an expiry beyond the parent's are
// refused with not_attenuated, and nothing is stored.
func TestDelegateD2NotAttenuated(t *testing.T) {
	t.Parallel()
	store := authority.NewMemoryStore()
	e := newEnv(t, approveDepth(1), func(c *authority.Config) { c.Store = store })
	e.svc.SetScopes("tickets:read")
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c := e.newSub(harnessID, "sub")
	for name, req := range map[string]pass.DelegationRequest{
		"scope the parent lacks": e.delegation(root.Mission.ID, c, "tickets:read", "tickets:write"),
		"wildcard":               e.delegation(root.Mission.ID, c, "*"),
		"expiry beyond the parent": func() pass.DelegationRequest {
			d := e.delegation(root.Mission.ID, c, "tickets:read")
			d.ExpiresIn = int64(((8 * time.Hour) + time.Minute) / time.Second)
			return d
		}(),
		"other pass type": func() pass.DelegationRequest {
			d := e.delegation(root.Mission.ID, c, "tickets:read")
			d.Type = pass.BearerToken
			return d
		}(),
	} {
		r, _ := e.delegate(h.key, harnessID, req)
		t.Run(name, func(t *testing.T) { wantError(t, r, http.StatusForbidden, pass.CodeNotAttenuated) })
	}
	kids, err := store.Missions(ctx, authority.MissionListOptions{Parent: root.Mission.ID})
	if err != nil || len(kids) != 0 {
		t.Fatalf("children stored: %d, %v", len(kids), err)
	}
	// Within bounds, an explicit expiry is kept.
	d := e.delegation(root.Mission.ID, c, "tickets:read")
	d.ExpiresIn = 600
	st := e.mustDelegate(h.key, harnessID, d)
	m, err := e.auth.Mission(ctx, st.Mission.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.clock.Now().Add(10 * time.Minute); m.ExpiresAt == nil || !m.ExpiresAt.Equal(want) {
		t.Errorf("child expires %v, want %v", m.ExpiresAt, want)
	}
}

// D3: depth is granted at the root's approval and shrinks per generation.
func TestDelegateD3Depth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(2))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c1, c2 := e.newSub(harnessID, "c1"), e.newSub(harnessID+"/c1", "c2")
	s1 := e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c1, "tickets:read"))
	s2 := e.mustDelegate(c1.key, c1.id, e.delegation(s1.Mission.ID, c2, "tickets:read"))
	for id, want := range map[string]int{s1.Mission.ID: 1, s2.Mission.ID: 0} {
		m, err := e.auth.Mission(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Delegation.MaxDepth != want || m.Approval.Root == nil || *m.Approval.Root != root.Mission.ID {
			t.Errorf("%s: delegation %+v root %v", id, m.Delegation, m.Approval.Root)
		}
	}
	c3 := e.newSub(c2.id, "c3")
	r, _ := e.delegate(c2.key, c2.id, e.delegation(s2.Mission.ID, c3, "tickets:read"))
	wantError(t, r, http.StatusForbidden, pass.CodeDepthExceeded)

	// A root approved without delegation rights.
	e2 := newEnv(t, approveAll)
	h2 := e2.newHarness()
	_, root2 := e2.approvedPass(h2)
	r, _ = e2.delegate(h2.key, harnessID, e2.delegation(root2.Mission.ID, e2.newSub(harnessID, "x"), "tickets:read"))
	wantError(t, r, http.StatusForbidden, pass.CodeDelegationNotPermitted)
}

// D4: the ninth live child is refused; once one completes, a retry
// succeeds.
func TestDelegateD4Fanout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(1))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	var first *subAgent
	var firstID string
	for i := range 8 {
		c := e.newSub(harnessID, "c"+string(rune('a'+i)))
		st := e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
		if i == 0 {
			first, firstID = c, st.Mission.ID
		}
	}
	last := e.newSub(harnessID, "last")
	r, _ := e.delegate(h.key, harnessID, e.delegation(root.Mission.ID, last, "tickets:read"))
	wantError(t, r, http.StatusTooManyRequests, pass.CodeFanoutExceeded)
	if r, m := e.complete(&harness{key: first.key, req: pass.IssuanceRequest{Harness: pass.HarnessInfo{ID: first.id}}}, firstID,
		pass.OutcomeSucceeded, "done"); m == nil || m.State != pass.MissionCompleted {
		t.Fatalf("complete child: %d %s", r.status, r.body)
	}
	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, last, "tickets:read"))
}

// D5: the child's key must be new, attested for the sub-task and proven.
func TestDelegateD5HolderKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(1))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	pid := root.Mission.ID

	reused := &subAgent{key: h.key, id: harnessID + "/same"}
	r, _ := e.delegate(h.key, harnessID, e.delegation(pid, reused, "tickets:read"))
	wantError(t, r, http.StatusUnprocessableEntity, pass.CodeHolderKeyReused)

	c := e.newSub(harnessID, "sub")
	noAtt := e.delegation(pid, c, "tickets:read")
	noAtt.Task.Attestation = nil
	r, _ = e.delegate(h.key, harnessID, noAtt)
	wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)

	other := e.newSub(harnessID, "sub")
	wrongAtt := e.delegation(pid, c, "tickets:read")
	wrongAtt.Task.Attestation = e.delegation(pid, other, "tickets:read").Task.Attestation
	r, _ = e.delegate(h.key, harnessID, wrongAtt)
	wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidTaskAttest)

	wrongProof := e.delegation(pid, c, "tickets:read")
	wrongProof.HarnessProof = e.delegation(pid, other, "tickets:read").HarnessProof
	r, _ = e.delegate(h.key, harnessID, wrongProof)
	wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidHarnessProof)

	// A proof by the child key, made for another parent, does not carry
	// over (aph binds the parent mission id and the key).
	otherParent := e.delegation("msn_other", c, "tickets:read")
	moved := e.delegation(pid, c, "tickets:read")
	moved.HarnessProof = otherParent.HarnessProof
	r, _ = e.delegate(h.key, harnessID, moved)
	wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidHarnessProof)

	notUnder := e.delegation(pid, &subAgent{key: c.key, id: "someone-else/sub"}, "tickets:read")
	r, _ = e.delegate(h.key, harnessID, notUnder)
	wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)
}

// D6: without the parent's proof nothing happens; the child's key does
// not speak for its parent.
func TestDelegateD6Authentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(2))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c := e.newSub(harnessID, "c1")
	r := e.postProof("/missions/delegate", e.delegation(root.Mission.ID, c, "tickets:read"), "")
	wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)

	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
	r, _ = e.delegate(c.key, c.id, e.delegation(root.Mission.ID, e.newSub(harnessID, "c2"), "tickets:read"))
	wantError(t, r, http.StatusNotFound, pass.CodeMissionUnknown)
}

// D7: revoking the root of a three-level tree ends every descendant: the
// grandchild's authorization check answers 404, and no further child can
// be created.
func TestDelegateD7Cascade(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(2))
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c1, c2 := e.newSub(harnessID, "c1"), e.newSub(harnessID+"/c1", "c2")
	s1 := e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c1, "tickets:read"))
	s2 := e.mustDelegate(c1.key, c1.id, e.delegation(s1.Mission.ID, c2, "tickets:read"))
	r, v := e.validate(e.svc, s2.AgentPass.Value)
	if v == nil {
		t.Fatalf("validate grandchild: %d %s", r.status, r.body)
	}
	if v.Mission == nil || v.Mission.Act == nil || v.Mission.Act.Act == nil || v.Mission.Act.Act.Act == nil ||
		v.Mission.Act.Sub != c2.id || v.Mission.Act.Act.Sub != c1.id || v.Mission.Act.Act.Act.Sub != harnessID {
		t.Fatalf("grandchild act chain %+v", v.Mission)
	}
	if r, ok := e.check(e.svc, v.AuthorizationID); ok == nil {
		t.Fatalf("check before revoke: %d %s", r.status, r.body)
	}
	if _, err := e.auth.Revoke(ctx, root.Mission.ID, "human:lee", "test"); err != nil {
		t.Fatal(err)
	}
	r, _ = e.check(e.svc, v.AuthorizationID)
	if r.status != http.StatusNotFound {
		t.Fatalf("check after the root was revoked: %d %s", r.status, r.body)
	}
	for _, id := range []string{s1.Mission.ID, s2.Mission.ID} {
		m, err := e.auth.Mission(ctx, id)
		if err != nil || m.State != pass.MissionRevoked {
			t.Errorf("%s after revoke: %v %v", id, m.State, err)
		}
	}
	r, _ = e.delegate(c1.key, c1.id, e.delegation(s1.Mission.ID, e.newSub(c1.id, "late"), "tickets:read"))
	wantError(t, r, http.StatusConflict, pass.CodeMissionNotActive)
}

// BenchmarkDelegate measures one delegation round trip over loopback TLS
// with the memory store: the parent's proof, the child's proof and task
// attestation verified, the child stored and its pass minted.
func BenchmarkDelegate(b *testing.B) {
	e := newEnv(b, approveDepth(1), func(c *authority.Config) { c.MaxChildren = 1000 })
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c := e.newSub(harnessID, "bench")
	var done []string
	for b.Loop() {
		b.StopTimer()
		// A second a spawn keeps within the root's creation rate.
		e.clock.Advance(time.Second)
		req := e.delegation(root.Mission.ID, c, "tickets:read")
		proof := e.missionProof(h.key, harnessID, "/missions/delegate", root.Mission.ID, 0)
		b.StartTimer()
		r := e.postProof("/missions/delegate", req, proof)
		if r.status != http.StatusOK {
			b.Fatalf("delegate: %d %s", r.status, r.body)
		}
		b.StopTimer()
		var st pass.IssuanceStatus
		if err := pass.Decode(r.body, &st); err != nil {
			b.Fatal(err)
		}
		done = append(done, st.Mission.ID)
		if len(done) == 1000 {
			// Free the slots: the parent may hold only so many.
			for _, id := range done {
				if _, err := e.auth.Revoke(ctx, id, "system", "bench"); err != nil {
					b.Fatal(err)
				}
			}
			done = done[:0]
		}
		b.StartTimer()
	}
}

// A1: a parent granted "*" delegates only scopes its Service listed.
func TestDelegateWildcardParent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authority.Config) {
		c.ScopeWildcardAllowed = true
		c.Approver = authority.Rules(authority.Rule{Name: "all", Outcome: authority.Approve, MaxDepth: 1,
			Grant: func(pass.Scope) pass.Scope { return pass.Scope{"*"} }})
	})
	h := e.newHarness()
	_, root := e.approvedPass(h)
	if m, err := e.auth.Mission(ctx, root.Mission.ID); err != nil || !m.AuthorityModel.Scope.HasWildcard() {
		t.Fatalf("root not granted '*': %v %v", m, err)
	}
	c := e.newSub(harnessID, "sub")
	r, _ := e.delegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "billing:read"))
	wantError(t, r, http.StatusForbidden, pass.CodeNotAttenuated)
	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:write"))
}

// D9 (A2): narrowing a parent narrows its child's next check at once, and
// the grandchild's too.
func TestDelegateD9DynamicAttenuation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(2))
	e.svc.SetScopes("tickets:read", "tickets:comment")
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c1, c2 := e.newSub(harnessID, "c1"), e.newSub(harnessID+"/c1", "c2")
	s1 := e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c1, "tickets:read", "tickets:comment"))
	s2 := e.mustDelegate(c1.key, c1.id, e.delegation(s1.Mission.ID, c2, "tickets:comment"))
	var ids []string
	for _, s := range []*pass.IssuanceStatus{s1, s2} {
		r, v := e.validate(e.svc, s.AgentPass.Value)
		if v == nil {
			t.Fatalf("validate: %d %s", r.status, r.body)
		}
		ids = append(ids, v.AuthorizationID)
	}
	if r, c := e.check(e.svc, ids[0]); c == nil || !c.Scope.Equal(pass.Scope{"tickets:read", "tickets:comment"}) {
		t.Fatalf("child check before narrowing: %d %s", r.status, r.body)
	}
	if _, err := e.auth.NarrowScope(ctx, root.Mission.ID, "human:lee", pass.Scope{"tickets:read"}); err != nil {
		t.Fatal(err)
	}
	if r, c := e.check(e.svc, ids[0]); c == nil || !c.Scope.Equal(pass.Scope{"tickets:read"}) {
		t.Errorf("child check after narrowing: %d %s", r.status, r.body)
	}
	if r, c := e.check(e.svc, ids[1]); c == nil || len(c.Scope) != 0 {
		t.Errorf("grandchild check after narrowing: %d %s", r.status, r.body)
	}
}

// D10 (A10): a policy that routes write children to a person leaves the
// child pending; the child's own key polls it, and a person's approval is
// recorded as human, bounded by the parent.
func TestDelegateD10PolicyPending(t *testing.T) {
	t.Parallel()
	var asked []string
	e := newEnv(t, approveDepth(1), func(c *authority.Config) {
		c.DelegationPolicy = func(_ context.Context, parent, child *authority.Request) bool {
			asked = append(asked, parent.MissionID)
			return !child.Decision.Scope.Has("tickets:write")
		}
	})
	e.svc.SetScopes("tickets:read", "tickets:write")
	h := e.newHarness()
	_, root := e.approvedPass(h)
	// Within policy: approved at once.
	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, e.newSub(harnessID, "reader"), "tickets:read"))
	c := e.newSub(harnessID, "writer")
	req := e.delegation(root.Mission.ID, c, "tickets:write")
	r := e.postProof("/missions/delegate", req, e.missionProof(h.key, harnessID, "/missions/delegate", root.Mission.ID, 0))
	var st pass.IssuanceStatus
	if r.status != http.StatusAccepted || pass.Decode(r.body, &st) != nil || st.Status != pass.StatusPending || st.AgentPass != nil ||
		st.PollAfterMS == nil || st.Mission == nil || st.Mission.Parent != root.Mission.ID {
		t.Fatalf("delegate outside policy: %d %s", r.status, r.body)
	}
	if len(asked) != 2 || asked[0] != root.Mission.ID {
		t.Errorf("policy asked %v", asked)
	}
	childPoll := func() *pass.IssuanceStatus {
		t.Helper()
		proof, err := c.key.HarnessProof(dpop.ProofParams{HarnessID: c.id, Audience: authID, Method: http.MethodGet,
			URL: e.auth.StatusURL(st.ID), AgentPass: st.ID, Now: e.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		r, polled := e.poll(st.ID, proof)
		if polled == nil {
			t.Fatalf("child poll: %d %s", r.status, r.body)
		}
		return polled
	}
	if p := childPoll(); p.Status != pass.StatusPending {
		t.Fatalf("child poll before the decision: %+v", p)
	}
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve, DecidedBy: "human:lee", MaxDepth: 3}); err != nil {
		t.Fatal(err)
	}
	p := childPoll()
	if p.Status != pass.StatusApproved || p.AgentPass == nil {
		t.Fatalf("child poll after approval: %+v", p)
	}
	r, v := e.validate(e.svc, p.AgentPass.Value)
	if v == nil || !v.Scope.Equal(pass.Scope{"tickets:write"}) || v.Mission == nil || v.Mission.Parent != root.Mission.ID {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	m, err := e.auth.Mission(ctx, st.Mission.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The root may delegate one generation: its child may not delegate.
	if m.Approval == nil || m.Approval.Method != pass.ApprovalHuman || m.Delegation == nil || m.Delegation.MaxDepth != 0 {
		t.Errorf("child approval %+v delegation %+v", m.Approval, m.Delegation)
	}
}

// A5: a root's tree may create at most MaxSpawnsPerMinute children a
// minute, whatever its slots; the budget refills with time and is the
// root's own.
func TestDelegateSpawnRate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveDepth(1), func(c *authority.Config) { c.MaxChildren = 1000 })
	h := e.newHarness()
	_, root := e.approvedPass(h)
	c := e.newSub(harnessID, "c")
	for range 60 {
		e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
	}
	r, _ := e.delegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
	wantError(t, r, http.StatusTooManyRequests, pass.CodeFanoutExceeded)
	// Another root has its own budget.
	h2 := e.newHarness()
	_, root2 := e.approvedPass(h2)
	e.mustDelegate(h2.key, harnessID, e.delegation(root2.Mission.ID, e.newSub(harnessID, "other"), "tickets:read"))
	e.clock.Advance(time.Second)
	e.mustDelegate(h.key, harnessID, e.delegation(root.Mission.ID, c, "tickets:read"))
}
