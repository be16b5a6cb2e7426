package service_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// missionToken redeems, at the Enterprise Authority, a pass whose mission is
// m (active) and returns the token and the authorization id.
func (e *env) missionToken(t *testing.T, m *pass.MissionInfo, scope ...string) (string, string) {
	t.Helper()
	vr := validation(corpUser, pass.BearerToken, scope...)
	vr.AuthorizationID = "authz-" + randomID()
	vr.Mission = m
	value := e.idp.issue(vr)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	return resp.BearerToken, vr.AuthorizationID
}

// wantStatus gets path with tok and fails unless the answer is status with
// code (code "" for a 200).
func (e *env) wantStatus(t *testing.T, what, path, tok string, status int, code pass.Code) {
	t.Helper()
	r := e.get(path, bearer(tok))
	if r.status != status || r.errorCode() != code {
		t.Fatalf("%s: %d %s, want %d %s", what, r.status, r.body, status, code)
	}
}

// wantMission fails unless the stored delegation id has the mission state
// and version given and is not invalidated.
func (e *env) wantMission(t *testing.T, id string, state pass.MissionState, version int64) {
	t.Helper()
	d, err := e.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Invalidated || d.MissionState != state || d.MissionVersion != version {
		t.Fatalf("delegation: invalidated=%v (%s) mission %s v%d, want kept, %s v%d",
			d.Invalidated, d.InvalidReason, d.MissionState, d.MissionVersion, state, version)
	}
}

func mission(id string, state pass.MissionState, version int64) *pass.MissionInfo {
	return &pass.MissionInfo{ID: id, State: state, Version: version}
}

// X1, issue #20 item 3 and #22 item 2: the Service advertises the mission
// and delegation extensions next to holder binding, and its configuration
// still validates against the v0.1 schema.
func TestConfigurationAdvertisesMission(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do(http.MethodGet, e.svc.ConfigurationURL(), nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET configuration = %d %s", r.status, r.body)
	}
	validJSON(t, r.body, "service-configuration.schema.json", "")
	var cfg pass.ServiceConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{pass.ExtDelegation, pass.ExtHolderBinding, pass.ExtMission, pass.ExtStages}, cfg.Extensions.URIs()); diff != "" {
		t.Errorf("extensions (-want +got):\n%s", diff)
	}
	if x, _ := cfg.Extensions.Get(pass.ExtMission); x.Version != "1.0" {
		t.Errorf("mission extension version %q, want 1.0", x.Version)
	}
}

// §1.4b: a suspended mission holds its delegation (credentials kept,
// requests refused 403 mission_suspended, checks continue at
// CheckInterval) until the next 200 releases it.
func TestMissionHold(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	const mid = "msn_hold"
	tok, id := e.missionToken(t, mission(mid, pass.MissionActive, 1))
	e.wantMission(t, id, pass.MissionActive, 1)
	// The redemption's audit record names the mission and its version.
	recs := e.logs.records("agentpass redemption")
	if last := recs[len(recs)-1]; last["mission_id"] != mid || last["mission_version"] != float64(1) {
		t.Errorf("redemption audit: mission_id=%v mission_version=%v", last["mission_id"], last["mission_version"])
	}

	e.idp.suspend(id, mission(mid, pass.MissionSuspended, 2))
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "suspended", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	e.wantMission(t, id, pass.MissionSuspended, 2)
	checks := e.idp.checkCalls.Load()
	// Within the interval the hold answers without asking the Authority.
	e.clock.Advance(10 * time.Second)
	e.wantStatus(t, "held within the interval", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	if n := e.idp.checkCalls.Load(); n != checks {
		t.Errorf("%d checks within the interval of a held delegation, want %d", n, checks)
	}
	// After it, the check runs again: still suspended.
	e.clock.Advance(25 * time.Second)
	e.wantStatus(t, "still suspended", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	if n := e.idp.checkCalls.Load(); n != checks+1 {
		t.Errorf("%d checks after the interval, want %d", n, checks+1)
	}

	// Resumed: the next 200 releases the hold, with the same token.
	e.idp.suspend(id, nil)
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission(mid, pass.MissionActive, 3)})
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "resumed", "/api/tickets", tok, http.StatusOK, "")
	e.wantMission(t, id, pass.MissionActive, 3)
	if recs := e.logs.records("agentpass authorization check"); !hasOutcome(recs, "held") || !hasOutcome(recs, "released") {
		t.Errorf("check audit records lack held or released: %v", recs)
	}
}

