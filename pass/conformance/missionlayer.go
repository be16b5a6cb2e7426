package conformance

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// The checks of the mission layer's record, compilation and stages. Each
// runs only where the target advertises the extension, so a plain v0.1
// party only ever sees them skip.

func (r *runner) missionLayerChecks() []def {
	ext := func(group, id, name, expected string, fn func(context.Context, *check)) def {
		return def{role: roleExtension, group: group, id: id, name: name, level: Choice, expected: expected, fn: fn}
	}
	return []def{
		ext("mission", "ext:mission", "a mission is completed with its holder proof, once, and its authorization then checks as a plain 404",
			"Mission extension: POST {mission_complete} needs an AgentPass-Proof by the holder key; it answers the record in state completed, completing again answers the same version, and the authorization check then answers 404 without the mission member (that body is for a suspended mission only).",
			r.missionComplete),
		ext("mission", "ext:mission", "a suspended mission checks as 404 naming the suspension, and as 200 once resumed",
			`Mission extension: to a Service advertising it, the authorization check of a suspended mission answers 404 {"error":{"code":"mission_suspended"},"mission":{"id","state":"suspended","version"}}, so the Service holds the delegation instead of dropping it; after a resume it answers 200 again.`,
			r.missionSuspended),
		ext("mission", "ext:mission", "the record and reports take only the redeeming Service's assertion",
			"Mission extension: POST {mission} with authorization_id and POST {mission_report} need a Service assertion (else 401), and answer only the Service that redeemed the authorization (another gets 404).",
			r.missionReport),
		ext("compile", "ext:compile", "a proposal is shown only to the holder, and only about requested scopes",
			"Compile extension: a pending status carries the proposal only for a poller proving the holder key (AgentPass-Proof), and the proposal (scope, rationale, excluded, diff) names only scopes the Harness requested, so the status is no oracle on the user's entitlements.",
			r.compileProposal),
		ext("compile", "ext:compile", `"*" is handled as the advertised wildcard policy says`,
			`Compile extension: "wildcard" is replace, refuse or human. refuse: 403 scope_wildcard_refused; human: the request waits for a person; replace: the proposal replaces "*". No policy grants "*" itself without a person.`,
			r.compileWildcard),
		ext("stages", "ext:stages", "Authority: a mission moves forward one stage at a time and back at once",
			"Stages extension: POST {mission_stage} with a holder proof moves to the next stage (200, or 202 while a gate waits) and back to an earlier one at once (200); a skipped stage is 409 stage_not_next, an unknown one 422 stage_unknown, an old expected_version 409 stale_version, no proof 401.",
			r.stageMoves),
		ext("stages", "ext:stages", "Service: a scope of a later stage is refused as stage_scope_exceeded, naming the stage",
			"Stages extension: a Service advertising stages keeps the ceiling and lets through only the current stage's scope; a request needing a later stage's scope gets 403 stage_scope_exceeded whose body names the current stage (mission.stage).",
			r.stageGate),
	}
}

// missionPost posts body to the mission endpoint u with a holder proof by
// k over missionID; k nil sends no proof. It is never resent: the proof is
// single-use, and a 429 may be the answer a check expects.
func (r *runner) missionPost(ctx context.Context, c *check, g *grant, k *dpop.Key, u, missionID string, body any) *answer {
	var hdr http.Header
	if k != nil {
		hdr = http.Header{pass.ProofHeader: {missionProof(k, g.harnessID, g.auth.cfg.Authority, u, missionID)}}
	}
	return r.sendOnce(ctx, c, http.MethodPost, u, hdr, body)
}

// readMission reads g's mission as its Harness, or returns nil.
func (r *runner) readMission(ctx context.Context, c *check, g *grant) *pass.MissionRecord {
	u := g.auth.cfg.Extensions.Endpoint(pass.ExtMission, "mission")
	if u == "" || g.pending.MissionID == "" {
		return nil
	}
	a := r.missionPost(ctx, c, g, g.key, u, g.pending.MissionID, pass.MissionReadRequest{MissionID: g.pending.MissionID})
	var m pass.MissionResponse
	if !a.ok() || pass.Decode(a.body, &m) != nil {
		return nil
	}
	return &m.Mission
}

