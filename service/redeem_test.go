package service_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

const corpUser = "alex@corp.test"

// minted reports the credentials and init tokens in the store.
func (e *env) minted() (creds, inits int) {
	_, c, i := e.store.Len()
	return c, i
}

// S-TOK-1, S-TOK-2, S-RED-2, S-RED-3, S-RED-4, S-RED-18, S-AUD-2, HB-9: a
// bearer redemption against an Enterprise Authority, then an API call.
func TestRedeemBearer(t *testing.T) {
	e := newEnv(t, nil)
	value := e.idp.issue(validation(corpUser, pass.BearerToken, "tickets:read", "tickets:write"))
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	validJSON(t, r.body, "service-redeem-bearer-token.schema.json", "response")
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	if len(resp.BearerToken) < 43 { // 256 bits in base64url
		t.Errorf("bearer_token %d characters, want at least 43", len(resp.BearerToken))
	}
	if diff := cmp.Diff(pass.Scope{"tickets:read", "tickets:write"}, resp.Scope); diff != "" {
		t.Errorf("scope (-want +got):\n%s", diff)
	}
	if resp.ExpiresIn == nil || *resp.ExpiresIn != 3600 || resp.TokenType != "Bearer" {
		t.Errorf("expires_in = %v, token_type = %q; want 3600, Bearer", resp.ExpiresIn, resp.TokenType)
	}
	// S-RED-2, S-RED-3: the assertion the Authority verified.
	c := e.idp.lastAssertion.Load().(*assertion.Claims)
	if c.Issuer != appURL || c.Audience != e.idp.origin || c.Expiry.Sub(c.IssuedAt) > 300*time.Second {
		t.Errorf("assertion claims = %+v", c)
	}
	// S-RED-4: the pass value is passed through exactly.
	if body := e.idp.lastValidateBody.Load().(string); !strings.Contains(body, `"value":"`+value+`"`) {
		t.Errorf("validate body %s does not carry the pass value", body)
	}
	api := e.get("/api/tickets", bearer(resp.BearerToken))
	if api.status != http.StatusOK {
		t.Fatalf("API call: %d %s", api.status, api.body)
	}
	var got map[string]any
	api.decode(t, &got)
	if got["user"] != corpUser || got["agent"] != "agent-7" || got["credential"] != "bearer" {
		t.Errorf("delegation in context = %v", got)
	}
	// S-AUD-2: the audit record names user, agent, task and authority; no
	// secret is ever logged.
	recs := e.logs.records("agentpass redemption")
	if len(recs) != 1 {
		t.Fatalf("%d redemption audit records, want 1:\n%s", len(recs), e.logs.String())
	}
	for k, v := range map[string]string{"user": corpUser, "agent": "agent-7", "task": "task-1", "authority": e.idp.origin, "outcome": "ok"} {
		if recs[0][k] != v {
			t.Errorf("audit %s = %v, want %s", k, recs[0][k], v)
		}
	}
	for _, secretValue := range []string{value, resp.BearerToken} {
		if strings.Contains(e.logs.String(), secretValue) {
			t.Errorf("a secret was logged")
		}
	}
}

// A redemption request for a holder-bound pass with a valid proof
// (HB-6, S-RED-12, S-RED-17).
func TestRedeemWithHarnessProof(t *testing.T) {
	e := newEnv(t, nil)
	h := newHarness(t)
	vr := validation(corpUser, pass.BearerToken)
	vr.Cnf = h.cnf()
	vr.Harness = &pass.HarnessRef{ID: h.id}
	value := e.idp.issue(vr)
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
	r := e.redeem(pass.BearerToken, req, nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	if recs := e.logs.records("agentpass redemption"); len(recs) != 1 || recs[0]["harness"] != h.id {
		t.Errorf("audit lacks the harness id: %v", recs)
	}
}

// rejection is one negative redemption case: set it up, then expect a
// status and code, the number of validate calls, and nothing minted
// (S-RED-13, S-RED-15, S-RED-16).
type rejection struct {
	name   string
	ids    string
	mutate func(*service.Config)
	// setup returns the request to send (and optional headers).
	setup        func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header)
	status       int
	code         pass.Code
	message      string // when set, the wire message (a proof refusal's fixed reason)
	validateCall bool   // whether the Authority's validate endpoint is reached
}

