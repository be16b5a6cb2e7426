package service_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// sign makes an Authority assertion for the Service.
func (a *fakeAuthority) sign(t *testing.T, aud string, now time.Time) string {
	t.Helper()
	tok, err := assertion.Sign(a.keys.Current(), a.origin, aud, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) scopesCall(tok string, body any) *response {
	e.t.Helper()
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return e.postJSON(e.svc.Configuration().Endpoints.AvailableScopes, body, h)
}

// S-SCOPE-1..7, G-9: the available-scopes endpoint authenticates the
// Authority through this Service's trust sources for the body's user.
func TestAvailableScopes(t *testing.T) {
	var gotQuery service.ScopeQuery
	e := newEnv(t, func(c *service.Config) {
		c.UserScopes = func(_ context.Context, email string) ([]string, error) {
			if email == corpUser {
				return []string{"tickets:read", "admin"}, nil
			}
			return []string{"tickets:read"}, nil
		}
	})
	e.scenarios()
	body := func(user string) pass.AvailableScopesRequest {
		return pass.AvailableScopesRequest{User: pass.User{Email: user}, Agent: pass.Agent{ID: "agent-7"}, Task: &pass.Task{ID: "t1", Description: "triage"}}
	}
	now := e.clock.Now()

	r := e.scopesCall(e.idp.sign(t, appURL, now), body(corpUser))
	if r.status != http.StatusOK {
		t.Fatalf("enterprise authority: %d %s", r.status, r.body)
	}
	validJSON(t, r.body, "service-available-scopes.schema.json", "") // S-SCOPE-5
	var resp pass.AvailableScopesResponse
	r.decode(t, &resp)
	if diff := cmp.Diff(pass.Scope{"tickets:read", "admin"}, resp.Names()); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}

	other, _ := dpop.GenerateKey("ES256")
	forged, _ := assertion.Sign(other, e.idp.origin, appURL, 0, now)
	tests := []struct {
		name   string
		ids    string
		tok    string
		body   any
		status int
		code   pass.Code
	}{
		{"federated authority, no enterprise record", "S-SCOPE-2", e.fed.sign(t, appURL, now), body("alex@free.test"), 200, ""},
		{"service authority, policy absent", "S-SCOPE-2", e.sa.sign(t, appURL, now), body(corpUser), 200, ""},
		{"no assertion", "S-SCOPE-1", "", body(corpUser), 401, pass.CodeInvalidAssertion},
		{"not a JWT", "S-SCOPE-3", "garbage", body(corpUser), 401, pass.CodeInvalidAssertion},
		{"signed by a key not in the JWKS", "S-SCOPE-2", forged, body(corpUser), 401, pass.CodeInvalidAssertion},
		{"expired", "S-SCOPE-3", e.idp.sign(t, appURL, now.Add(-10*time.Minute)), body(corpUser), 401, pass.CodeInvalidAssertion},
		{"audience another service", "S-SCOPE-3", e.idp.sign(t, "https://other.test", now), body(corpUser), 401, pass.CodeInvalidAssertion},
		{"untrusted authority", "S-SCOPE-4", e.rogue.sign(t, appURL, now), body("alex@free.test"), 403, pass.CodeUntrustedAuthority},
		{"federated authority for an enterprise user", "S-SCOPE-4 G-9", e.fed.sign(t, appURL, now), body(corpUser), 403, pass.CodePrecedenceViolation},
		{"service authority, enterprise forbids", "S-SCOPE-4", e.sa.sign(t, appURL, now), body("alex@strict.test"), 403, pass.CodePrecedenceViolation},
		{"enterprise authority of another domain", "G-9", e.idp.sign(t, appURL, now), body("alex@free.test"), 403, pass.CodeUntrustedAuthority},
		{"domain none", "S-SCOPE-4", e.fed.sign(t, appURL, now), body("alex@none.test"), 403, pass.CodeDelegationDisabled},
		{"missing agent.id", "S-SCOPE-7", e.idp.sign(t, appURL, now), map[string]any{"user": map[string]string{"email": corpUser}}, 400, pass.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.scopesCall(tt.tok, tt.body)
			if r.status != tt.status {
				t.Fatalf("%s: %d %s, want %d", tt.ids, r.status, r.body, tt.status)
			}
			if tt.status != 200 {
				validError(t, r)
				if r.errorCode() != tt.code {
					t.Errorf("%s: code %s, want %s", tt.ids, r.errorCode(), tt.code)
				}
			}
		})
	}

	// The application callback sees the authenticated context and can
	// only return defined scopes.
	e2 := newEnv(t, func(c *service.Config) {
		c.AvailableScopes = func(_ context.Context, q service.ScopeQuery) ([]pass.ScopeInfo, error) {
			gotQuery = q
			return []pass.ScopeInfo{{Name: "tickets:write"}, {Name: "made-up"}}, nil
		}
	})
	r = e2.scopesCall(e2.idp.sign(t, appURL, e2.clock.Now()), body(corpUser))
	if r.status != http.StatusOK {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	r.decode(t, &resp)
	if diff := cmp.Diff(pass.Scope{"tickets:write"}, resp.Names()); diff != "" {
		t.Errorf("callback scopes (-want +got):\n%s", diff)
	}
	want := service.ScopeQuery{User: corpUser, Agent: "agent-7", Task: &pass.Task{ID: "t1", Description: "triage"}, Authority: e2.idp.origin, TrustMode: pass.TrustEnterprise}
	if diff := cmp.Diff(want, gotQuery); diff != "" {
		t.Errorf("query (-want +got):\n%s", diff)
	}
}

// TestAvailableScopesAssertionReplay: an Authority assertion is accepted
// once; the same token presented again is refused (G-8: jti), while a fresh
// assertion from the same Authority still works.
func TestAvailableScopesAssertionReplay(t *testing.T) {
	e := newEnv(t, nil)
	e.scenarios()
	body := pass.AvailableScopesRequest{User: pass.User{Email: corpUser}, Agent: pass.Agent{ID: "agent-7"}}
	tok := e.idp.sign(t, appURL, e.clock.Now())
	if r := e.scopesCall(tok, body); r.status != http.StatusOK {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	if r := e.scopesCall(tok, body); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidAssertion {
		t.Fatalf("replayed assertion: %d %s, want 401 invalid_assertion", r.status, r.body)
	}
	if r := e.scopesCall(e.idp.sign(t, appURL, e.clock.Now()), body); r.status != http.StatusOK {
		t.Fatalf("fresh assertion: %d %s", r.status, r.body)
	}
}