// abandon ends a request the kit left pending, when the Authority lets a
// Harness do so, so that no person is asked about it later.
func (r *runner) abandon(ctx context.Context, c *check, g *grant) {
	u := g.auth.cfg.Extensions.Endpoint(pass.ExtMission, "mission_complete")
	if u == "" || g.pending.MissionID == "" {
		return
	}
	r.missionPost(ctx, c, g, g.key, u, g.pending.MissionID, pass.MissionCompleteRequest{
		MissionID: g.pending.MissionID, Outcome: pass.OutcomeAbandoned, Reason: "conformance run: no longer needed"})
}

// kitRedeemed obtains a pass for the kit's Service, has the kit's Service
// validate it, and returns the grant and its authorization id.
func (r *runner) kitRedeemed(ctx context.Context, c *check) (*grant, string) {
	if !r.needKit(c) {
		return nil, ""
	}
	g := r.kitPass(ctx, c, 0)
	if g == nil {
		return nil, ""
	}
	if g.pending.MissionID == "" {
		c.failf("the Authority advertises missions but its status answer names none")
		return nil, ""
	}
	var v pass.ValidationResponse
	if a := r.validate(ctx, c, 0, g.value); !a.ok() || pass.Decode(a.body, &v) != nil {
		c.skipf("the kit's Service could not validate its pass: %s", a)
		return nil, ""
	}
	return g, v.AuthorizationID
}

// expectCode is expectRefusal that also wants the error code code.
func (c *check) expectCode(a *answer, what string, status int, code pass.Code) {
	c.expectRefusal(a, what, status)
	if got := a.errorCode(); a.refused() && got != string(code) {
		c.failf("%s: refused with %q, want %s", what, got, code)
	}
}

func (r *runner) missionComplete(ctx context.Context, c *check) {
	u := r.needExtension(c, pass.ExtMission, "mission_complete")
	if u == "" {
		return
	}
	g, authz := r.kitRedeemed(ctx, c)
	if g == nil {
		return
	}
	id := g.pending.MissionID
	body := pass.MissionCompleteRequest{MissionID: id, Outcome: pass.OutcomeSucceeded, Reason: "conformance run"}
	c.expectRefusal(r.missionPost(ctx, c, g, nil, u, id, body), "complete without a proof")
	other, err := es256Key()
	if err != nil {
		c.failf("%v", err)
		return
	}
	c.expectRefusal(r.missionPost(ctx, c, g, other, u, id, body), "complete with a proof by another key")
	var first, second pass.MissionResponse
	a := r.missionPost(ctx, c, g, g.key, u, id, body)
	if !a.ok() || pass.Decode(a.body, &first) != nil {
		c.failf("complete with the holder proof: %s", a)
		return
	}
	if first.Mission.State != pass.MissionCompleted {
		c.failf("after complete the mission is %q", first.Mission.State)
	}
	b := r.missionPost(ctx, c, g, g.key, u, id, body)
	if !b.ok() || pass.Decode(b.body, &second) != nil || second.Mission.Version != first.Mission.Version || second.Mission.State != pass.MissionCompleted {
		c.failf("completing again is not an idempotent success with version %d: %s", first.Mission.Version, b)
	}
	chk := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.AuthorizationCheck, bearer(r.assertionFor(0)), pass.AuthorizationCheckRequest{AuthorizationID: authz})
	var doc map[string]any
	switch {
	case chk.status != http.StatusNotFound:
		c.failf("the authorization check of a completed mission answered %s, want 404", chk)
	case chk.json(&doc) == nil && doc["mission"] != nil:
		c.failf("the 404 of a completed mission carries the mission member, which only a suspended mission's does")
	}
}

