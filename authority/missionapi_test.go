package authority_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// missionProof is a holder proof by key for a mission endpoint and
// mission id, issued at the test clock (shifted by skew).
func (e *env) missionProof(key *dpop.Key, iss, path, missionID string, skew time.Duration) string {
	e.t.Helper()
	p, err := key.HarnessProof(dpop.ProofParams{HarnessID: iss, Audience: authID, Method: http.MethodPost,
		URL: e.base + path, AgentPass: missionID, Now: e.clock.Now().Add(skew)})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) postProof(path string, body any, proof string) response {
	e.t.Helper()
	h := http.Header{}
	if proof != "" {
		h.Set(pass.ProofHeader, proof)
	}
	return e.do(http.MethodPost, e.base+path, body, h)
}

// readAsHarness reads mission id with a fresh proof by h's key.
func (e *env) readAsHarness(h *harness, id string) (response, *pass.MissionRecord) {
	e.t.Helper()
	r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: id},
		e.missionProof(h.key, h.req.Harness.ID, "/missions/read", id, 0))
	return r, decodeMission(e.t, r)
}

func (e *env) readAsService(svc *deploy.TestService, authzID string) (response, *pass.MissionRecord) {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/missions/read", authID, pass.MissionReadRequest{AuthorizationID: authzID})
	if err != nil {
		e.t.Fatal(err)
	}
	r := response{status: status, body: body}
	return r, decodeMission(e.t, r)
}

func (e *env) complete(h *harness, id, outcome, reason string) (response, *pass.MissionRecord) {
	e.t.Helper()
	r := e.postProof("/missions/complete", pass.MissionCompleteRequest{MissionID: id, Outcome: outcome, Reason: reason},
		e.missionProof(h.key, h.req.Harness.ID, "/missions/complete", id, 0))
	return r, decodeMission(e.t, r)
}

func (e *env) report(svc *deploy.TestService, authzID string, obs ...pass.Observation) response {
	e.t.Helper()
	status, body, err := svc.Post(e.net.Client(), e.base+"/missions/report", authID,
		pass.MissionReportRequest{AuthorizationID: authzID, Observations: obs})
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: status, body: body}
}

func decodeMission(t testing.TB, r response) *pass.MissionRecord {
	t.Helper()
	if r.status != http.StatusOK {
		return nil
	}
	var m pass.MissionResponse
	if err := pass.Decode(r.body, &m); err != nil {
		t.Fatalf("mission body %s: %v", r.body, err)
	}
	return &m.Mission
}

// redeemed issues h's request approved, validates its pass as svc and
// returns the mission id and the authorization id.
func (e *env) redeemed(h *harness, svc *deploy.TestService) (string, string) {
	e.t.Helper()
	value, st := e.approvedPass(h)
	r, v := e.validate(svc, value)
	if v == nil {
		e.t.Fatalf("validate: %d %s", r.status, r.body)
	}
	return st.Mission.ID, v.AuthorizationID
}

func historyTypes(m *pass.MissionRecord) []string {
	var out []string
	for _, ev := range m.History.Events {
		out = append(out, ev.Type)
	}
	return out
}

// The configuration advertises the mission endpoints under the Authority's
// base URL, and still validates against the v0.1 schema (X1).
func TestMissionExtensionAdvertised(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do(http.MethodGet, e.auth.ConfigurationURL(), nil, nil)
	validateSchema(t, "authority-configuration.schema.json", "", r.body)
	var cfg pass.AuthorityConfiguration
	if err := pass.Decode(r.body, &cfg); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"mission": "/missions/read", "mission_complete": "/missions/complete",
		"mission_report": "/missions/report"} {
		if got := cfg.Extensions.Endpoint(pass.ExtMission, name); got != e.base+path {
			t.Errorf("endpoint %s = %q, want %q", name, got, e.base+path)
		}
	}
}

