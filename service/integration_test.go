package service_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// realNet is a Service with real Authorities from package authority: an
// Enterprise Authority for real.test, a Federated Authority and the
// Service's own Authority, each approving automatically.
type realNet struct {
	*env
	ent, fed, sa *authority.Authority
}

func newRealNet(t *testing.T, mutate func(*service.Config)) *realNet {
	t.Helper()
	e := newNet(t)
	rn := &realNet{env: e}
	rn.ent = e.realAuthority("idp.real.test", pass.TrustEnterprise)
	rn.fed = e.realAuthority("fedreal.test", pass.TrustFederated)
	rn.sa = e.realAuthority("sareal.app.test", pass.TrustService)
	e.net.PublishEnterprise("real.test", rn.ent.ConfigurationURL())
	e.start(func(c *service.Config) {
		c.ServiceAuthority = &pass.AuthorityRef{Authority: rn.sa.Identifier(), AuthorityConfigurationURL: rn.sa.ConfigurationURL()}
		c.TrustedFederated = []pass.AuthorityRef{{Authority: rn.fed.Identifier(), AuthorityConfigurationURL: rn.fed.ConfigurationURL()}}
		if mutate != nil {
			mutate(c)
		}
	})
	return rn
}

func (e *env) realAuthority(host string, mode pass.TrustMode) *authority.Authority {
	e.t.Helper()
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := authority.New(authority.Config{
		Identifier: "https://" + host,
		TrustMode:  mode,
		Keys:       keys,
		Approver: authority.ApproverFunc(func(ctx context.Context, r *authority.Request) (authority.Decision, error) {
			return authority.Decision{Outcome: authority.Approve, DecidedBy: "test"}, nil
		}),
		Discovery:                    e.authorityDiscovery(),
		HTTPClient:                   e.client,
		InsecureAllowPrivateNetworks: true,
		Now:                          e.clock.Now,
	})
	if err != nil {
		e.t.Fatalf("authority.New: %v", err)
	}
	e.net.Serve(host, a)
	return a
}