func (r *runner) missionReport(ctx context.Context, c *check) {
	u := r.needExtension(c, pass.ExtMission, "mission_report")
	if u == "" {
		return
	}
	read := r.auth.cfg.Extensions.Endpoint(pass.ExtMission, "mission")
	g, authz := r.kitRedeemed(ctx, c)
	if g == nil {
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	report := pass.MissionReportRequest{AuthorizationID: authz, Observations: []pass.Observation{
		{Kind: pass.ObservationScopeDenied, Scope: "conformance:write", Count: 1, FirstAt: now, LastAt: now}}}
	byID := pass.MissionReadRequest{AuthorizationID: authz}
	c.expectRefusal(c.send(ctx, http.MethodPost, u, nil, report), "report without a Service assertion", 401)
	if read != "" {
		c.expectRefusal(c.send(ctx, http.MethodPost, read, nil, byID), "read by authorization_id without a Service assertion", 401)
	}
	if len(r.cfg.KitService.origins) > 1 {
		c.expectRefusal(c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(1)), report), "report by a Service that did not redeem", 404)
		if read != "" {
			c.expectRefusal(c.send(ctx, http.MethodPost, read, bearer(r.assertionFor(1)), byID), "read by a Service that did not redeem", 404)
		}
	}
	if a := c.send(ctx, http.MethodPost, u, bearer(r.assertionFor(0)), report); !a.ok() {
		c.failf("the redeeming Service's report was refused: %s", a)
	}
	if read != "" {
		var m pass.MissionResponse
		if a := c.send(ctx, http.MethodPost, read, bearer(r.assertionFor(0)), byID); !a.ok() || pass.Decode(a.body, &m) != nil {
			c.failf("the redeeming Service could not read the record: %s", a)
		} else if m.Mission.ID != g.pending.MissionID {
			c.failf("the Service read mission %q, not %q", m.Mission.ID, g.pending.MissionID)
		}
	}
}

// statusRead reads the status of g with the proof header hdr and decodes
// it.
func (r *runner) statusRead(ctx context.Context, c *check, g *grant, hdr http.Header) (*answer, *pass.IssuanceStatus) {
	a := c.send(ctx, http.MethodGet, g.statusURL, hdr, nil)
	var st pass.IssuanceStatus
	if !a.ok() || pass.Decode(a.body, &st) != nil {
		return a, nil
	}
	return a, &st
}

func (r *runner) compileProposal(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	if !r.auth.cfg.Extensions.Has(pass.ExtCompile) {
		c.skipf("the Authority does not advertise %s (plain v0.1 is fine)", pass.ExtCompile)
		return
	}
	key, req, err := r.issuanceRequest(pass.BearerToken, r.cfg.KitService.origins[0])
	if err != nil {
		c.failf("%v", err)
		return
	}
	// Two of the kit's three scopes: the third, offered but not
	// requested, must never appear.
	req.Scope = pass.Scope{kitScope, kitScopeSearch}
	a := c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Issuance, nil, req)
	g := &grant{key: key, harnessID: r.cfg.HarnessID, typ: req.Type, auth: r.auth, req: req}
	if a.refused() {
		c.skipf("the Authority refused the request (%s), so no proposal could be seen", a.errorCode())
		return
	}
	if !a.ok() || pass.Decode(a.body, &g.status) != nil {
		c.failf("issuance with a requested scope: %s", a)
		return
	}
	g.statusURL = r.auth.cfg.StatusURL(g.status.ID)
	r.secrets.add(g.statusURL)
	if g.status.Mission != nil {
		g.pending.MissionID = g.status.Mission.ID
	}
	if g.status.Proposal != nil {
		c.failf("the issuance answer carries a proposal, though no holder proof was shown")
	}
	if g.status.Status != pass.StatusPending {
		c.skipf("the request was decided at once (%s), so no pending status could be read", g.status.Status)
		return
	}
	defer r.abandon(ctx, c, g)
	if _, st := r.statusRead(ctx, c, g, nil); st != nil && st.Proposal != nil {
		c.failf("the pending status shows the proposal to a poller without a holder proof")
	}
	if other, err := es256Key(); err == nil {
		h := &grant{key: other, harnessID: g.harnessID, auth: g.auth, statusURL: g.statusURL, status: g.status}
		if _, st := r.statusRead(ctx, c, g, http.Header{pass.ProofHeader: {h.statusProof()}}); st != nil && st.Proposal != nil {
			c.failf("the pending status shows the proposal to a proof by another key")
		}
	}
	a, st := r.statusRead(ctx, c, g, http.Header{pass.ProofHeader: {g.statusProof()}})
	switch {
	case st == nil:
		c.failf("the pending status read with the holder proof: %s", a)
	case st.Proposal == nil:
		c.got("no proposal shown for this task (allowed)")
	default:
		p := st.Proposal
		names := slices.Concat(p.Scope, p.Diff.Over, p.Diff.Under)
		for _, x := range slices.Concat(p.Rationale, p.Excluded) {
			names = append(names, x.Scope)
		}
		for _, n := range names {
			if !req.Scope.Has(n) {
				c.failf("the proposal names %q, which the Harness did not request", n)
				break
			}
		}
		c.got("proposal %s: scope %v, over %v", p.Outcome, p.Scope, p.Diff.Over)
	}
}