func hasOutcome(recs []map[string]any, outcome string) bool {
	for _, r := range recs {
		if r["outcome"] == outcome {
			return true
		}
	}
	return false
}

// §9 item 6: a check answer whose mission version is older than the one
// the Service holds never releases a hold and never widens the scope.
func TestMissionStaleCheckNeverReleases(t *testing.T) {
	t.Run("hold", func(t *testing.T) {
		e := newEnv(t, nil)
		e.idp.speakMission()
		const mid = "msn_stale_hold"
		tok, id := e.missionToken(t, mission(mid, pass.MissionActive, 3))
		e.idp.suspend(id, mission(mid, pass.MissionSuspended, 5))
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "suspended at v5", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)

		// A lagging replica answers 200 at version 4: still held.
		e.idp.suspend(id, nil)
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission(mid, pass.MissionActive, 4)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "stale 200 at v4", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)
		e.wantMission(t, id, pass.MissionSuspended, 5)
		// A 200 that names no mission cannot be ordered: still held.
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "200 without mission", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)
		// Nor one naming another mission.
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission("msn_other", pass.MissionActive, 9)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "200 of another mission", "/", tok, http.StatusForbidden, pass.CodeMissionSuspended)
		e.wantMission(t, id, pass.MissionSuspended, 5)

		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission(mid, pass.MissionActive, 6)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "200 at v6", "/", tok, http.StatusOK, "")
		e.wantMission(t, id, pass.MissionActive, 6)
	})
	t.Run("scope", func(t *testing.T) {
		e := newEnv(t, nil)
		e.idp.speakMission()
		const mid = "msn_stale_scope"
		tok, id := e.missionToken(t, mission(mid, pass.MissionActive, 1), "tickets:read", "admin")
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}, Mission: mission(mid, pass.MissionActive, 3)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "narrowed at v3", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
		// A stale answer with the old, wider scope gives nothing back...
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read", "admin"}, Mission: mission(mid, pass.MissionActive, 2)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "stale wider answer", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
		e.wantStatus(t, "stale wider answer", "/api/tickets", tok, http.StatusOK, "")
		e.wantMission(t, id, pass.MissionActive, 3)
		// ...but still narrows.
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"admin"}, Mission: mission(mid, pass.MissionActive, 2)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "stale narrower answer", "/", tok, http.StatusForbidden, pass.CodeScopeEmpty)
		// A newer version widens again, within the redemption scope.
		e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read", "admin"}, Mission: mission(mid, pass.MissionActive, 4)})
		e.clock.Advance(31 * time.Second)
		e.wantStatus(t, "newer wider answer", "/api/admin", tok, http.StatusOK, "")
	})
}