// acquire runs issuance at a like a Harness: POST the request, then read the
// approved status with the holder proof.
func (e *env) acquire(t testing.TB, a *authority.Authority, h *harness, typ pass.PassType, user, dest string) string {
	t.Helper()
	cfg := a.Configuration()
	in := pass.IssuanceRequest{
		Type:    typ,
		Service: pass.ServiceRef{Origin: appURL},
		User:    pass.User{Email: user},
		Harness: pass.HarnessInfo{ID: h.id, Cnf: h.cnf()},
		Task:    pass.Task{ID: "task-" + randomID(), Description: "triage the support queue"},
	}
	if dest != "" {
		in.Intent = &pass.Intent{DestinationURL: dest}
	}
	var st pass.IssuanceStatus
	if _, err := httpx.Do(t.Context(), e.client, httpx.Call{URL: cfg.Endpoints.Issuance, Body: in}, &st); err != nil {
		t.Fatalf("issuance: %v", err)
	}
	if st.AgentPass != nil && st.AgentPass.Value != "" {
		return st.AgentPass.Value
	}
	if st.Status != pass.StatusApproved {
		t.Fatalf("issuance status %s (%s)", st.Status, st.Reason)
	}
	statusURL := a.StatusURL(st.ID)
	proof, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: h.id, Audience: a.Identifier(), Method: http.MethodGet, URL: statusURL, AgentPass: st.ID, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpx.Do(t.Context(), e.client, httpx.Call{URL: statusURL, Header: http.Header{pass.ProofHeader: {proof}}}, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.AgentPass == nil {
		t.Fatalf("approved status without agentpass: %+v", st)
	}
	return st.AgentPass.Value
}

func (e *env) redeemReal(t *testing.T, a *authority.Authority, h *harness, typ pass.PassType, user, value string, methods ...string) *response {
	t.Helper()
	req := pass.RedemptionRequest{
		AgentPass: pass.AgentPass{Type: typ, Value: value}, Authority: a.Identifier(), User: pass.User{Email: user},
		HarnessProof: h.proof(t, e, e.endpoint(typ), value), InitializationMethods: methods,
	}
	return e.redeem(typ, req, nil)
}

// The whole flow against real Authorities: the Authority discovers the
// Service and calls its available-scopes endpoint with a signed assertion
// (S-SCOPE-*), the Harness redeems with a holder proof, and the
// delegation is used, narrowed, revoked and closed at the Authority.
func TestWithRealAuthorities(t *testing.T) {
	rn := newRealNet(t, func(c *service.Config) {
		c.UserScopes = func(context.Context, string) ([]string, error) { return []string{"tickets:read", "tickets:write"}, nil }
	})
	h := newHarness(t)
	const user = "alex@real.test"

	t.Run("enterprise bearer, narrowed then revoked", func(t *testing.T) {
		defer rn.bind(t)()
		value := rn.acquire(t, rn.ent, h, pass.BearerToken, user, "")
		r := rn.redeemReal(t, rn.ent, h, pass.BearerToken, user, value)
		if r.status != http.StatusOK {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		var resp pass.BearerTokenResponse
		r.decode(t, &resp)
		// The Authority approved what the Service offered for this user.
		if diff := cmp.Diff(pass.Scope{"tickets:read", "tickets:write"}, resp.Scope); diff != "" {
			t.Errorf("granted (-want +got):\n%s", diff)
		}
		// Redeeming the same pass again: the Authority refuses (409).
		if r := rn.redeemReal(t, rn.ent, h, pass.BearerToken, user, value); r.status != http.StatusConflict {
			t.Errorf("second redemption: %d %s, want 409", r.status, r.body)
		}
		tok := resp.BearerToken
		if r := rn.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
			t.Fatalf("API: %d %s", r.status, r.body)
		}
		auths, err := rn.ent.Authorizations(t.Context(), authority.ListOptions{})
		if err != nil || len(auths) == 0 {
			t.Fatalf("authorizations: %v %v", auths, err)
		}
		id := auths[0].ID
		if auths[0].Service != appURL {
			t.Errorf("authorization service = %s", auths[0].Service)
		}
		if _, err := rn.ent.NarrowScope(t.Context(), id, "admin@real.test", pass.Scope{"tickets:write"}); err != nil {
			t.Fatalf("NarrowScope: %v", err)
		}
		rn.clock.Advance(31 * time.Second)
		if r := rn.get("/api/tickets", bearer(tok)); r.status != http.StatusForbidden {
			t.Errorf("after narrowing: %d %s, want 403", r.status, r.body)
		}
		if _, err := rn.ent.Revoke(t.Context(), id, "admin@real.test", "left the company"); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if r := rn.get("/", bearer(tok)); r.status != http.StatusOK {
			t.Errorf("revocation took effect before the check interval: %d", r.status)
		}
		rn.clock.Advance(31 * time.Second)
		if r := rn.get("/", bearer(tok)); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
			t.Errorf("after revocation and the interval: %d %s, want 401 delegation_revoked", r.status, r.body)
		}
	})

	t.Run("service authority browser session, then closed", func(t *testing.T) {
		defer rn.bind(t)()
		const free = "sam@free.test"
		value := rn.acquire(t, rn.sa, h, pass.BrowserSession, free, appURL+"/tickets")
		r := rn.redeemReal(t, rn.sa, h, pass.BrowserSession, free, value, "POST")
		if r.status != http.StatusOK {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		var resp pass.BrowserSessionResponse
		r.decode(t, &resp)
		form := "initialization_token=" + resp.InitializationRequest.FormFields[service.InitTokenField]
		g := rn.do(http.MethodPost, resp.InitializationURL, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form))
		if g.status != http.StatusSeeOther || g.header.Get("Location") != appURL+"/tickets" {
			t.Fatalf("init: %d %q %s", g.status, g.header.Get("Location"), g.body)
		}
		c := sessionCookie(t, g)
		cookie := http.Header{"Cookie": {c.Name + "=" + c.Value}}
		api := rn.get("/", cookie)
		if api.status != http.StatusOK {
			t.Fatalf("session: %d %s", api.status, api.body)
		}
		auths, _ := rn.sa.Authorizations(t.Context(), authority.ListOptions{})
		if len(auths) != 1 {
			t.Fatalf("%d authorizations at the Service Authority", len(auths))
		}
		if err := rn.svc.CloseAuthorization(t.Context(), auths[0].ID, pass.CloseComplete, "task done"); err != nil {
			t.Fatalf("Close: %v", err)
		}
		az, err := rn.sa.Authorization(t.Context(), auths[0].ID)
		if err != nil || az.StateAt(rn.clock.Now()) != pass.DelegationCompleted {
			t.Errorf("authorization after Close: %+v %v, want completed", az, err)
		}
		if r := rn.get("/", cookie); r.status != http.StatusUnauthorized {
			t.Errorf("session after Close: %d, want 401", r.status)
		}
	})

	t.Run("federated for a domain without an Enterprise Authority", func(t *testing.T) {
		defer rn.bind(t)()
		const free = "kim@free.test"
		value := rn.acquire(t, rn.fed, h, pass.BearerToken, free, "")
		if r := rn.redeemReal(t, rn.fed, h, pass.BearerToken, free, value); r.status != http.StatusOK {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
	})

	t.Run("federated Authority for an enterprise user", func(t *testing.T) { // S-SCOPE-4, S-RED-7, G-9
		defer rn.bind(t)()
		// The Service refuses the Federated Authority's available-scopes
		// call for a user whose domain has an Enterprise Authority, so no
		// pass is ever issued.
		in := pass.IssuanceRequest{
			Type: pass.BearerToken, Service: pass.ServiceRef{Origin: appURL}, User: pass.User{Email: user},
			Harness: pass.HarnessInfo{ID: h.id, Cnf: h.cnf()}, Task: pass.Task{ID: "t", Description: "d"},
		}
		var st pass.IssuanceStatus
		_, err := httpx.Do(t.Context(), rn.client, httpx.Call{URL: rn.fed.Configuration().Endpoints.Issuance, Body: in}, &st)
		var pe *pass.PeerError
		if !errors.As(err, &pe) || pe.Status != http.StatusForbidden {
			t.Errorf("issuance at a federated Authority for an enterprise user: %v, want 403", err)
		}
		if recs := rn.logs.records("agentpass available scopes"); len(recs) == 0 || recs[len(recs)-1]["code"] != string(pass.CodePrecedenceViolation) {
			t.Errorf("no precedence_violation in the Service's audit: %v", recs)
		}
	})

	t.Run("holder proof from another key", func(t *testing.T) { // HB-7
		defer rn.bind(t)()
		value := rn.acquire(t, rn.ent, h, pass.BearerToken, user, "")
		thief := newHarness(t)
		thief.id = h.id
		r := rn.redeemReal(t, rn.ent, thief, pass.BearerToken, user, value)
		if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidHarnessProof {
			t.Errorf("redeem: %d %s, want 401 invalid_harness_proof", r.status, r.body)
		}
	})

	t.Run("Authority down", func(t *testing.T) { // S-AUTHZ-7
		defer rn.bind(t)()
		value := rn.acquire(t, rn.ent, h, pass.BearerToken, user, "")
		r := rn.redeemReal(t, rn.ent, h, pass.BearerToken, user, value)
		var resp pass.BearerTokenResponse
		r.decode(t, &resp)
		rn.clock.Advance(31 * time.Second)
		rn.net.Stop("idp.real.test")
		if r := rn.get("/", bearer(resp.BearerToken)); r.status != http.StatusServiceUnavailable {
			t.Errorf("Authority down: %d, want 503", r.status)
		}
	})
}
