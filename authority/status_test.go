package authority_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// TestHumanFlow: the default Manual approver leaves the request pending,
// notifies OnPending, and a person's Decide (with a narrowed scope) is what
// the Harness sees at its next poll; reading the approved status needs the
// holder proof (G-2). A-ISS-6, A-ISS-11, A-STAT-1, A-STAT-3, A-STAT-4,
// G-34.
func TestHumanFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.newHarness()
	r, st := e.issue(h.req)
	if r.status != http.StatusAccepted || st == nil || st.Status != pass.StatusPending {
		t.Fatalf("issuance: %d %s", r.status, r.body)
	}
	validateSchema(t, "issuance-status.schema.json", "", r.body)
	if st.PollAfterMS == nil || *st.PollAfterMS != 2000 || st.AgentPass != nil {
		t.Errorf("pending body: %s", r.body)
	}
	if st.Links == nil || st.Links.Self != e.auth.StatusURL(st.ID) || st.Links.Approval != authID+"/approve/"+st.Mission.ID {
		t.Errorf("links: %+v", st.Links)
	}
	// Request ids carry at least 128 random bits.
	if len(strings.TrimPrefix(st.ID, "req_")) < 22 {
		t.Errorf("short request id %q", st.ID)
	}
	e.mu.Lock()
	if len(e.pended) != 1 || e.pended[0].MissionID != st.Mission.ID || e.pended[0].User != userEmail {
		t.Errorf("OnPending: %+v", e.pended)
	}
	e.mu.Unlock()

	pr, p := e.poll(st.ID, "")
	if p == nil || p.Status != pass.StatusPending || p.PollAfterMS == nil {
		t.Fatalf("poll pending: %d %s", pr.status, pr.body)
	}
	if cc := pr.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("status Cache-Control %q", cc)
	}
	list, err := e.auth.Pending(ctx, authority.ListOptions{})
	if err != nil || len(list) != 1 || list[0].MissionID != st.Mission.ID {
		t.Fatalf("Pending: %v %+v", err, list)
	}

	// Deciding something not available is refused; a narrowed scope works.
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"payroll:read"}}); !errors.Is(err, authority.ErrScopeNotAvailable) {
		t.Fatalf("Decide unavailable scope: %v", err)
	}
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Pending}); !errors.Is(err, authority.ErrInvalidDecision) {
		t.Fatalf("Decide pending: %v", err)
	}
	e.clock.Advance(30 * time.Second)
	got, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}, DecidedBy: "human:boss@corp.test", Reason: "ok for triage"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Decision.DecidedBy != "human:boss@corp.test" || !got.Decision.DecidedAt.Equal(e.clock.Now()) {
		t.Errorf("evidence: %+v", got.Decision)
	}
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Deny}); !errors.Is(err, authority.ErrNotPending) {
		t.Fatalf("second Decide: %v", err)
	}

	// G-2: an approved body needs the holder proof.
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, nil), 401, pass.CodeProofRequired)
	other, _ := dpop.GenerateKey("ES256")
	bad, _ := other.HarnessProof(dpop.ProofParams{HarnessID: harnessID, Audience: authID, Method: "GET", URL: e.auth.StatusURL(st.ID), AgentPass: st.ID, Now: e.clock.Now()})
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, http.Header{pass.ProofHeader: {bad}}), 401, pass.CodeProofRequired)
	wrongID, _ := h.key.HarnessProof(dpop.ProofParams{HarnessID: harnessID, Audience: authID, Method: "GET", URL: e.auth.StatusURL(st.ID), AgentPass: "req_other", Now: e.clock.Now()})
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, http.Header{pass.ProofHeader: {wrongID}}), 401, pass.CodeProofRequired)

	proof := h.statusProof(e, st.ID)
	ar, a := e.poll(st.ID, proof)
	if a == nil || a.Status != pass.StatusApproved || a.AgentPass == nil || a.AgentPass.Value == "" {
		t.Fatalf("approved poll: %d %s", ar.status, ar.body)
	}
	validateSchema(t, "issuance-status.schema.json", "", ar.body)
	// A replayed proof is refused.
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, http.Header{pass.ProofHeader: {proof}}), 401, pass.CodeProofRequired)
	// A fresh proof yields a fresh pass; the previous one stops working.
	_, a2 := e.poll(st.ID, h.statusProof(e, st.ID))
	if a2 == nil || a2.AgentPass.Value == a.AgentPass.Value {
		t.Fatalf("second approved poll: %+v", a2)
	}
	wantError(t, toResp(e.validate(e.svc, a.AgentPass.Value)), 404, pass.CodeAgentPassInvalid)
	_, v := e.validate(e.svc, a2.AgentPass.Value)
	if v == nil {
		t.Fatal("validate of the current pass failed")
	}
	if d := cmp.Diff(pass.Scope{"tickets:read"}, v.Scope); d != "" {
		t.Errorf("granted scope (-want +got):\n%s", d)
	}
	wantError(t, toResp(e.validate(e.svc, a2.AgentPass.Value)), 409, pass.CodeAgentPassConsumed)
	// G-34: once redeemed, the status is gone.
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, http.Header{pass.ProofHeader: {h.statusProof(e, st.ID)}}), 410, pass.CodeRequestGone)
}

