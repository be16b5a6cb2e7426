package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

// speakStages makes a advertise the mission and stages extensions.
func (a *fakeAuthority) speakStages() {
	a.speakMission()
	a.setConfig(func(c *pass.AuthorityConfiguration) {
		var err error
		if c.Extensions, err = c.Extensions.With(pass.ExtStages, pass.Extension{Version: "1.0", Endpoints: map[string]string{
			"mission_stage": a.origin + "/mission/stage"}}); err != nil {
			panic(err)
		}
	})
}

// stagedPlan: read first, then read and admin (a scope a test route
// requires).
var stagedPlan = []pass.Stage{
	{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
	{Name: "respond", Scope: pass.Scope{"tickets:read", "admin"}, Gate: pass.GateAuto},
}

func stagedMission(id string, version int64, stage string, ceiling ...string) *pass.MissionInfo {
	return &pass.MissionInfo{ID: id, State: pass.MissionActive, Version: version, Stage: stage, Stages: stagedPlan, Ceiling: ceiling}
}

// stageCheck makes the check of id answer stage at version with scope.
func (e *env) stageCheck(id, mid, stage string, version int64, scope ...string) {
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: scope,
		Mission: &pass.MissionInfo{ID: mid, State: pass.MissionActive, Version: version, Stage: stage}})
}

// S1 (poll), S4 and the report: a scope of a later stage is refused as
// stage_scope_exceeded naming both stages, until a check moves the stage;
// a back move refuses it again.
func TestStageScopeExceeded(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakStages()
	e.runService(t)
	const mid = "msn_staged"
	tok, id := e.missionToken(t, stagedMission(mid, 2, "discover", "tickets:read", "admin"), "tickets:read")
	d, err := e.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(d.Scope, pass.Scope{"tickets:read", "admin"}) || !cmp.Equal(d.CurrentScope, pass.Scope{"tickets:read"}) || d.Stage != "discover" {
		t.Fatalf("stored: bound %v current %v stage %q", d.Scope, d.CurrentScope, d.Stage)
	}
	e.wantStatus(t, "current stage", "/api/tickets", tok, http.StatusOK, "")
	t0 := e.clock.Now()
	r := e.get("/api/admin", bearer(tok))
	if r.status != http.StatusForbidden || r.errorCode() != pass.CodeStageScopeExceeded {
		t.Fatalf("later stage: %d %s", r.status, r.body)
	}
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate %q", h)
	}
	validJSON(t, r.body, "error-response.schema.json", "")
	var body pass.ErrorResponse
	r.decode(t, &body)
	if body.RequiredStage != "respond" || body.Mission == nil || body.Mission.Stage != "discover" || body.Mission.ID != mid {
		t.Errorf("body names stages: %s", r.body)
	}
	rep := e.idp.nextReport(t)
	want := []pass.Observation{{Kind: pass.ObservationStageScopeExceeded, Scope: "admin", Stage: "discover", Count: 1, FirstAt: t0.UTC(), LastAt: t0.UTC()}}
	if diff := cmp.Diff(want, rep.req.Observations); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	// The Authority moved the stage: allowed at the next check.
	e.stageCheck(id, mid, "respond", 3, "tickets:read", "admin")
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "after the move", "/api/admin", tok, http.StatusOK, "")

	// S4: back to discover; the next check narrows at once.
	e.stageCheck(id, mid, "discover", 4, "tickets:read")
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "after the back move", "/api/admin", tok, http.StatusForbidden, pass.CodeStageScopeExceeded)
	if d, _ := e.store.Delegation(t.Context(), id); d.Stage != "discover" || d.MissionVersion != 4 {
		t.Errorf("stored stage %q v%d", d.Stage, d.MissionVersion)
	}
}

// A scope outside the bound is the plain insufficient_scope; S7: a check
// answer outside the bound (a hostile or confused Authority) cannot widen
// the delegation beyond it.
func TestStageBoundHolds(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakStages()
	const mid = "msn_bound"
	// requested_scope leaves admin out of the bound.
	vr := validation(corpUser, pass.BearerToken, "tickets:read")
	vr.AuthorizationID = "authz-" + randomID()
	vr.Mission = stagedMission(mid, 2, "discover", "tickets:read", "admin")
	req := redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr))
	req.RequestedScope = pass.Scope{"tickets:read"}
	r := e.redeem(pass.BearerToken, req, nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	if !cmp.Equal(resp.Scope, pass.Scope{"tickets:read"}) {
		t.Errorf("redemption scope %v", resp.Scope)
	}
	e.wantStatus(t, "outside the bound", "/api/admin", resp.BearerToken, http.StatusForbidden, pass.CodeInsufficientScope)
	e.stageCheck(vr.AuthorizationID, mid, "respond", 3, "tickets:read", "admin", "tickets:write")
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "hostile check", "/api/admin", resp.BearerToken, http.StatusForbidden, pass.CodeInsufficientScope)
	d, err := e.store.Delegation(t.Context(), vr.AuthorizationID)
	if err != nil {
		t.Fatal(err)
	}
	if !d.CurrentScope.SubsetOf(d.Scope) || d.CurrentScope.Allows("admin") {
		t.Errorf("effective scope left the bound: current %v bound %v", d.CurrentScope, d.Scope)
	}
}

// A stage plan from an Authority that does not advertise stages is
// ignored: the delegation is bounded by the validated scope, as in v0.1.
func TestStagePlanNeedsAuthorityExtension(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	tok, id := e.missionToken(t, stagedMission("msn_plain", 2, "discover", "tickets:read", "admin"), "tickets:read")
	if d, _ := e.store.Delegation(t.Context(), id); len(d.Stages) != 0 || !cmp.Equal(d.Scope, pass.Scope{"tickets:read"}) {
		t.Errorf("stored: %+v", d)
	}
	e.wantStatus(t, "admin", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
}