func TestRedeemRejections(t *testing.T) {
	bearerFrom := func(a func(e *env, s *scenarios) *fakeAuthority, user string, vr func(*pass.ValidationResponse)) func(*testing.T, *env, *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
		return func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			auth := a(e, s)
			resp := validation(user, pass.BearerToken, "tickets:read", "tickets:write")
			if vr != nil {
				vr(&resp)
			}
			return pass.BearerToken, redemption(auth, pass.BearerToken, user, auth.issue(resp)), nil
		}
	}
	idp := func(e *env, _ *scenarios) *fakeAuthority { return e.idp }
	fed := func(e *env, _ *scenarios) *fakeAuthority { return e.fed }
	sa := func(e *env, _ *scenarios) *fakeAuthority { return e.sa }
	raw := func(status int, body string) func(*testing.T, *env, *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
		return func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			e.idp.raw = func() (int, string) { return status, body }
			return pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, "some-pass"), nil
		}
	}
	holderBound := func(mod func(t *testing.T, e *env, h *harness, req *pass.RedemptionRequest)) func(*testing.T, *env, *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
		return func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			h := newHarness(t)
			vr := validation(corpUser, pass.BearerToken)
			vr.Cnf = h.cnf()
			vr.Harness = &pass.HarnessRef{ID: h.id, Extensions: pass.HarnessExtensions{pass.ExtHolderBinding}}
			value := e.idp.issue(vr)
			req := redemption(e.idp, pass.BearerToken, corpUser, value)
			req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
			mod(t, e, h, &req)
			return pass.BearerToken, req, nil
		}
	}
	proofWith := func(p func(e *env, h *harness, value string) dpop.ProofParams) func(t *testing.T, e *env, h *harness, req *pass.RedemptionRequest) {
		return func(t *testing.T, e *env, h *harness, req *pass.RedemptionRequest) {
			params := p(e, h, req.AgentPass.Value)
			jwt, err := h.key.HarnessProof(params)
			if err != nil {
				t.Fatal(err)
			}
			req.HarnessProof = &pass.JWTContainer{JWT: jwt}
		}
	}
	baseProof := func(e *env, h *harness, value string) dpop.ProofParams {
		return dpop.ProofParams{HarnessID: h.id, Audience: appURL, Method: "POST", URL: e.endpoint(pass.BearerToken), AgentPass: value, Now: e.clock.Now()}
	}

	tests := []rejection{
		// Step 1: protocol validation, before any call (S-RED-5).
		{name: "missing agentpass.value", ids: "S-RED-5", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			return pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, ""), nil
		}, status: 400, code: pass.CodeInvalidRequest},
		{name: "missing authority", ids: "S-RED-5", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			r := redemption(e.idp, pass.BearerToken, corpUser, "v")
			r.Authority = ""
			return pass.BearerToken, r, nil
		}, status: 400, code: pass.CodeInvalidRequest},
		{name: "missing user.email", ids: "S-RED-5", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			return pass.BearerToken, redemption(e.idp, pass.BearerToken, "", "v"), nil
		}, status: 400, code: pass.CodeInvalidRequest},
		{name: "browser pass at the bearer endpoint", ids: "S-RED-5", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			return pass.BearerToken, redemption(e.idp, pass.BrowserSession, corpUser, "v"), nil
		}, status: 400, code: pass.CodeInvalidRequest},
		{name: "empty harness_proof", ids: "HB-3", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			r := redemption(e.idp, pass.BearerToken, corpUser, "v")
			r.HarnessProof = &pass.JWTContainer{}
			return pass.BearerToken, r, nil
		}, status: 400, code: pass.CodeInvalidRequest},
		// Step 2: trust (S-RED-6, S-RES-14).
		{name: "untrusted authority", ids: "S-RED-6", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			return pass.BearerToken, redemption(e.rogue, pass.BearerToken, "alex@free.test", e.rogue.issue(validation("alex@free.test", pass.BearerToken))), nil
		}, status: 403, code: pass.CodeUntrustedAuthority},
		{name: "federated authority narrowed out by policy", ids: "S-RES-14", mutate: func(c *service.Config) {
			c.FederatedPolicy = func(_ context.Context, _ string, o []pass.AuthorityRef) []pass.AuthorityRef { return o[1:] }
		}, setup: bearerFrom(fed, "alex@free.test", nil), status: 403, code: pass.CodeUntrustedAuthority},
		// Step 3: precedence (S-RED-7, S-RED-8).
		{name: "federated pass for an enterprise user", ids: "S-RED-7", setup: bearerFrom(fed, corpUser, nil), status: 403, code: pass.CodePrecedenceViolation},
		{name: "service authority pass, enterprise forbids", ids: "S-RED-8", setup: bearerFrom(sa, "alex@strict.test", nil), status: 403, code: pass.CodePrecedenceViolation},
		{name: "service authority pass, domain none", ids: "S-RED-7", setup: bearerFrom(sa, "alex@none.test", nil), status: 403, code: pass.CodeDelegationDisabled},
		{name: "federated pass, domain none", ids: "S-RED-7 X-DNS-7", setup: bearerFrom(fed, "alex@none.test", nil), status: 403, code: pass.CodeDelegationDisabled},
		{name: "federated pass, enterprise config broken", ids: "S-RED-7 S-RES-8", setup: bearerFrom(fed, "alex@broken.test", nil), status: 502, code: pass.CodeDiscoveryFailed},
		{name: "federated pass, DNS failure", ids: "G-10", setup: bearerFrom(fed, "alex@servfail.test", nil), status: 502, code: pass.CodeDiscoveryFailed},
		{name: "enterprise pass, service requires its own", ids: "G-36", mutate: func(c *service.Config) { c.AuthorityChoice = service.RequireServiceAuthority },
			setup: bearerFrom(idp, corpUser, nil), status: 403, code: pass.CodeAgentsUnsupported},
		// G-31: configuration does not match how the Authority is trusted.
		{name: "service authority with trust_mode federated", ids: "G-31", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			e.sa.setConfig(func(c *pass.AuthorityConfiguration) { c.TrustMode = pass.TrustFederated })
			return bearerFrom(sa, "alex@free.test", nil)(t, e, s)
		}, status: 403, code: pass.CodeUntrustedAuthority},
		{name: "federated configuration names another authority", ids: "G-31 G-9", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			e.fed.setConfig(func(c *pass.AuthorityConfiguration) { c.Authority = "https://other.test" })
			return bearerFrom(fed, "alex@free.test", nil)(t, e, s)
		}, status: 403, code: pass.CodeUntrustedAuthority},
		// Step 4: the Authority refuses (S-RED-9, S-RED-1, G-20).
		{name: "unknown pass", ids: "S-RED-9 S-RED-1", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			// A JWT-shaped value claiming a broad scope: the Service never reads it.
			return pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, "eyJhbGciOiJub25lIn0.eyJzY29wZSI6WyIqIl19."), nil
		}, status: 422, code: pass.CodeAgentPassInvalid, validateCall: true},
		{name: "consumed pass", ids: "S-RED-9", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			typ, req, h := bearerFrom(idp, corpUser, nil)(t, e, s)
			if r := e.redeem(typ, req, h); r.status != 200 {
				t.Fatalf("first redemption: %d %s", r.status, r.body)
			}
			e.store = service.NewMemoryStore() // count only what the second attempt mints
			return typ, req, h
		}, status: 409, code: pass.CodeAgentPassConsumed, validateCall: true},
		{name: "expired pass", ids: "S-RED-9", setup: raw(410, `{"error":{"code":"agentpass_expired","message":"x"}}`), status: 410, code: pass.CodeAgentPassExpired, validateCall: true},
		{name: "wrong audience", ids: "S-RED-9", setup: raw(403, `{"error":{"code":"audience_mismatch","message":"x"}}`), status: 403, code: pass.CodeAudienceMismatch, validateCall: true},
		{name: "authority error 500", ids: "S-RED-9", setup: raw(500, `oops`), status: 502, code: pass.CodeAuthorityUnavailable, validateCall: true},
		{name: "scope as a string", ids: "X-SCOPE-1", setup: raw(200, `{"authorization_id":"a1","user":{"email":"alex@corp.test"},"agent":{"id":"x"},"scope":"tickets:read","type":"bearer_token"}`),
			status: 502, code: pass.CodeAuthorityUnavailable, validateCall: true},
		{name: "validation response without authorization_id", ids: "S-RED-9", setup: raw(200, `{"user":{"email":"alex@corp.test"},"agent":{"id":"x"},"scope":["tickets:read"],"type":"bearer_token"}`),
			status: 502, code: pass.CodeAuthorityUnavailable, validateCall: true},
		{name: "authority down", ids: "S-RED-9", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			typ, req, h := bearerFrom(idp, corpUser, nil)(t, e, s)
			e.idp.setDown(true)
			return typ, req, h
		}, status: 502, code: pass.CodeAuthorityUnavailable, validateCall: false},
		// G-13, G-12.
		{name: "validated type differs from the endpoint", ids: "G-13", setup: bearerFrom(idp, corpUser, func(v *pass.ValidationResponse) { v.Type = pass.BrowserSession }),
			status: 422, code: pass.CodeTypeMismatch, validateCall: true},
		{name: "validated user differs", ids: "G-12", setup: bearerFrom(idp, corpUser, func(v *pass.ValidationResponse) { v.User.Email = "boss@corp.test" }),
			status: 403, code: pass.CodeUserMismatch, validateCall: true},
		{name: "lax federated authority mints for an enterprise user", ids: "G-12", setup: bearerFrom(fed, "alex@free.test", func(v *pass.ValidationResponse) { v.User.Email = corpUser }),
			status: 403, code: pass.CodeUserMismatch, validateCall: true},
		{name: "delegation already expired", ids: "je.fix-expires-at", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			past := e.clock.Now().Add(-time.Second)
			return bearerFrom(idp, corpUser, func(v *pass.ValidationResponse) { v.AuthorizationExpiresAt = &past })(t, e, s)
		}, status: 422, code: pass.CodeAgentPassExpired, validateCall: true},
		// Steps 5–6: scopes (S-RED-10, S-RED-11, G-14).
		{name: "unsupported approved scope", ids: "S-RED-10 G-14", setup: bearerFrom(idp, corpUser, func(v *pass.ValidationResponse) { v.Scope = pass.Scope{"tickets:read", "unknown:x"} }),
			status: 422, code: pass.CodeScopeUnsupported, validateCall: true},
		{name: "empty approved scope", ids: "G-14", setup: bearerFrom(idp, corpUser, func(v *pass.ValidationResponse) { v.Scope = pass.Scope{} }),
			status: 422, code: pass.CodeScopeUnsupported, validateCall: true},
		{name: "requested scope disjoint", ids: "S-RED-11", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			typ, req, h := bearerFrom(idp, corpUser, nil)(t, e, s)
			req.RequestedScope = pass.Scope{"admin"}
			return typ, req, h
		}, status: 403, code: pass.CodeScopeEmpty, validateCall: true},
		{name: "requested scope empty", ids: "S-RED-11 G-14", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			typ, req, h := bearerFrom(idp, corpUser, nil)(t, e, s)
			req.RequestedScope = pass.Scope{}
			return typ, req, h
		}, status: 403, code: pass.CodeScopeEmpty, validateCall: true},
		{name: "user holds none of the approved scopes", ids: "X-SCOPE-2", mutate: func(c *service.Config) {
			c.UserScopes = func(context.Context, string) ([]string, error) { return []string{"admin"}, nil }
		}, setup: bearerFrom(idp, corpUser, nil), status: 403, code: pass.CodeScopeEmpty, validateCall: true},
		// Step 7: holder binding (HB-7, HB-8, G-3, G-4).
		{name: "cnf without proof", ids: "HB-8 G-4", setup: holderBound(func(t *testing.T, e *env, h *harness, req *pass.RedemptionRequest) { req.HarnessProof = nil }),
			status: 401, code: pass.CodeInvalidHarnessProof, validateCall: true},
		{name: "proof by another key", ids: "HB-7", setup: holderBound(func(t *testing.T, e *env, h *harness, req *pass.RedemptionRequest) {
			other := newHarness(t)
			other.id = h.id
			req.HarnessProof = other.proof(t, e, e.endpoint(pass.BearerToken), req.AgentPass.Value)
		}), status: 401, code: pass.CodeInvalidHarnessProof, validateCall: true},
		{name: "proof for another service", ids: "G-3", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			p := baseProof(e, h, v)
			p.Audience = "https://other.test"
			return p
		})), status: 401, code: pass.CodeInvalidHarnessProof, message: "proof refused: wrong aud", validateCall: false},
		{name: "proof for another endpoint", ids: "je.harden-holder-binding", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			p := baseProof(e, h, v)
			p.URL = e.endpoint(pass.BrowserSession)
			return p
		})), status: 401, code: pass.CodeInvalidHarnessProof, validateCall: false},
		{name: "proof for another pass", ids: "je.harden-holder-binding", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			p := baseProof(e, h, v)
			p.AgentPass = "another-pass"
			return p
		})), status: 401, code: pass.CodeInvalidHarnessProof, validateCall: false},
		// A signalled pass redeemed with a v0.1 proof: known only after
		// validation, so the delegation is then revoked (issue #13).
		{name: "v0.1 proof for a signalled pass (downgrade)", ids: "HB-7 G-3 je.harden-holder-binding", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			return dpop.ProofParams{HarnessID: h.id, Audience: appURL, Now: e.clock.Now()}
		})), status: 401, code: pass.CodeInvalidHarnessProof, message: "proof refused: missing htm", validateCall: true},
		{name: "v0.1 proof under RequireHardenedProofs", ids: "je.harden-holder-binding", mutate: func(c *service.Config) { c.RequireHardenedProofs = true },
			setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
				return dpop.ProofParams{HarnessID: h.id, Audience: appURL, Now: e.clock.Now()}
			})), status: 401, code: pass.CodeInvalidHarnessProof, message: "proof refused: missing htm", validateCall: false},
		{name: "no proof under RequireHardenedProofs", ids: "HB-8", mutate: func(c *service.Config) { c.RequireHardenedProofs = true },
			setup: bearerFrom(idp, corpUser, nil), status: 401, code: pass.CodeInvalidHarnessProof, message: "proof refused: proof missing", validateCall: false},
		{name: "proof from another harness id", ids: "G-3", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			p := baseProof(e, h, v)
			p.HarnessID = "someone-else"
			return p
		})), status: 401, code: pass.CodeInvalidHarnessProof, validateCall: true},
		{name: "expired proof", ids: "G-3 G-7", setup: holderBound(proofWith(func(e *env, h *harness, v string) dpop.ProofParams {
			p := baseProof(e, h, v)
			p.Now = e.clock.Now().Add(-10 * time.Minute)
			return p
		})), status: 401, code: pass.CodeInvalidHarnessProof, message: "proof refused: expired", validateCall: false},
		// Step 8 and the application.
		{name: "application refuses the delegation", ids: "OnDelegation", mutate: func(c *service.Config) {
			c.OnDelegation = func(context.Context, *service.Delegation) error { return errors.New("signups closed") }
		}, setup: bearerFrom(idp, corpUser, nil), status: 403, code: pass.CodeDelegationRejected, validateCall: true},
		{name: "application answers its own error", ids: "OnDelegation", mutate: func(c *service.Config) {
			c.OnDelegation = func(context.Context, *service.Delegation) error {
				return pass.Fail("plan_required", "upgrade").WithStatus(http.StatusPaymentRequired)
			}
		}, setup: bearerFrom(idp, corpUser, nil), status: 402, code: "plan_required", validateCall: true},
		{name: "invalid DPoP proof", ids: "RFC 9449", setup: func(t *testing.T, e *env, s *scenarios) (pass.PassType, pass.RedemptionRequest, http.Header) {
			typ, req, _ := bearerFrom(idp, corpUser, nil)(t, e, s)
			k, _ := dpop.GenerateKey("ES256")
			proof, _ := k.DPoPProof("POST", e.endpoint(pass.BrowserSession), "", "", e.clock.Now())
			return typ, req, http.Header{"Dpop": {proof}}
		}, status: 401, code: pass.CodeInvalidDPoPProof, validateCall: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.mutate)
			s := e.scenarios()
			typ, req, h := tt.setup(t, e, s)
			before := e.idp.validateCalls.Load() + e.fed.validateCalls.Load() + e.sa.validateCalls.Load() + e.rogue.validateCalls.Load()
			fakes := []*fakeAuthority{e.idp, e.fed, e.sa, e.rogue}
			consumed := func() (n int32) {
				for _, f := range fakes {
					n += f.validateOK.Load()
				}
				return n
			}
			closes := func() (n int32) {
				for _, f := range fakes {
					n += f.closeCalls.Load()
				}
				return n
			}
			consumedBefore, closesBefore := consumed(), closes()
			r := e.redeem(typ, req, h)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("%s: got %d %s, want %d %s: %s", tt.ids, r.status, r.errorCode(), tt.status, tt.code, r.body)
			}
			if tt.message != "" && r.errorMessage() != tt.message {
				t.Errorf("%s: message %q, want %q", tt.ids, r.errorMessage(), tt.message)
			}
			// Issue #13 item 4: a refusal after the pass was consumed
			// revokes the delegation at once; nothing else is closed.
			if got, want := closes()-closesBefore, consumed()-consumedBefore; got != want {
				t.Errorf("%s: %d closes for %d consumed passes", tt.ids, got, want)
			}
			validError(t, r)
			if strings.Contains(string(r.body), `"bearer_token":`) || strings.Contains(string(r.body), `"initialization_url":`) {
				t.Errorf("%s: a rejection carries a credential: %s", tt.ids, r.body)
			}
			after := e.idp.validateCalls.Load() + e.fed.validateCalls.Load() + e.sa.validateCalls.Load() + e.rogue.validateCalls.Load()
			if called := after > before; called != tt.validateCall {
				t.Errorf("%s: validate called = %v, want %v", tt.ids, called, tt.validateCall)
			}
			if tt.name != "consumed pass" {
				if c, i := e.minted(); c != 0 || i != 0 {
					t.Errorf("%s: %d credentials and %d init tokens minted by a rejected redemption", tt.ids, c, i)
				}
			}
			recs := e.logs.records("agentpass redemption")
			if len(recs) == 0 || recs[len(recs)-1]["outcome"] != "rejected" || recs[len(recs)-1]["code"] != string(tt.code) {
				t.Errorf("%s: no rejected audit record: %v", tt.ids, recs)
			}
		})
	}
}

