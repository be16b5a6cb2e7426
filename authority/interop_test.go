package authority_test

import (
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// TestV01HarnessStatusWithoutProof: a Harness that sends harness.cnf but
// not the holder-binding extension (plain v0.1) reads its approved status
// without a holder proof, as v0.1 §5.3.2 says; the validation response does
// not mark its pass (G-2 as revised 2026-11-26, HB-1, issue #13).
func TestV01HarnessStatusWithoutProof(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := e.v01Harness()
	_, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusPending {
		t.Fatalf("issuance: %+v", st)
	}
	if _, err := e.auth.Decide(ctx, st.Mission.ID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"tickets:read"}}); err != nil {
		t.Fatal(err)
	}
	r, a := e.poll(st.ID, "")
	if a == nil || a.Status != pass.StatusApproved || a.AgentPass == nil || a.AgentPass.Value == "" {
		t.Fatalf("v0.1 poll of an approved status: %d %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("approved status Cache-Control %q, want no-store", cc)
	}
	_, v := e.validate(e.svc, a.AgentPass.Value)
	if v == nil || v.Cnf == nil || v.Harness == nil || v.Harness.Extensions.Has(pass.ExtHolderBinding) {
		t.Fatalf("validation of a v0.1 pass: %+v", v)
	}
}

// TestSignalledRequestHeldToTheProof: a request that lists the extension
// is never served without the holder proof (the downgrade attempt: a
// poller without AgentPass-Proof), a refused proof says which check failed,
// and the validation response marks the pass (G-2, HB-7, issue #13).
func TestSignalledRequestHeldToTheProof(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	h := e.newHarness()
	_, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusApproved || st.AgentPass == nil {
		t.Fatalf("issuance: %+v", st)
	}
	wantError(t, e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, nil), 401, pass.CodeProofRequired)
	stale, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: harnessID, Audience: authID, Method: "GET",
		URL: e.auth.StatusURL(st.ID), AgentPass: st.ID, Now: e.clock.Now().Add(-10 * 60e9)})
	if err != nil {
		t.Fatal(err)
	}
	r := e.do(http.MethodGet, e.auth.StatusURL(st.ID), nil, http.Header{pass.ProofHeader: {stale}})
	wantError(t, r, 401, pass.CodeProofRequired)
	var er pass.ErrorResponse
	if err := pass.Decode(r.body, &er); err != nil || er.Error.Message != "proof refused: expired" {
		t.Errorf("refusal message %q, want the fixed reason", er.Error.Message)
	}
	_, v := e.validate(e.svc, st.AgentPass.Value)
	if v == nil || v.Harness == nil || !v.Harness.Extensions.Has(pass.ExtHolderBinding) {
		t.Fatalf("validation does not mark the signalled pass: %+v", v)
	}
}

// TestRequireHardenedProofs: an Authority that requires the hardening
// refuses a v0.1 Harness at issuance, before anything is stored; it and
// every other Authority advertise the extension (issue #13 item 2).
func TestRequireHardenedProofs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll, func(c *authority.Config) { c.RequireHardenedProofs = true })
	if !e.auth.Configuration().Extensions.Has(pass.ExtHolderBinding) {
		t.Error("the configuration does not advertise holder-binding")
	}
	for name, req := range map[string]pass.IssuanceRequest{
		"v0.1 with cnf":    e.v01Harness().req,
		"v0.1 without cnf": e.plainHarness().req,
	} {
		t.Run(name, func(t *testing.T) {
			r, _ := e.issue(req)
			wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)
		})
	}
	if _, st := e.issue(e.newHarness().req); st == nil || st.Status != pass.StatusApproved {
		t.Fatalf("signalled request refused: %+v", st)
	}
	// The signal without a key to hold the pass to is malformed.
	bad := e.newHarness().req
	bad.Harness.Cnf, bad.Harness.Attestation, bad.Task.Attestation = nil, nil, nil
	r, _ := e.issue(bad)
	wantError(t, r, http.StatusBadRequest, pass.CodeInvalidRequest)
}
