package authority_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// stagedEnv is an Authority that classifies scopes by suffix, approves
// every request, and a Service that advertises staged execution.
func stagedEnv(t *testing.T, opts ...func(*authority.Config)) *env {
	t.Helper()
	e := newEnv(t, append([]func(*authority.Config){approveAll, func(c *authority.Config) {
		c.Effects = authority.EffectRules{":read": authority.EffectRead, ":write": authority.EffectWrite, ":delete": authority.EffectDelete}
	}}, opts...)...)
	x, err := pass.Extensions{}.With(pass.ExtStages, pass.Extension{Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.SetExtensions(x)
	e.svc.SetScopes("tickets:read", "tickets:write", "tickets:delete")
	return e
}

// stagedHarness asks for plan and speaks the stages extension.
func (e *env) stagedHarness(plan ...pass.Stage) *harness {
	h := e.newHarness()
	h.req.Harness.Extensions = append(h.req.Harness.Extensions, pass.ExtStages)
	h.req.Stages = plan
	return h
}

var (
	discover = pass.Stage{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto}
	respond  = pass.Stage{Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GateHuman}
	cleanup  = pass.Stage{Name: "cleanup", Scope: pass.Scope{"tickets:read", "tickets:delete"}, Gate: pass.GateHuman}
)

func (e *env) stage(h *harness, id, to string, version int64) (response, *pass.MissionStageResponse) {
	e.t.Helper()
	r := e.postProof("/missions/stage", pass.MissionStageRequest{MissionID: id, To: to, ExpectedVersion: version, Reason: "next step"},
		e.missionProof(h.key, h.req.Harness.ID, "/missions/stage", id, 0))
	if r.status != http.StatusOK && r.status != http.StatusAccepted {
		return r, nil
	}
	var out pass.MissionStageResponse
	if err := pass.Decode(r.body, &out); err != nil {
		e.t.Fatalf("stage answer %s: %v", r.body, err)
	}
	return r, &out
}

func sameScope(a, b pass.Scope) bool { return a.SubsetOf(b) && b.SubsetOf(a) }

// The configuration lists the stage endpoint in the stages extension.
func TestStagesExtensionAdvertised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil)
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Extensions.Endpoint(pass.ExtStages, "mission_stage"); got != e.base+"/missions/stage" {
		t.Errorf("mission_stage endpoint %q", got)
	}
}

// S6: a plan that declares less than its effects' floor is raised, with a
// warning: a stage adding a delete needs a person, one adding a write at
// least policy.
func TestStageGateFloors(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t)
	h := e.stagedHarness(discover,
		pass.Stage{Name: "respond", Scope: respond.Scope, Gate: pass.GateAuto},
		pass.Stage{Name: "cleanup", Scope: cleanup.Scope, Gate: pass.GateAuto})
	id, _ := e.redeemed(h, e.svc)
	m, err := e.auth.Mission(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var gates []string
	for _, st := range m.AuthorityModel.Stages {
		gates = append(gates, st.Gate)
	}
	if want := []string{pass.GateAuto, pass.GatePolicy, pass.GateHuman}; !slices.Equal(gates, want) {
		t.Errorf("gates %v, want %v", gates, want)
	}
	if logs := e.logs.String(); strings.Count(logs, "stage gate raised to its effect floor") != 2 {
		t.Errorf("want two warnings, logs:\n%s", logs)
	}
}

// A first stage whose effects need a person is not entered by a rule: the
// request waits for a person.
func TestStageFirstGateKeepsPending(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t)
	_, st := e.issue(e.stagedHarness(cleanup).req)
	if st == nil || st.Status != pass.StatusPending {
		t.Fatalf("status %+v, want pending", st)
	}
}

// Validation answers the first stage's scope with the plan and ceiling;
// the check answers the current stage.
func TestStageValidationAndCheck(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t)
	h := e.stagedHarness(discover, respond)
	value, _ := e.approvedPass(h)
	r, v := e.validate(e.svc, value)
	if v == nil {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	validateSchema(t, "authority-validate.schema.json", "response", r.body)
	if !sameScope(v.Scope, discover.Scope) || v.Mission == nil || v.Mission.Stage != "discover" || len(v.Mission.Stages) != 2 ||
		!sameScope(v.Mission.Ceiling, respond.Scope) {
		t.Fatalf("validation: scope %v mission %+v", v.Scope, v.Mission)
	}
	r, c := e.check(e.svc, v.AuthorizationID)
	if c == nil || !sameScope(c.Scope, discover.Scope) || c.Mission.Stage != "discover" {
		t.Fatalf("check: %+v", c)
	}
	validateSchema(t, "authority-authorization-check.schema.json", "response", r.body)
	// The issuance request with a plan still validates as v0.1.
	b, err := json.Marshal(h.req)
	if err != nil {
		t.Fatal(err)
	}
	validateSchema(t, "issuance-request.schema.json", "", b)
}