// S-RED-8 (policy absent), S-RED-10 (wildcard), S-RED-11 (intersection),
// G-14: accepted cases and the granted scope.
func TestRedeemScopes(t *testing.T) {
	userScopes := func(c *service.Config) {
		c.UserScopes = func(_ context.Context, email string) ([]string, error) {
			return []string{"tickets:read", "admin", "not-defined"}, nil
		}
	}
	tests := []struct {
		name      string
		mutate    func(*service.Config)
		authority func(e *env) *fakeAuthority
		user      string
		approved  pass.Scope
		requested pass.Scope
		want      pass.Scope
	}{
		{"service authority, enterprise policy absent", nil, func(e *env) *fakeAuthority { return e.sa }, corpUser, pass.Scope{"tickets:read"}, nil, pass.Scope{"tickets:read"}},
		{"federated, no enterprise record", nil, func(e *env) *fakeAuthority { return e.fed2 }, "alex@free.test", pass.Scope{"tickets:read"}, nil, pass.Scope{"tickets:read"}},
		{"wildcard expands to the user's scopes", userScopes, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"*"}, nil, pass.Scope{"tickets:read", "admin"}},
		{"wildcard without UserScopes: every defined scope", nil, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"*"}, nil, pass.Scope{"tickets:read", "tickets:write", "admin"}},
		{"approved beyond the user's scopes is cut", userScopes, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"tickets:read", "tickets:write"}, nil, pass.Scope{"tickets:read"}},
		{"requested narrows", nil, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"tickets:read", "tickets:write"}, pass.Scope{"tickets:write", "admin"}, pass.Scope{"tickets:write"}},
		{"requested * means all approved", nil, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"tickets:read", "tickets:write"}, pass.Scope{"*"}, pass.Scope{"tickets:read", "tickets:write"}},
		{"requested narrows the expanded wildcard", userScopes, func(e *env) *fakeAuthority { return e.idp }, corpUser, pass.Scope{"*"}, pass.Scope{"admin"}, pass.Scope{"admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.mutate)
			e.scenarios()
			a := tt.authority(e)
			value := a.issue(validation(tt.user, pass.BearerToken, tt.approved...))
			req := redemption(a, pass.BearerToken, tt.user, value)
			req.RequestedScope = tt.requested
			r := e.redeem(pass.BearerToken, req, nil)
			if r.status != http.StatusOK {
				t.Fatalf("redeem: %d %s", r.status, r.body)
			}
			var resp pass.BearerTokenResponse
			r.decode(t, &resp)
			if diff := cmp.Diff(tt.want, resp.Scope); diff != "" {
				t.Errorf("granted scope (-want +got):\n%s", diff)
			}
		})
	}
}

