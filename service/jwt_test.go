package service_test

import (
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/jwtcheck"
	"github.com/agentpass-go/agentpass/pass"
)

// proofEntries is the number of replay entries (harness proofs, DPoP
// proofs, assertions) the Service's replay cache holds.
func (e *env) proofEntries() int { return e.replay.Len() }

// TestReplayEntryOnlyAfterTrust: #14 finding 1 — a proof's jti is written
// to the replay store only after its signature and every other trust
// check passed, so self-signed proofs without a valid pass or token cannot
// fill the store.
func TestReplayEntryOnlyAfterTrust(t *testing.T) {
	t.Run("harness proof with a bad signature", func(t *testing.T) {
		e := newEnv(t, nil)
		h, forger := newHarness(t), newHarness(t)
		vr := validation(corpUser, pass.BearerToken)
		vr.Cnf = h.cnf()
		value := e.idp.issue(vr)
		req := redemption(e.idp, pass.BearerToken, corpUser, value)
		forger.id = h.id
		req.HarnessProof = forger.proof(t, e, e.endpoint(pass.BearerToken), value)
		r := e.redeem(pass.BearerToken, req, nil)
		if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidHarnessProof {
			t.Fatalf("forged proof: %d %s", r.status, r.body)
		}
		if n := e.proofEntries(); n != 0 {
			t.Errorf("%d replay entries after a forged proof, want 0", n)
		}
	})
	t.Run("DPoP proof with an unknown pass", func(t *testing.T) {
		e := newEnv(t, nil)
		k, _ := dpop.GenerateKey("")
		proof, _ := k.DPoPProof("POST", e.endpoint(pass.BearerToken), "", "", e.clock.Now())
		req := redemption(e.idp, pass.BearerToken, corpUser, "ap_unknown")
		r := e.redeem(pass.BearerToken, req, http.Header{"Dpop": {proof}})
		if r.status == http.StatusOK {
			t.Fatal("unknown pass redeemed")
		}
		if n := e.proofEntries(); n != 0 {
			t.Errorf("%d replay entries after a refused redemption, want 0", n)
		}
	})
	t.Run("DPoP proof with an unknown token", func(t *testing.T) {
		e := newEnv(t, nil)
		k, _ := dpop.GenerateKey("")
		const tok = "apt_unknown"
		proof, _ := k.DPoPProof("GET", appURL+"/api/tickets", tok, "", e.clock.Now())
		r := e.get("/api/tickets", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {proof}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("unknown DPoP token: %d %s", r.status, r.body)
		}
		if n := e.proofEntries(); n != 0 {
			t.Errorf("%d replay entries for an unknown token, want 0", n)
		}
	})
	t.Run("accepted redemption records both proofs", func(t *testing.T) {
		e := newEnv(t, nil)
		h := newHarness(t)
		vr := validation(corpUser, pass.BearerToken)
		vr.Cnf = h.cnf()
		value := e.idp.issue(vr)
		req := redemption(e.idp, pass.BearerToken, corpUser, value)
		req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
		proof, _ := h.key.DPoPProof("POST", e.endpoint(pass.BearerToken), "", "", e.clock.Now())
		if r := e.redeem(pass.BearerToken, req, http.Header{"Dpop": {proof}}); r.status != http.StatusOK {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		if n := e.proofEntries(); n != 2 {
			t.Errorf("%d replay entries, want 2 (harness proof and DPoP proof)", n)
		}
	})
}

// TestRedeemParsesProofsOnce: the harness proof is parsed once per
// redemption (Precheck's parse is completed once cnf is known) and the DPoP
// proof once. Not parallel: it counts parses process-wide.
func TestRedeemParsesProofsOnce(t *testing.T) {
	e := newEnv(t, nil)
	h := newHarness(t)
	vr := validation(corpUser, pass.BearerToken)
	vr.Cnf = h.cnf()
	vr.Harness = &pass.HarnessRef{ID: h.id}
	value := e.idp.issue(vr)
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
	proof, _ := h.key.DPoPProof("POST", e.endpoint(pass.BearerToken), "", "", e.clock.Now())
	hp, dp := jwtcheck.HarnessProof.Parses(), jwtcheck.DPoP.Parses()
	if r := e.redeem(pass.BearerToken, req, http.Header{"Dpop": {proof}}); r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	if n := jwtcheck.HarnessProof.Parses() - hp; n != 1 {
		t.Errorf("harness proof parsed %d times, want 1", n)
	}
	if n := jwtcheck.DPoP.Parses() - dp; n != 1 {
		t.Errorf("DPoP proof parsed %d times, want 1", n)
	}
}