func (r *runner) compileWildcard(ctx context.Context, c *check) {
	if !r.needKit(c) {
		return
	}
	ext, ok := r.auth.cfg.Extensions.Get(pass.ExtCompile)
	if !ok {
		c.skipf("the Authority does not advertise %s (plain v0.1 is fine)", pass.ExtCompile)
		return
	}
	var policy string
	ext.Member("wildcard", &policy)
	switch policy {
	case "replace", "refuse", "human":
	case "":
		c.skipf("the compile extension publishes no wildcard policy")
		return
	default:
		c.failf("the wildcard policy %q is not replace, refuse or human", oneLine(policy, 40))
		return
	}
	svc := r.cfg.KitService.origins[0]
	if policy == "refuse" {
		_, req, err := r.issuanceRequest(pass.BearerToken, svc)
		if err != nil {
			c.failf("%v", err)
			return
		}
		req.Scope = pass.Scope{pass.Wildcard}
		c.expectCode(c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.Issuance, nil, req), `"*" under the refuse policy`, 403, pass.CodeScopeWildcardRefused)
		return
	}
	g, err := r.acquireWith(ctx, c, r.auth, svc, pass.BearerToken, func(q *pass.IssuanceRequest) { q.Scope = pass.Scope{pass.Wildcard} })
	if g == nil || len(g.statuses) == 0 {
		c.failf(`a request for "*" under the %s policy got no status: %v`, policy, err)
		return
	}
	var first pass.IssuanceStatus
	if policy == "human" && json.Unmarshal(g.statuses[0].body, &first) == nil && first.Status == pass.StatusApproved {
		c.failf(`"*" was approved at once, though the human policy leaves it to a person`)
	}
	if err != nil {
		c.skipf("no pass to inspect: %v", err)
		return
	}
	m := r.readMission(ctx, c, g)
	switch {
	case m == nil:
		c.got(`"*" accepted under %s; no mission record to inspect`, policy)
	case m.AuthorityModel.Scope.HasWildcard() || m.AuthorityModel.Ceiling.HasWildcard():
		if !g.approverCalled {
			c.failf(`"*" itself was granted without a person`)
		}
	default:
		c.got(`"*" replaced by %v`, m.AuthorityModel.Scope)
	}
}

// stagePlan is the kit's three-stage plan over its Service's scopes.
var stagePlan = []pass.Stage{
	{Name: "conf-one", Scope: pass.Scope{kitScope}, Gate: pass.GateAuto},
	{Name: "conf-two", Scope: pass.Scope{kitScope, kitScopeList}, Gate: pass.GateAuto},
	{Name: "conf-three", Scope: pass.Scope{kitScope, kitScopeList, kitScopeSearch}, Gate: pass.GateAuto},
}