func toResp[T any](r response, _ T) response { return r }

// TestPlainHarnessStatus: a v0.1 harness without cnf reads its approved
// status without any proof.
func TestPlainHarnessStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, st := e.issue(e.plainHarness().req)
	if st == nil || st.Status != pass.StatusPending {
		t.Fatalf("issuance: %+v", st)
	}
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve}); err != nil {
		t.Fatal(err)
	}
	r, a := e.poll(st.ID, "")
	if a == nil || a.Status != pass.StatusApproved || a.AgentPass == nil {
		t.Fatalf("approved poll without cnf: %d %s", r.status, r.body)
	}
	if _, v := e.validate(e.svc, a.AgentPass.Value); v == nil || len(v.Scope) != 3 {
		t.Fatalf("validate: %+v", v)
	}
}

// TestStatusLifecycle: A-STAT-2, A-STAT-5, G-20 — unknown ids are 404, a
// request nobody decides expires and stays expired, a pass not redeemed in
// time is gone (410), and a proposal from a rule is what a person's plain
// approval grants.
func TestStatusLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authority.Config) {
		c.Approver = authority.Rules(authority.Rule{Name: "propose-read", Outcome: authority.Pending, Grant: authority.ScopesWithSuffix(":read")})
	})
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL("req_unknown"), nil, nil), 404, pass.CodeRequestUnknown)
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(strings.Repeat("x", 200)), nil, nil), 404, pass.CodeRequestUnknown)

	_, expiring := e.issue(e.plainHarness().req)
	_, proposed := e.issue(e.plainHarness().req)
	req, err := e.auth.Request(ctx, proposed.Mission.ID)
	if err != nil || req.ProposedBy != "rule:propose-read" {
		t.Fatalf("proposal: %+v %v", req, err)
	}
	got, err := e.auth.Decide(ctx, proposed.Mission.ID, authority.Decision{Outcome: authority.Approve})
	if err != nil || !got.Decision.Scope.Equal(pass.Scope{"tickets:read"}) {
		t.Fatalf("approve proposal: %+v %v", got, err)
	}
	e.clock.Advance((10 * time.Minute))
	for range 3 {
		_, p := e.poll(expiring.ID, "")
		if p == nil || p.Status != pass.StatusExpired {
			t.Fatalf("expired poll: %+v", p)
		}
	}
	if _, err := e.auth.Decide(ctx, expiring.Mission.ID, authority.Decision{Outcome: authority.Approve}); !errors.Is(err, authority.ErrExpired) {
		t.Fatalf("Decide after expiry: %v", err)
	}
	if p, _ := e.auth.Pending(ctx, authority.ListOptions{}); len(p) != 0 {
		t.Errorf("expired request listed as pending")
	}
	// The approved pass (5 min) has expired too.
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(proposed.ID), nil, nil), 410, pass.CodeRequestGone)
}