// S-TOK-3, RequireScope: a call needing a scope the token lacks is refused
// with 403 naming the scope.
func TestTokenScopeEnforced(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.bearerToken(t, corpUser, "tickets:read")
	r := e.get("/api/admin", bearer(tok))
	if r.status != http.StatusForbidden || r.errorCode() != pass.CodeInsufficientScope || !strings.Contains(string(r.body), `admin`) {
		t.Fatalf("admin call = %d %s, want 403 insufficient_scope naming admin", r.status, r.body)
	}
	if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate = %q", h)
	}
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("tickets call = %d", r.status)
	}
}

// bearerToken redeems a fresh pass of the Enterprise Authority.
func (e *env) bearerToken(t testing.TB, user string, scope ...string) string {
	t.Helper()
	value := e.idp.issue(validation(user, pass.BearerToken, scope...))
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, user, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	return resp.BearerToken
}

// HB-9 with a proof but no cnf: the proof is ignored (G-4) and the
// redemption succeeds.
// TestInvalidProofKeepsThePass: a proof that can never verify is refused
// before the Authority is asked, so the pass is not consumed and a
// corrected redemption succeeds (G-4 refined: "ignored when there is no
// cnf" can only be known after consumption, so a malformed proof is
// refused up front instead, at no cost to the Harness).
func TestInvalidProofKeepsThePass(t *testing.T) {
	e := newEnv(t, nil)
	value := e.idp.issue(validation(corpUser, pass.BearerToken))
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.HarnessProof = &pass.JWTContainer{JWT: "not.a.jwt"}
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidHarnessProof {
		t.Fatalf("malformed proof: %d %s", r.status, r.body)
	}
	req.HarnessProof = nil // HB-9: no cnf, no proof needed
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusOK {
		t.Fatalf("the pass was burned by the refused proof: %d %s", r.status, r.body)
	}
}