// R4: the mission record read by Services.
func TestMissionReadByService(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)

	t.Run("redeeming Service gets the Service view", func(t *testing.T) {
		r, m := e.readAsService(e.svc, azID)
		if m == nil {
			t.Fatalf("read: %d %s", r.status, r.body)
		}
		if m.ID != mid || m.State != pass.MissionActive || m.Service != e.svc.Origin {
			t.Errorf("view: id %s state %s service %s", m.ID, m.State, m.Service)
		}
		if len(m.History.Events) != 0 || m.History.Count < 3 || m.History.Head == "" {
			t.Errorf("Service view history: %+v, want head and count without events", m.History)
		}
		if m.Approval == nil || m.Approval.DecidedBy != "" || m.Approval.Method != pass.ApprovalPolicy {
			t.Errorf("Service view approval: %+v", m.Approval)
		}
		if len(m.Authorizations) != 1 || m.Authorizations[0].ID != azID {
			t.Errorf("Service view authorizations: %+v", m.Authorizations)
		}
	})
	unknown, _ := e.readAsService(e.svc, "authz_unknown")
	wantError(t, unknown, http.StatusNotFound, pass.CodeMissionUnknown)
	t.Run("another Service gets the unknown-id 404", func(t *testing.T) {
		r, _ := e.readAsService(other, azID)
		if r.status != http.StatusNotFound || !bytes.Equal(r.body, unknown.body) {
			t.Errorf("foreign read: %d %s, want the bytes of an unknown id: %s", r.status, r.body, unknown.body)
		}
	})
	t.Run("no assertion", func(t *testing.T) {
		r := e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{AuthorizationID: azID}, nil)
		wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidAssertion)
	})
	t.Run("replayed assertion", func(t *testing.T) {
		hdr := http.Header{"Authorization": {"Bearer " + e.svc.Assertion(authID)}}
		first := e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{AuthorizationID: azID}, hdr)
		if first.status != http.StatusOK {
			t.Fatalf("first use: %d %s", first.status, first.body)
		}
		if cc := first.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", cc)
		}
		r := e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{AuthorizationID: azID}, hdr)
		wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidAssertion)
	})
	t.Run("both ids", func(t *testing.T) {
		r := e.do(http.MethodPost, e.base+"/missions/read", pass.MissionReadRequest{AuthorizationID: azID, MissionID: mid}, nil)
		wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)
	})
}

// R5: the mission record read by its Harness with a holder proof.
func TestMissionReadByHarness(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	h := e.newHarness()
	mid, _ := e.redeemed(h, e.svc)

	r, m := e.readAsHarness(h, mid)
	if m == nil {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if m.ID != mid || m.Harness.JKT == "" || len(m.History.Events) != int(m.History.Count) || m.History.Count < 3 {
		t.Errorf("Harness view: id %s jkt %q history %d of %d", m.ID, m.Harness.JKT, len(m.History.Events), m.History.Count)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	unknownID := "msn_unknown0000000000000000"
	unknown := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: unknownID},
		e.missionProof(h.key, harnessID, "/missions/read", unknownID, 0))
	wantError(t, unknown, http.StatusNotFound, pass.CodeMissionUnknown)

	t.Run("another key", func(t *testing.T) {
		k, err := dpop.GenerateKey("ES256")
		if err != nil {
			t.Fatal(err)
		}
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, e.missionProof(k, harnessID, "/missions/read", mid, 0))
		if r.status != http.StatusNotFound || !bytes.Equal(r.body, unknown.body) {
			t.Errorf("wrong key: %d %s, want the bytes of an unknown id: %s", r.status, r.body, unknown.body)
		}
	})
	t.Run("expired proof", func(t *testing.T) {
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, e.missionProof(h.key, harnessID, "/missions/read", mid, -10*time.Minute))
		wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)
	})
	t.Run("replayed jti", func(t *testing.T) {
		p := e.missionProof(h.key, harnessID, "/missions/read", mid, 0)
		if r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, p); r.status != http.StatusOK {
			t.Fatalf("first use: %d %s", r.status, r.body)
		}
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, p)
		wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)
	})
	t.Run("proof for another endpoint", func(t *testing.T) {
		p := e.missionProof(h.key, harnessID, "/missions/complete", mid, 0)
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, p)
		wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)
	})
	t.Run("proof for another mission", func(t *testing.T) {
		p := e.missionProof(h.key, harnessID, "/missions/read", unknownID, 0)
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, p)
		wantError(t, r, http.StatusUnauthorized, pass.CodeProofRequired)
	})
	t.Run("no proof", func(t *testing.T) {
		wantError(t, e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid}, ""), http.StatusUnauthorized, pass.CodeProofRequired)
	})
	t.Run("unbound mission has no Harness calls", func(t *testing.T) {
		p := e.plainHarness()
		_, st := e.approvedPass(p)
		r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: st.Mission.ID},
			e.missionProof(h.key, harnessID, "/missions/read", st.Mission.ID, 0))
		if r.status != http.StatusNotFound || !bytes.Equal(r.body, unknown.body) {
			t.Errorf("unbound mission: %d %s", r.status, r.body)
		}
	})
}