// staged asks for the stage plan plan, as a Harness that can request
// transitions.
func staged(plan []pass.Stage) func(*pass.IssuanceRequest) {
	return func(q *pass.IssuanceRequest) {
		q.Harness.Extensions = append(q.Harness.Extensions, pass.ExtStages)
		q.Stages = plan
	}
}

func (r *runner) stageMoves(ctx context.Context, c *check) {
	u := r.needExtension(c, pass.ExtStages, "mission_stage")
	if u == "" || !r.needKit(c) {
		return
	}
	g, err := r.acquireWith(ctx, c, r.auth, r.cfg.KitService.origins[0], pass.BearerToken, staged(stagePlan))
	if err != nil {
		c.skipf("could not obtain a staged pass: %v", err)
		return
	}
	m := r.readMission(ctx, c, g)
	if m == nil || len(m.AuthorityModel.Stages) != len(stagePlan) || m.AuthorityModel.Stage != stagePlan[0].Name {
		c.skipf("the Authority did not keep the kit's three-stage plan, or its record is not readable")
		return
	}
	id := g.pending.MissionID
	move := func(to string, version int64, k *dpop.Key) *answer {
		return r.missionPost(ctx, c, g, k, u, id, pass.MissionStageRequest{MissionID: id, To: to, ExpectedVersion: version})
	}
	c.expectCode(move("conf-nowhere", 0, g.key), "a stage the plan does not have", 422, pass.CodeStageUnknown)
	c.expectCode(move("conf-three", 0, g.key), "skipping a stage", 409, pass.CodeStageNotNext)
	c.expectCode(move("conf-two", m.Version+5, g.key), "an old expected_version", 409, pass.CodeStaleVersion)
	c.expectRefusal(move("conf-two", 0, nil), "a move without a holder proof", 401)
	var fwd, back pass.MissionStageResponse
	a := move("conf-two", m.Version, g.key)
	switch {
	case a.status == http.StatusAccepted:
		c.got("the forward move waits for a decision (a gate); the back move was not tried")
		return
	case !a.ok() || pass.Decode(a.body, &fwd) != nil:
		c.failf("forward one stage: %s", a)
		return
	case fwd.Mission.AuthorityModel.Stage != "conf-two":
		c.failf("after the forward move the mission is at stage %q", fwd.Mission.AuthorityModel.Stage)
		return
	}
	b := move("conf-one", 0, g.key)
	if b.status != http.StatusOK || pass.Decode(b.body, &back) != nil || back.Mission.AuthorityModel.Stage != "conf-one" {
		c.failf("moving back was not applied at once: %s", b)
		return
	}
	c.got("moved to conf-two (version %d) and back to conf-one (version %d)", fwd.Mission.Version, back.Mission.Version)
}

// redeemToken redeems g at the Service under test for a bearer token and
// the scope it reports.
func (r *runner) redeemToken(ctx context.Context, c *check, g *grant) (string, pass.Scope) {
	body, err := g.redemption(r.svc.cfg.Service.Origin)
	if err != nil {
		return "", nil
	}
	a := r.redeem(ctx, c, pass.BearerToken, body)
	tok := r.registerToken(a)
	var br pass.BearerTokenResponse
	if !a.ok() || a.json(&br) != nil {
		return "", nil
	}
	return tok, br.Scope
}