// S2, S4, S5 at the Authority: every answer of the stage endpoint, and the
// check following the current stage.
func TestStageMoves(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t)
	h := e.stagedHarness(discover, respond, cleanup)
	id, authz := e.redeemed(h, e.svc)
	ctx := context.Background()
	checkScope := func(want pass.Scope) {
		t.Helper()
		if r, c := e.check(e.svc, authz); c == nil || !sameScope(c.Scope, want) {
			t.Fatalf("check: %d %s, want scope %v", r.status, r.body, want)
		}
	}
	_, m0 := e.readAsHarness(h, id)
	v := m0.Version

	r, _ := e.stage(h, id, "respond", v-1)
	wantError(t, r, http.StatusConflict, pass.CodeStaleVersion)
	r, _ = e.stage(h, id, "cleanup", v)
	wantError(t, r, http.StatusConflict, pass.CodeStageNotNext)
	r, _ = e.stage(h, id, "deploy", v)
	wantError(t, r, http.StatusUnprocessableEntity, pass.CodeStageUnknown)
	r = e.postProof("/missions/stage", pass.MissionStageRequest{MissionID: id, To: "respond"},
		e.missionProof(e.newHarness().key, harnessID, "/missions/stage", id, 0))
	wantError(t, r, http.StatusNotFound, pass.CodeMissionUnknown)

	// Human gate: 202 with the pending move, the check unchanged; a
	// second request while pending is refused.
	r, out := e.stage(h, id, "respond", v)
	if r.status != http.StatusAccepted || out.PollAfterMs <= 0 || out.Mission.AuthorityModel.PendingTransition == nil ||
		out.Mission.AuthorityModel.PendingTransition.To != "respond" || out.Mission.Version != v {
		t.Fatalf("pending answer %d %s", r.status, r.body)
	}
	checkScope(discover.Scope)
	r, _ = e.stage(h, id, "respond", 0)
	wantError(t, r, http.StatusConflict, pass.CodeTransitionPending)
	if _, err := e.auth.DecideStage(ctx, id, true, "human:lee", "ok"); err != nil {
		t.Fatal(err)
	}
	checkScope(respond.Scope)

	// S4: back at once.
	r, out = e.stage(h, id, "discover", 0)
	if r.status != http.StatusOK || out.Mission.AuthorityModel.Stage != "discover" {
		t.Fatalf("back: %d %s", r.status, r.body)
	}
	checkScope(discover.Scope)

	// Denied: the stage stays, the history says so.
	if r, _ := e.stage(h, id, "respond", 0); r.status != http.StatusAccepted {
		t.Fatalf("pend: %d %s", r.status, r.body)
	}
	if _, err := e.auth.DecideStage(ctx, id, false, "human:lee", "not now"); err != nil {
		t.Fatal(err)
	}
	_, m := e.readAsHarness(h, id)
	if types := historyTypes(m); types[len(types)-1] != "stage_denied" || m.AuthorityModel.PendingTransition != nil {
		t.Errorf("after denial: history %v pending %+v", types, m.AuthorityModel.PendingTransition)
	}
	if _, err := e.auth.DecideStage(ctx, id, true, "human:lee", ""); err == nil {
		t.Error("DecideStage with nothing pending succeeded")
	}
	checkScope(discover.Scope)

	// A lapsed move: TransitionTTL passes, the stage stays, a new one may
	// be asked for.
	if r, _ := e.stage(h, id, "respond", 0); r.status != http.StatusAccepted {
		t.Fatalf("pend: %d %s", r.status, r.body)
	}
	e.clock.Advance((10 * time.Minute))
	if _, m := e.readAsHarness(h, id); m.AuthorityModel.PendingTransition != nil {
		t.Errorf("a lapsed move still shows: %+v", m.AuthorityModel.PendingTransition)
	}
	if r, _ := e.stage(h, id, "respond", 0); r.status != http.StatusAccepted {
		t.Fatalf("pend after lapse: %d %s", r.status, r.body)
	}

	// Suspended: no moves; the suspension canceled the pending one.
	if _, err := e.auth.Suspend(ctx, id, "human:op", "look"); err != nil {
		t.Fatal(err)
	}
	r, _ = e.stage(h, id, "discover", 0)
	wantError(t, r, http.StatusConflict, pass.CodeMissionNotActive)
	if _, err := e.auth.Resume(ctx, id, "human:op"); err != nil {
		t.Fatal(err)
	}
	if _, m := e.readAsHarness(h, id); m.AuthorityModel.PendingTransition != nil {
		t.Errorf("suspension left the pending move")
	}
	if _, err := e.auth.Revoke(ctx, id, "human:op", "done"); err != nil {
		t.Fatal(err)
	}
	r, _ = e.stage(h, id, "respond", 0)
	wantError(t, r, http.StatusConflict, pass.CodeMissionTerminal)
}