// R6 (without children): the Harness completes its mission.
func TestMissionComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	if r, _ := e.check(e.svc, azID); r.status != http.StatusOK {
		t.Fatalf("check before: %d %s", r.status, r.body)
	}
	r, m := e.complete(h, mid, pass.OutcomeSucceeded, "all duplicates answered")
	if m == nil {
		t.Fatalf("complete: %d %s", r.status, r.body)
	}
	if m.State != pass.MissionCompleted || m.Ended == nil || m.Ended.Cause != pass.CauseHarness || m.Ended.Reason != "all duplicates answered" {
		t.Errorf("completed view: state %s ended %+v", m.State, m.Ended)
	}
	if types := historyTypes(m); types[len(types)-1] != "completed" {
		t.Errorf("history %v, want it to end with completed", types)
	}
	// The next API call's check is refused.
	cr, _ := e.check(e.svc, azID)
	wantError(t, cr, http.StatusNotFound, pass.CodeAuthorizationUnknown)

	again, m2 := e.complete(h, mid, pass.OutcomeSucceeded, "all duplicates answered")
	if m2 == nil || m2.Version != m.Version || !bytes.Equal(again.body, r.body) {
		t.Errorf("second complete: %d, version %v, want 200 with the same body (version %d)", again.status, m2, m.Version)
	}
	if err := e.auth.VerifyHistory(ctx, mid); err != nil {
		t.Errorf("VerifyHistory: %v", err)
	}

	t.Run("after revoke", func(t *testing.T) {
		h := e.newHarness()
		mid, _ := e.redeemed(h, e.svc)
		if _, err := e.auth.Revoke(ctx, mid, "human:lee", "stop"); err != nil {
			t.Fatal(err)
		}
		r, _ := e.complete(h, mid, pass.OutcomeSucceeded, "")
		wantError(t, r, http.StatusConflict, pass.CodeMissionTerminal)
	})
	t.Run("pending abandoned", func(t *testing.T) {
		e := newEnv(t)
		h := e.newHarness()
		_, st := e.issue(h.req)
		if st == nil || st.Status != pass.StatusPending {
			t.Fatalf("issuance: %+v", st)
		}
		r, _ := e.complete(h, st.Mission.ID, pass.OutcomeSucceeded, "")
		wantError(t, r, http.StatusConflict, pass.CodeMissionNotActive)
		r, m := e.complete(h, st.Mission.ID, pass.OutcomeAbandoned, "the user closed the session")
		if m == nil {
			t.Fatalf("abandon: %d %s", r.status, r.body)
		}
		if m.State != pass.MissionRevoked || m.Ended == nil || m.Ended.Cause != pass.CauseCanceled || m.Version != 2 {
			t.Errorf("abandoned: state %s ended %+v version %d", m.State, m.Ended, m.Version)
		}
		pr, ps := e.poll(st.ID, "")
		if ps == nil || ps.Status != pass.StatusCanceled {
			t.Errorf("status after abandon: %d %s", pr.status, pr.body)
		}
		validateSchema(t, "issuance-status.schema.json", "", pr.body)
	})
	t.Run("unknown outcome", func(t *testing.T) {
		r := e.postProof("/missions/complete", map[string]string{"mission_id": mid, "outcome": "done"},
			e.missionProof(h.key, harnessID, "/missions/complete", mid, 0))
		wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)
	})
}