// A replayed harness proof is refused even when it is not bound to the
// pass (a plain v0.1 proof for an unsignalled pass): jti replay (G-3).
// The replay is seen before validate, so the second pass is not burned
// (issue #13 item 3).
func TestReplayedProof(t *testing.T) {
	e := newEnv(t, nil)
	h := newHarness(t)
	jwt, err := h.key.HarnessProof(dpop.ProofParams{HarnessID: h.id, Audience: appURL, Now: e.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for range 2 {
		vr := validation(corpUser, pass.BearerToken)
		vr.Cnf = h.cnf()
		value := e.idp.issue(vr)
		req := redemption(e.idp, pass.BearerToken, corpUser, value)
		req.HarnessProof = &pass.JWTContainer{JWT: jwt}
		r := e.redeem(pass.BearerToken, req, nil)
		statuses = append(statuses, r.status)
		if r.status != http.StatusOK && r.errorCode() != pass.CodeInvalidHarnessProof {
			t.Errorf("replay code = %s", r.errorCode())
		}
	}
	if diff := cmp.Diff([]int{200, 409}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if c, _ := e.minted(); c != 1 {
		t.Errorf("%d credentials minted, want 1", c)
	}
	if n := e.idp.validateCalls.Load(); n != 1 {
		t.Errorf("validate called %d times: the replayed proof burned a pass", n)
	}
}

// Tokens never outlive authorization_expires_at (je.fix-expires-at).
func TestTokenExpiryBound(t *testing.T) {
	e := newEnv(t, nil)
	end := e.clock.Now().Add(10 * time.Minute)
	vr := validation(corpUser, pass.BearerToken)
	vr.AuthorizationExpiresAt = &end
	value := e.idp.issue(vr)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	if *resp.ExpiresIn != 600 {
		t.Errorf("expires_in = %d, want 600", *resp.ExpiresIn)
	}
	e.clock.Advance(9 * time.Minute) // the check refreshes; the Authority keeps the same end
	if r := e.get("/api/tickets", bearer(resp.BearerToken)); r.status != http.StatusOK {
		t.Fatalf("before the end: %d %s", r.status, r.body)
	}
	e.clock.Advance(61 * time.Second)
	if r := e.get("/api/tickets", bearer(resp.BearerToken)); r.status != http.StatusUnauthorized {
		t.Errorf("after the end: %d, want 401", r.status)
	}
}

// S-BRW-6 for bearer: 20 concurrent redemptions of one pass, one token.
func TestConcurrentRedemptionsOfOnePass(t *testing.T) {
	e := newEnv(t, nil)
	value := e.idp.issue(validation(corpUser, pass.BearerToken))
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.redeem(pass.BearerToken, req, nil)
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 1 || codes[409] != 19 {
		t.Errorf("statuses = %v, want one 200 and nineteen 409", codes)
	}
	if c, _ := e.minted(); c != 1 {
		t.Errorf("%d credentials, want 1", c)
	}
}

// OnDelegation sees the validated delegation before anything is minted.
func TestOnDelegation(t *testing.T) {
	var got *service.Delegation
	var credsAtCall int
	var e *env
	e = newEnv(t, func(c *service.Config) {
		c.OnDelegation = func(_ context.Context, d *service.Delegation) error {
			got = d
			credsAtCall, _ = e.minted()
			return nil
		}
	})
	value := e.idp.issue(validation(corpUser, pass.BearerToken, "tickets:read", "admin"))
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.RequestedScope = pass.Scope{"admin"}
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	if got == nil {
		t.Fatal("OnDelegation not called")
	}
	want := &service.Delegation{
		AuthorizationID: got.AuthorizationID, Authority: e.idp.origin, TrustMode: pass.TrustEnterprise,
		User: corpUser, Agent: "agent-7", Task: &pass.Task{ID: "task-1", Description: "triage tickets"},
		Scope: pass.Scope{"admin"},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(service.Delegation{})); diff != "" {
		t.Errorf("delegation (-want +got):\n%s", diff)
	}
	if credsAtCall != 0 {
		t.Errorf("a credential existed before OnDelegation returned")
	}
}

// DPoP-bound tokens (RFC 9449): bound at redemption, then usable only with
// a proof of the same key.
func TestDPoPBoundToken(t *testing.T) {
	e := newEnv(t, nil)
	k, err := dpop.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	value := e.idp.issue(validation(corpUser, pass.BearerToken))
	proof, _ := k.DPoPProof("POST", e.endpoint(pass.BearerToken), "", "", e.clock.Now())
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), http.Header{"Dpop": {proof}})
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	if resp.TokenType != "DPoP" {
		t.Fatalf("token_type = %q, want DPoP", resp.TokenType)
	}
	tok := resp.BearerToken
	call := func(scheme string, key *dpop.Key, method, url, ath string) *response {
		h := http.Header{"Authorization": {scheme + " " + tok}}
		if key != nil {
			p, err := key.DPoPProof(method, url, ath, "", e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			h.Set("DPoP", p)
		}
		return e.get("/api/tickets", h)
	}
	other, _ := dpop.GenerateKey("ES256")
	tests := []struct {
		name   string
		r      func() *response
		status int
	}{
		{"valid proof", func() *response { return call("DPoP", k, "GET", appURL+"/api/tickets", tok) }, 200},
		{"bearer scheme (downgrade)", func() *response { return call("Bearer", nil, "", "", "") }, 401},
		{"no proof", func() *response { return call("DPoP", nil, "", "", "") }, 401},
		{"other key", func() *response { return call("DPoP", other, "GET", appURL+"/api/tickets", tok) }, 401},
		{"other url", func() *response { return call("DPoP", k, "GET", appURL+"/api/admin", tok) }, 401},
		{"other method", func() *response { return call("DPoP", k, "POST", appURL+"/api/tickets", tok) }, 401},
		{"other token hash", func() *response { return call("DPoP", k, "GET", appURL+"/api/tickets", "another") }, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.r()
			if r.status != tt.status {
				t.Errorf("status %d, want %d: %s", r.status, tt.status, r.body)
			}
			if r.status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), "error=") {
				t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
	// A replayed DPoP proof is refused.
	p, _ := k.DPoPProof("GET", appURL+"/api/tickets", tok, "", e.clock.Now())
	h := http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {p}}
	if r := e.get("/api/tickets", h); r.status != 200 {
		t.Fatalf("first use: %d", r.status)
	}
	if r := e.get("/api/tickets", h); r.status == 200 {
		t.Errorf("replayed DPoP proof accepted")
	}
}

// An unauthenticated or garbage request is refused with 401 and a
// WWW-Authenticate challenge; Check reports ErrNoCredential.
func TestMiddlewareUnauthenticated(t *testing.T) {
	e := newEnv(t, nil)
	for name, h := range map[string]http.Header{
		"none":    nil,
		"garbage": bearer("apt_garbage"),
		"empty":   {"Authorization": {"Bearer "}},
		"cookie":  {"Cookie": {service.SessionCookie + "=aps_nothing"}},
	} {
		r := e.get("/api/tickets", h)
		if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidToken {
			t.Errorf("%s: %d %s, want 401 invalid_token", name, r.status, r.body)
		}
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", name)
		}
	}
	req, _ := http.NewRequest("GET", appURL+"/api/tickets", nil)
	if _, err := e.svc.Check(req); !errors.Is(err, service.ErrNoCredential) {
		t.Errorf("Check without credential = %v, want ErrNoCredential", err)
	}
	// A token minted as a bearer token is not a session cookie.
	tok := e.bearerToken(t, corpUser)
	if r := e.get("/api/tickets", http.Header{"Cookie": {service.SessionCookie + "=" + tok}}); r.status != http.StatusUnauthorized {
		t.Errorf("bearer token as a cookie: %d, want 401", r.status)
	}
}

// loopbackRoute is a RoundTripper built before the test network exists.
type loopbackRoute func(*http.Request) (*http.Response, error)

func (f loopbackRoute) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// G-27: without InsecureAllowPrivateNetworks, the Service refuses to call an
// Authority whose endpoints resolve to a loopback address; nothing is
// minted and the pass is not even sent.
func TestAuthorityOnPrivateAddressRefused(t *testing.T) {
	var e *env
	var refused atomic.Int64 // calls the guard refused
	e = newEnv(t, func(c *service.Config) {
		// The test network's client maps names with its own dialer, which
		// is refused without the switch (review Low 1b): the default one
		// is guarded, and its requests are sent to the hosts' loopback
		// addresses as DNS would.
		c.InsecureAllowPrivateNetworks = false
		c.HTTPClient = nil
		c.WrapTransport = func(next http.RoundTripper) http.RoundTripper {
			return loopbackRoute(func(r *http.Request) (*http.Response, error) {
				resp, err := e.net.RouteToLoopback(next).RoundTrip(r)
				if errors.Is(err, service.ErrForbiddenAddress) {
					refused.Add(1)
				}
				return resp, err
			})
		}
	})
	value := e.idp.issue(validation(corpUser, pass.BearerToken))
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusBadGateway || r.errorCode() != pass.CodeAuthorityUnavailable {
		t.Fatalf("redeem: %d %s, want 502 authority_unavailable", r.status, r.body)
	}
	if n := e.idp.validateCalls.Load(); n != 0 {
		t.Errorf("%d validate calls reached a loopback Authority", n)
	}
	if refused.Load() == 0 {
		t.Error("no call was refused with ErrForbiddenAddress")
	}
	if c, _ := e.minted(); c != 0 {
		t.Errorf("%d credentials minted", c)
	}
}

// The delegation carries the canonical form of the validated address, not
// whatever spelling the Authority echoed (#14 finding 9, G-12).
func TestDelegationUserCanonical(t *testing.T) {
	var got *service.Delegation
	e := newEnv(t, func(c *service.Config) {
		c.OnDelegation = func(_ context.Context, d *service.Delegation) error {
			got = d
			return nil
		}
	})
	value := e.idp.issue(validation("Alex@CORP.test.", pass.BearerToken, "tickets:read"))
	req := redemption(e.idp, pass.BearerToken, "ALEX@corp.test", value)
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	if got == nil || got.User != corpUser {
		t.Fatalf("Delegation.User = %v, want %q", got, corpUser)
	}
}