// An auto gate applies at once; a policy gate asks the Approver, whose
// refusal is 403 transition_denied, recorded.
func TestStageAutoAndPolicyGates(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t, func(c *authority.Config) {
		c.Approver = authority.ApproverFunc(func(_ context.Context, r *authority.Request) (authority.Decision, error) {
			if r.AvailableScope.Allows("tickets:write") && r.State == pass.MissionPending && r.Decision == nil && r.Stage != "" {
				return authority.Decision{Outcome: authority.Deny, Reason: "no writes today"}, nil
			}
			return authority.Decision{Outcome: authority.Approve}, nil
		})
	})
	h := e.stagedHarness(discover, pass.Stage{Name: "more", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
		pass.Stage{Name: "respond", Scope: respond.Scope, Gate: pass.GatePolicy})
	id, authz := e.redeemed(h, e.svc)
	r, out := e.stage(h, id, "more", 0)
	if r.status != http.StatusOK || out.Mission.AuthorityModel.Stage != "more" {
		t.Fatalf("auto: %d %s", r.status, r.body)
	}
	r, _ = e.stage(h, id, "respond", 0)
	wantError(t, r, http.StatusForbidden, pass.CodeTransitionDenied)
	_, m := e.readAsHarness(h, id)
	if types := historyTypes(m); types[len(types)-1] != "stage_denied" || m.AuthorityModel.Stage != "more" {
		t.Errorf("after refusal: history %v stage %q", types, m.AuthorityModel.Stage)
	}
	if _, c := e.check(e.svc, authz); c == nil || c.Scope.Allows("tickets:write") {
		t.Errorf("check after refusal: %+v", c)
	}
}

// A Service that does not advertise stages gets the plan collapsed into
// one stage at approval: the ceiling at once, behind the strictest gate.
func TestStagePlanCollapsed(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t)
	e.svc.SetExtensions(pass.Extensions{})
	h := e.stagedHarness(discover, pass.Stage{Name: "respond", Scope: respond.Scope, Gate: pass.GatePolicy})
	value, _ := e.approvedPass(h)
	_, v := e.validate(e.svc, value)
	if v == nil || !sameScope(v.Scope, respond.Scope) || len(v.Mission.Stages) != 1 || v.Mission.Stages[0].Gate != pass.GatePolicy {
		t.Fatalf("collapsed validation: %+v %+v", v, v.Mission)
	}
	// A Harness that does not speak stages gets the same.
	e2 := stagedEnv(t)
	h2 := e2.stagedHarness(discover, cleanup)
	h2.req.Harness.Extensions = pass.HarnessExtensions{pass.ExtHolderBinding}
	if _, st := e2.issue(h2.req); st == nil || st.Status != pass.StatusPending {
		t.Fatalf("collapsed plan with a human stage: %+v", st)
	}
}

// DecideStage passes ValidateDecision: a refused approval leaves the move
// pending (issue #16 item 3).
func TestStageDecisionValidated(t *testing.T) {
	t.Parallel()
	e := stagedEnv(t, func(c *authority.Config) {
		c.ValidateDecision = func(_ context.Context, r *authority.Request, d authority.Decision) error {
			if r.PendingStage != nil && d.DecidedBy != "human:lee" {
				return errors.New("only lee moves stages")
			}
			return nil
		}
	})
	h := e.stagedHarness(discover, respond, cleanup)
	id, _ := e.redeemed(h, e.svc)
	_, m0 := e.readAsHarness(h, id)
	if r, _ := e.stage(h, id, "respond", m0.Version); r.status != http.StatusAccepted {
		t.Fatalf("pend: %d %s", r.status, r.body)
	}
	if _, err := e.auth.DecideStage(context.Background(), id, true, "human:mallory", ""); !errors.Is(err, authority.ErrDecisionRefused) {
		t.Fatalf("DecideStage by mallory: %v", err)
	}
	if _, m := e.readAsHarness(h, id); m.AuthorityModel.PendingTransition == nil || m.AuthorityModel.Stage != "discover" {
		t.Fatalf("after the refusal: %+v", m.AuthorityModel)
	}
	if _, err := e.auth.DecideStage(context.Background(), id, true, "human:lee", "ok"); err != nil {
		t.Fatal(err)
	}
}