// R9 (Authority part): five observations, OnObservation suspends at the
// fifth; the redeeming Service, which advertises the mission extension,
// then gets the suspended-404 body, and a Service that does not gets the
// plain 404.
func TestMissionReportSuspends(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	e := newEnv(t, approveAll, func(c *authority.Config) {
		c.OnObservation = func(_ context.Context, m *pass.MissionRecord, o pass.Observation) authority.ObservationAction {
			if calls.Add(1) == 5 {
				return authority.ObserveSuspend
			}
			return authority.ObserveRecord
		}
	})
	ext, err := pass.Extensions{}.With(pass.ExtMission, pass.Extension{Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.SetExtensions(ext)
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	before, err := e.auth.Mission(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	at := e.clock.Now()
	obs := pass.Observation{Kind: pass.ObservationStageScopeExceeded, Scope: "tickets:write", Stage: "discover", Count: 3, FirstAt: at, LastAt: at}
	for i := range 5 {
		if r := e.report(e.svc, azID, obs); r.status != http.StatusNoContent {
			t.Fatalf("report %d: %d %s", i, r.status, r.body)
		}
		m, err := e.auth.Mission(ctx, mid)
		if err != nil {
			t.Fatal(err)
		}
		if want := pass.MissionActive; i < 4 && (m.State != want || m.Version != before.Version) {
			t.Errorf("after report %d: state %s version %d, want %s version %d", i, m.State, m.Version, want, before.Version)
		}
	}
	m, err := e.auth.Mission(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range m.History.Events {
		if ev.Type == "observation" {
			n++
			if ev.By != "service:"+e.svc.Origin || ev.Details["kind"] != pass.ObservationStageScopeExceeded {
				t.Errorf("observation entry %+v", ev)
			}
		}
	}
	if n != 5 || m.State != pass.MissionSuspended || m.Version != before.Version+1 {
		t.Errorf("after 5 reports: %d observation entries, state %s, version %d; want 5, suspended, %d", n, m.State, m.Version, before.Version+1)
	}
	if err := e.auth.VerifyHistory(ctx, mid); err != nil {
		t.Errorf("VerifyHistory: %v", err)
	}

	r, _ := e.check(e.svc, azID)
	if r.status != http.StatusNotFound {
		t.Fatalf("check of a suspended mission: %d %s", r.status, r.body)
	}
	validateSchema(t, "error-response.schema.json", "", r.body)
	var er pass.ErrorResponse
	if err := pass.Decode(r.body, &er); err != nil {
		t.Fatal(err)
	}
	if er.Error.Code != pass.CodeMissionSuspended || er.Mission == nil || er.Mission.ID != mid ||
		er.Mission.State != pass.MissionSuspended || er.Mission.Version != m.Version {
		t.Errorf("suspended-404 body %s", r.body)
	}
	// A report about a foreign authorization is the unknown 404.
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	wantError(t, e.report(other, azID, obs), http.StatusNotFound, pass.CodeMissionUnknown)

	t.Run("plain Service gets the v0.1 404", func(t *testing.T) {
		e := newEnv(t, approveAll)
		h := e.newHarness()
		mid, azID := e.redeemed(h, e.svc)
		if _, err := e.auth.Suspend(ctx, mid, "human:lee", "look"); err != nil {
			t.Fatal(err)
		}
		r, _ := e.check(e.svc, azID)
		wantError(t, r, http.StatusNotFound, pass.CodeAuthorizationUnknown)
		if bytes.Contains(r.body, []byte(`"mission"`)) {
			t.Errorf("plain Service's 404 carries the mission: %s", r.body)
		}
	})
}

// OnObservation's Revoke ends the mission; observations after the end are
// accepted and not recorded.
func TestMissionReportRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll, func(c *authority.Config) {
		c.OnObservation = func(context.Context, *pass.MissionRecord, pass.Observation) authority.ObservationAction {
			return authority.ObserveRevoke
		}
	})
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	at := e.clock.Now()
	obs := pass.Observation{Kind: pass.ObservationScopeDenied, Scope: "admin", Count: 1, FirstAt: at, LastAt: at}
	if r := e.report(e.svc, azID, obs, obs); r.status != http.StatusNoContent {
		t.Fatalf("report: %d %s", r.status, r.body)
	}
	m, err := e.auth.Mission(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	types := historyTypes(m)
	if m.State != pass.MissionRevoked || types[len(types)-2] != "observation" || types[len(types)-1] != "revoked" {
		t.Errorf("after a revoking observation: state %s history %v", m.State, types)
	}
}

// FuzzMissionHandlers posts arbitrary bodies to the mission endpoints,
// each with a valid Service assertion and a valid holder proof for the real
// mission: never a panic or a 5xx, every refusal a structured error, and
// garbage never changes the real mission.
func FuzzMissionHandlers(f *testing.F) {
	e := newEnv(f, approveAll, func(c *authority.Config) {
		c.RateLimits.Services, c.RateLimits.Missions = deploy.Unlimited(), deploy.Unlimited()
	})
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	before, err := e.auth.Mission(ctx, mid)
	if err != nil {
		f.Fatal(err)
	}
	paths := []string{"/missions/read", "/missions/complete", "/missions/report"}
	for i, seed := range []string{
		`{"authorization_id":"` + azID + `"}`, `{"mission_id":"msn_x"}`, `{}`, `null`, `[]`,
		`{"mission_id":"msn_x","outcome":"succeeded","reason":"r"}`, `{"mission_id":"msn_x","outcome":"abandoned"}`,
		`{"authorization_id":"` + azID + `","observations":[{"kind":"scope_denied","scope":"a","count":1,"first_at":"2026-01-01T00:00:00Z","last_at":"2026-01-01T00:00:00Z"}]}`,
		`{"authorization_id":"x","observations":[{"kind":"scope_denied","count":9007199254740993,"first_at":"2026-01-01T00:00:00Z","last_at":"2026-01-01T00:00:00Z"}]}`,
		`{"authorization_id":"a","mission_id":"msn_b"}`,
	} {
		f.Add(uint8(i), []byte(seed))
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		if path == "/missions/complete" && bytes.Contains(body, []byte(mid)) {
			return
		}
		req, _ := http.NewRequest(http.MethodPost, authID+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.svc.Assertion(authID))
		proof, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: harnessID, Audience: authID, Method: http.MethodPost,
			URL: authID + path, AgentPass: mid, Now: e.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(pass.ProofHeader, proof)
		rec := httptest.NewRecorder()
		e.auth.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var er pass.ErrorResponse
		if rec.Code >= 400 && pass.Decode(rec.Body.Bytes(), &er) != nil {
			t.Fatalf("unstructured error %d: %s", rec.Code, rec.Body)
		}
		m, err := e.auth.Request(ctx, mid)
		if err != nil || m.Version != before.Version || m.State != pass.MissionActive {
			t.Fatalf("garbage changed the mission: %v %+v", err, m)
		}
	})
}

// A long history reaches the Harness as its latest entries, within the
// body bound every peer reads; head and count still cover all of it.
func TestMissionHarnessViewBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	at := e.clock.Now()
	obs := make([]pass.Observation, pass.MaxObservations)
	for i := range obs {
		obs[i] = pass.Observation{Kind: pass.ObservationScopeDenied, Scope: "admin", Count: 1, FirstAt: at, LastAt: at}
	}
	for range 2 {
		if r := e.report(e.svc, azID, obs...); r.status != http.StatusNoContent {
			t.Fatalf("report: %d %s", r.status, r.body)
		}
	}
	r, m := e.readAsHarness(h, mid)
	if m == nil {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	n := len(m.History.Events)
	if n != 64 || m.History.Count < 100 || m.History.Events[n-1].Seq != m.History.Count || m.History.Events[n-1].Hash != m.History.Head {
		t.Errorf("Harness view: %d events, count %d, last seq %d", n, m.History.Count, m.History.Events[n-1].Seq)
	}
	if len(r.body) > pass.MaxDocumentSize {
		t.Errorf("Harness view is %d bytes", len(r.body))
	}
}

// An ancestor's holder key may read and complete a descendant (an
// orchestrator ends its sub-agents); completing the parent revokes the
// child in the same step, with cause cascade.
func TestMissionAncestorKey(t *testing.T) {
	t.Parallel()
	store := authority.NewMemoryStore()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.Store = store })
	h := e.newHarness()
	parent, _ := e.redeemed(h, e.svc)
	childKey, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	child := authoritytest.NewRequest("child-1")
	child.ParentMissionID, child.Cnf, child.HarnessID, child.Service = parent, childKey.PublicJSON(), harnessID+"/sub", e.svc.Origin
	child.CreatedAt, child.ExpiresAt = e.clock.Now(), e.clock.Now().Add(time.Minute)
	child.Status = pass.StatusApproved
	ev := authoritytest.Approval("tickets:read")
	ev.DecidedAt, ev.PassExpiresAt, ev.AuthorizationExpiresAt = e.clock.Now(), e.clock.Now().Add(time.Minute), e.clock.Now().Add(time.Hour)
	child.Decision = &ev
	if err := store.CreateRequest(ctx, child); err != nil {
		t.Fatal(err)
	}
	// The child's own key, and the parent's, read the child.
	r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: child.MissionID},
		e.missionProof(childKey, harnessID+"/sub", "/missions/read", child.MissionID, 0))
	if m := decodeMission(t, r); m == nil || m.ID != child.MissionID {
		t.Fatalf("child read with its own key: %d %s", r.status, r.body)
	}
	if r, m := e.readAsHarness(h, child.MissionID); m == nil || m.ID != child.MissionID || m.Delegation == nil || m.Delegation.Parent == nil {
		t.Fatalf("child read with the parent's key: %d %s", r.status, r.body)
	}
	// The child's key does not reach the parent.
	r = e.postProof("/missions/read", pass.MissionReadRequest{MissionID: parent},
		e.missionProof(childKey, harnessID+"/sub", "/missions/read", parent, 0))
	wantError(t, r, http.StatusNotFound, pass.CodeMissionUnknown)

	if r, m := e.complete(h, parent, pass.OutcomeSucceeded, "done"); m == nil || m.State != pass.MissionCompleted {
		t.Fatalf("complete parent: %d %s", r.status, r.body)
	}
	c, err := e.auth.Mission(ctx, child.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != pass.MissionRevoked || c.Ended == nil || c.Ended.Cause != pass.CauseCascade {
		t.Errorf("child after the parent completed: %s %+v", c.State, c.Ended)
	}
}