// §1.4b: every 404 other than a suspended-404 about the delegation's own
// mission, from an Authority that advertises the extension, invalidates as
// in v0.1.
func TestMission404Invalidates(t *testing.T) {
	for _, tc := range []struct {
		name      string
		advertise bool
		body      *pass.MissionInfo // nil: plain v0.1 404
	}{
		{"plain 404", true, nil},
		{"another mission", true, mission("msn_other", pass.MissionSuspended, 2)},
		{"revoked state", true, mission("msn_404", pass.MissionRevoked, 2)},
		{"Authority without the extension", false, mission("msn_404", pass.MissionSuspended, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.advertise {
				e.idp.speakMission()
			}
			tok, id := e.missionToken(t, mission("msn_404", pass.MissionActive, 1))
			if tc.body != nil {
				e.idp.suspend(id, tc.body)
			} else {
				e.idp.setAuthz(id, nil)
			}
			e.clock.Advance(31 * time.Second)
			e.wantStatus(t, "after the 404", "/", tok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
			d, err := e.store.Delegation(t.Context(), id)
			if err != nil || !d.Invalidated {
				t.Fatalf("delegation not invalidated: %+v %v", d, err)
			}
		})
	}
}

// R3 (Service part), §0.2 rule 3: against a plain v0.1 Authority (no
// extensions) a validation response's mission member is ignored: the
// delegation has no mission, refusals are not reported, and a 404
// invalidates whatever its body says.
func TestMissionV01Authority(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_v01", pass.MissionActive, 1))
	d, err := e.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.MissionID != "" || d.MissionVersion != 0 || d.MissionState != "" {
		t.Errorf("a v0.1 Authority's delegation has mission %q v%d %q", d.MissionID, d.MissionVersion, d.MissionState)
	}
	r := e.get("/", bearer(tok))
	var got map[string]any
	r.decode(t, &got)
	if r.status != http.StatusOK {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	e.wantStatus(t, "insufficient scope", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	e.idp.suspend(id, mission("msn_v01", pass.MissionSuspended, 2))
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "suspended-404 from a v0.1 Authority", "/", tok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
	if n := e.idp.reportCalls.Load(); n != 0 {
		t.Errorf("%d reports to a v0.1 Authority", n)
	}
}

// X2: an Authority whose extensions object is broken is a v0.1 Authority
// to the Service (the broken entry is logged), and its v0.1 flow works.
func TestMissionBrokenExtensions(t *testing.T) {
	for _, tc := range []struct {
		name, extensions string
		logged           bool
	}{
		{"a string", `"mission"`, true},
		{"unknown major", `{"` + pass.ExtMission + `": {"version": "2.0"}}`, true},
		{"http endpoint", `{"` + pass.ExtMission + `": {"version": "1.0", "endpoints": {"mission_report": "http://idp.corp.test/r"}}}`, true},
		{"unknown URI only", `{"https://example.com/ext/other": {"version": "1.0"}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.idp.mu.Lock()
			e.idp.configPatch = map[string]string{"extensions": tc.extensions}
			e.idp.mu.Unlock()
			tok, id := e.missionToken(t, mission("msn_x2", pass.MissionActive, 1))
			e.wantStatus(t, "v0.1 flow", "/api/tickets", tok, http.StatusOK, "")
			if d, err := e.store.Delegation(t.Context(), id); err != nil || d.MissionID != "" {
				t.Errorf("delegation mission %q (%v), want none", d.MissionID, err)
			}
			if got := len(e.logs.records("agentpass authority extensions ignored")) > 0; got != tc.logged {
				t.Errorf("ignored extension logged = %v, want %v", got, tc.logged)
			}
			e.idp.suspend(id, mission("msn_x2", pass.MissionSuspended, 2))
			e.clock.Advance(31 * time.Second)
			e.wantStatus(t, "suspended-404", "/", tok, http.StatusUnauthorized, pass.CodeDelegationRevoked)
		})
	}
}

// A validation answer whose mission is not active is refused like an
// unknown pass (§9 item 5: the Authority should not have validated it).
func TestMissionValidationNotActive(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	vr := validation(corpUser, pass.BearerToken)
	vr.Mission = mission("msn_susp", pass.MissionSuspended, 2)
	value := e.idp.issue(vr)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusUnprocessableEntity || r.errorCode() != pass.CodeAgentPassInvalid {
		t.Fatalf("redeem: %d %s, want 422 agentpass_invalid", r.status, r.body)
	}
}

// runService starts e's Run until the test ends.
func (e *env) runService(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	})
}

// nextReport waits for the next mission report at a.
func (a *fakeAuthority) nextReport(t *testing.T) reportCall {
	t.Helper()
	select {
	case c := <-a.reports:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("no mission report")
		return reportCall{}
	}
}

// §1.4e: refusals are aggregated per delegation and sent at most once per
// 10 s, with a Service assertion.
func TestMissionReportsBatched(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	e.runService(t)
	tok, id := e.missionToken(t, mission("msn_report", pass.MissionActive, 1))
	t0 := e.clock.Now()
	e.wantStatus(t, "refusal 1", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	first := e.idp.nextReport(t)
	want := pass.MissionReportRequest{AuthorizationID: id, Observations: []pass.Observation{
		{Kind: pass.ObservationScopeDenied, Scope: "admin", Count: 1, FirstAt: t0.UTC(), LastAt: t0.UTC()},
	}}
	if diff := cmp.Diff(want, first.req); diff != "" {
		t.Errorf("first report (-want +got):\n%s", diff)
	}
	// The fake Authority verified the Service assertion before it took the
	// report (nothing else called it since the redemption's validation).
	if c, _ := e.idp.lastAssertion.Load().(*assertion.Claims); c == nil || c.Issuer != appURL || c.Audience != e.idp.origin {
		t.Errorf("report assertion claims %+v", c)
	}
	if n := e.idp.reportCalls.Load(); n != 1 {
		t.Fatalf("%d report calls, want 1", n)
	}

	// Four more refusals within 10 s: nothing is sent until the window
	// has passed, then one report carries all four.
	for i := 1; i <= 4; i++ {
		e.clock.Advance(time.Second)
		e.wantStatus(t, "refusal", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	}
	e.clock.Advance(6 * time.Second)
	second := e.idp.nextReport(t)
	want.Observations = []pass.Observation{
		{Kind: pass.ObservationScopeDenied, Scope: "admin", Count: 4, FirstAt: t0.Add(time.Second).UTC(), LastAt: t0.Add(4 * time.Second).UTC()},
	}
	if diff := cmp.Diff(want, second.req); diff != "" {
		t.Errorf("second report (-want +got):\n%s", diff)
	}
	if gap := second.at.Sub(first.at); gap < 10*time.Second {
		t.Errorf("reports %v apart, want at least 10s", gap)
	}
	if n := e.idp.reportCalls.Load(); n != 2 {
		t.Errorf("%d report calls, want 2", n)
	}
	// Run logged the first report before it sent the second.
	recs := e.logs.records("agentpass mission report")
	if len(recs) == 0 || recs[0]["outcome"] != "ok" || recs[0]["mission_id"] != "msn_report" || recs[0]["count"] != float64(1) {
		t.Errorf("report audit records: %v", recs)
	}
}

// R9 (Service part): five refusals reach the Authority, whose policy
// suspends the mission at the fifth; the middleware then answers 403
// mission_suspended.
func TestMissionR9ReportsThenSuspended(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.speakMission()
	const mid = "msn_r9"
	var total atomic.Int64
	e.idp.onReport = func(r pass.MissionReportRequest) {
		for _, o := range r.Observations {
			if o.Kind == pass.ObservationScopeDenied {
				total.Add(o.Count)
			}
		}
		if total.Load() >= 5 {
			e.idp.suspend(r.AuthorizationID, mission(mid, pass.MissionSuspended, 2))
		}
	}
	e.runService(t)
	tok, id := e.missionToken(t, mission(mid, pass.MissionActive, 1))
	for range 5 {
		e.wantStatus(t, "refusal", "/api/admin", tok, http.StatusForbidden, pass.CodeInsufficientScope)
		e.clock.Advance(time.Second)
	}
	got := e.idp.nextReport(t).req.Observations[0].Count
	e.clock.Advance(10 * time.Second)
	got += e.idp.nextReport(t).req.Observations[0].Count
	if got != 5 {
		t.Fatalf("%d refusals reported, want 5", got)
	}
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "after the Authority suspended", "/api/tickets", tok, http.StatusForbidden, pass.CodeMissionSuspended)
	e.wantMission(t, id, pass.MissionSuspended, 2)
}

// The stored delegation of a mission-aware Authority carries the mission;
// Delegation exposes its id to the application.
func TestMissionOnDelegation(t *testing.T) {
	var seen *service.Delegation
	e := newEnv(t, func(c *service.Config) {
		c.OnDelegation = func(_ context.Context, d *service.Delegation) error { seen = d; return nil }
	})
	e.idp.speakMission()
	e.missionToken(t, mission("msn_app", pass.MissionActive, 7))
	if seen == nil || seen.MissionID != "msn_app" {
		t.Errorf("OnDelegation saw %+v, want mission msn_app", seen)
	}
}

// Against a real Authority of the mission layer: the redemption keeps the
// mission as the Authority's record has it, checks keep it current, and a
// suspension refuses the next request after CheckInterval. An Authority
// that sends the suspended-404 body to Services advertising the extension
// gets the delegation held, and Resume releases it with the same token; one
// that answers a plain 404 gets it invalidated, as in v0.1.
func TestMissionWithRealAuthority(t *testing.T) {
	rn := newRealNet(t, func(c *service.Config) {
		c.UserScopes = func(context.Context, string) ([]string, error) { return []string{"tickets:read"}, nil }
	})
	h := newHarness(t)
	const user = "alex@real.test"
	value := rn.acquire(t, rn.ent, h, pass.BearerToken, user, "")
	r := rn.redeemReal(t, rn.ent, h, pass.BearerToken, user, value)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	tok := resp.BearerToken
	auths, err := rn.ent.Authorizations(t.Context(), authority.ListOptions{})
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations: %v %v", auths, err)
	}
	id := auths[0].ID
	m, err := rn.ent.Mission(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	d, err := rn.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if d.MissionID != m.ID || d.MissionVersion != m.Version || d.MissionState != pass.MissionActive {
		t.Fatalf("delegation mission %s v%d %s, want %s v%d active", d.MissionID, d.MissionVersion, d.MissionState, m.ID, m.Version)
	}
	// The redemption's audit record carries the history head the Authority
	// reported at validation: the redemption was the last entry then.
	recs := rn.logs.records("agentpass redemption")
	if last := recs[len(recs)-1]; last["history_head"] != m.History.Head {
		t.Errorf("redemption audit history_head = %v, want the mission's head %s", last["history_head"], m.History.Head)
	}
	rn.clock.Advance(31 * time.Second)
	rn.wantStatus(t, "checked", "/api/tickets", tok, http.StatusOK, "")

	if _, err := rn.ent.Suspend(t.Context(), id, "admin@real.test", "review"); err != nil {
		t.Fatalf("Suspend: %v", err)
	}
	rn.clock.Advance(31 * time.Second)
	r = rn.get("/api/tickets", bearer(tok))
	d, err = rn.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	// The real Authority sends the suspended-404 body to a Service that
	// speaks the mission extension: the delegation is held, not dropped.
	if r.status != http.StatusForbidden || r.errorCode() != pass.CodeMissionSuspended {
		t.Fatalf("after Suspend: %d %s, want 403 mission_suspended", r.status, r.body)
	}
	if d.Invalidated || d.MissionState != pass.MissionSuspended {
		t.Fatalf("403 mission_suspended but the delegation is %+v", d)
	}
	m, err = rn.ent.Resume(t.Context(), id, "admin@real.test")
	if err != nil {
		t.Fatalf("Resume: %v", err)
	}
	rn.clock.Advance(31 * time.Second)
	rn.wantStatus(t, "resumed", "/api/tickets", tok, http.StatusOK, "")
	rn.wantMission(t, id, pass.MissionActive, m.Version)
}