func (r *runner) stageGate(ctx context.Context, c *check) {
	if !r.needResolved(c) {
		return
	}
	if !r.svc.cfg.Extensions.Has(pass.ExtStages) || !r.svcAuth.cfg.Extensions.Has(pass.ExtStages) {
		c.skipf("the Service or its Authority does not advertise %s (plain v0.1 is fine)", pass.ExtStages)
		return
	}
	if r.cfg.ServiceAPI == "" {
		c.skipf("needs Config.ServiceAPI")
		return
	}
	origin := r.svc.cfg.Service.Origin
	g, err := r.acquire(ctx, c, r.svcAuth, origin, pass.BearerToken)
	if err != nil {
		c.skipf("could not obtain a pass: %v", err)
		return
	}
	tok, granted := r.redeemToken(ctx, c, g)
	if tok == "" || !c.send(ctx, http.MethodGet, r.cfg.ServiceAPI, bearer(tok), nil).ok() {
		c.skipf("the API did not accept a fresh token")
		return
	}
	if len(granted) < 2 || granted.HasWildcard() {
		c.skipf("needs a Service granting at least two concrete scopes, one of which its API does not need (granted %v)", granted)
		return
	}
	// Leave out one granted scope at a time from the first stage until
	// the API needs it.
	for _, s := range granted[:min(3, len(granted))] {
		first := slices.DeleteFunc(slices.Clone(granted), func(v string) bool { return v == s })
		plan := []pass.Stage{{Name: "conf-first", Scope: first, Gate: pass.GateAuto}, {Name: "conf-second", Scope: granted, Gate: pass.GateAuto}}
		g, err := r.acquireWith(ctx, c, r.svcAuth, origin, pass.BearerToken, staged(plan))
		if err != nil {
			c.skipf("could not obtain a staged pass: %v", err)
			return
		}
		tok, _ := r.redeemToken(ctx, c, g)
		if tok == "" {
			c.failf("a staged pass was not redeemable")
			return
		}
		a := c.send(ctx, http.MethodGet, r.cfg.ServiceAPI, bearer(tok), nil)
		var body struct {
			Mission *struct {
				Stage string `json:"stage"`
			} `json:"mission"`
		}
		switch {
		case a.ok():
			continue
		case a.status == http.StatusForbidden && a.errorCode() == string(pass.CodeStageScopeExceeded):
			if a.json(&body) != nil || body.Mission == nil || body.Mission.Stage != "conf-first" {
				c.failf("the stage_scope_exceeded body does not name the current stage conf-first")
			}
			c.got("a request needing %q, granted only from the next stage, was refused with stage_scope_exceeded", s)
			return
		default:
			c.failf("a request needing %q, which only the next stage grants, was answered %s (want 403 stage_scope_exceeded)", s, a)
			return
		}
	}
	c.skipf("the API needed none of the scopes left out of the first stage")
}

func (r *runner) missionSuspended(ctx context.Context, c *check) {
	if r.needExtension(c, pass.ExtMission, "mission") == "" {
		return
	}
	sus, ok := r.cfg.Approver.(Suspender)
	if !ok {
		c.skipf("needs an Approver that can suspend and resume (conformance.Suspender)")
		return
	}
	g, authz := r.kitRedeemed(ctx, c)
	if g == nil {
		return
	}
	authzCheck := func() *answer {
		return c.send(ctx, http.MethodPost, r.auth.cfg.Endpoints.AuthorizationCheck, bearer(r.assertionFor(0)), pass.AuthorizationCheckRequest{AuthorizationID: authz})
	}
	if err := sus.Suspend(ctx, g.pending); err != nil {
		c.skipf("the Approver could not suspend: %v", err)
		return
	}
	a := authzCheck()
	var body struct {
		Mission *pass.MissionInfo `json:"mission"`
	}
	switch {
	case a.status != http.StatusNotFound:
		c.failf("the check of a suspended mission answered %s, want 404", a)
	case a.errorCode() != string(pass.CodeMissionSuspended):
		c.failf("the 404 of a suspended mission has code %q, want mission_suspended", a.errorCode())
	case a.json(&body) != nil || body.Mission == nil || body.Mission.ID != g.pending.MissionID || body.Mission.State != pass.MissionSuspended:
		c.failf("the 404 of a suspended mission does not carry mission {id, state suspended, version}")
	}
	if err := sus.Resume(ctx, g.pending); err != nil {
		c.failf("the Approver could not resume: %v", err)
		return
	}
	if b := authzCheck(); !b.ok() {
		c.failf("after the resume the check answered %s, want 200", b)
	}
}
