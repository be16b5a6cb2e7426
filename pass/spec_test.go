package pass_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

func readJSON(t *testing.T, path string) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// equivalentJSON reports the difference between two JSON texts as parsed
// values, so formatting and member order do not matter.
func equivalentJSON(t *testing.T, want, got []byte) string {
	t.Helper()
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	return cmp.Diff(w, g)
}

// TestExamplesRoundTrip decodes every example of the spec into its type and
// re-encodes it to equivalent JSON (X-VER-3 tolerance aside, nothing is lost).
func TestExamplesRoundTrip(t *testing.T) {
	dir := spectest.Dir(t)
	type part struct {
		member string // "" for a bare document, else "request"/"response"
		doc    func() pass.Document
	}
	cases := map[string][]part{
		"authority-configuration.json":                 {{"", func() pass.Document { return new(pass.AuthorityConfiguration) }}},
		"service-configuration.json":                   {{"", func() pass.Document { return new(pass.ServiceConfiguration) }}},
		"authority-authorization-check.json":           {{"request", func() pass.Document { return new(pass.AuthorizationCheckRequest) }}, {"response", func() pass.Document { return new(pass.AuthorizationCheckResponse) }}},
		"authority-validate.json":                      {{"request", func() pass.Document { return new(pass.ValidationRequest) }}, {"response", func() pass.Document { return new(pass.ValidationResponse) }}},
		"service-authority-resolution-enterprise.json": {{"request", func() pass.Document { return new(pass.ResolutionRequest) }}, {"response", func() pass.Document { return new(pass.ResolutionResponse) }}},
		"service-authority-resolution-federated.json":  {{"request", func() pass.Document { return new(pass.ResolutionRequest) }}, {"response", func() pass.Document { return new(pass.ResolutionResponse) }}},
		"service-authority-resolution-service.json":    {{"request", func() pass.Document { return new(pass.ResolutionRequest) }}, {"response", func() pass.Document { return new(pass.ResolutionResponse) }}},
		"service-available-scopes.json":                {{"request", func() pass.Document { return new(pass.AvailableScopesRequest) }}, {"response", func() pass.Document { return new(pass.AvailableScopesResponse) }}},
		"service-redeem-bearer-token.json":             {{"request", func() pass.Document { return new(pass.RedemptionRequest) }}, {"response", func() pass.Document { return new(pass.BearerTokenResponse) }}},
		"service-redeem-browser-session.json":          {{"request", func() pass.Document { return new(pass.RedemptionRequest) }}, {"response", func() pass.Document { return new(pass.BrowserSessionResponse) }}},
		"authority-issuance-request.json":              {{"", func() pass.Document { return new(pass.IssuanceRequest) }}},
	}
	entries, err := os.ReadDir(filepath.Join(dir, "examples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := cases[e.Name()]; !ok {
			t.Errorf("example %s has no round-trip case", e.Name())
		}
	}
	for name, parts := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "examples", name)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range parts {
				src := raw
				if p.member != "" {
					src = readJSON(t, path)[p.member]
				}
				doc := p.doc()
				if err := pass.Decode(src, doc); err != nil {
					t.Fatalf("%s: decode: %v", p.member, err)
				}
				out, err := json.Marshal(doc)
				if err != nil {
					t.Fatal(err)
				}
				if d := equivalentJSON(t, src, out); d != "" {
					t.Errorf("%s: re-encoded JSON differs (-want +got):\n%s", p.member, d)
				}
			}
		})
	}
}

// TestWrappedExampleDecodes: a body whose only member is "request" is
// unwrapped (G-5), one mixing both forms is rejected.
func TestWrappedExampleDecodes(t *testing.T) {
	var r pass.ResolutionRequest
	if err := pass.Decode([]byte(`{"request":{"user":{"email":"alex@example.com"}}}`), &r); err != nil || r.User.Email != "alex@example.com" {
		t.Fatalf("wrapped request: %v %+v", err, r)
	}
	if err := pass.Decode([]byte(`{"request":{"user":{"email":"alex@example.com"}},"user":{"email":"b@example.com"}}`), &r); err == nil {
		t.Fatal("mixed envelope accepted")
	}
}

func validateAgainst(t *testing.T, name, sub string, doc any) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	spectest.Validate(t, b, name, sub)
}

// TestProducedDocumentsValidate encodes one document of every type, as this
// module produces them, and validates it against the spec's schema
// (H-ISS-2, H-RED-2, H-RED-3, S-CFG-2, A-CFG-2, A-VAL-9, S-RED-18, X-ERR-2).
func TestProducedDocumentsValidate(t *testing.T) {
	spectest.Dir(t) // skip without the spec folder: every row below validates
	yes := true
	poll := int64(1000)
	expiresIn := int64(600)
	jwk := json.RawMessage(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`)
	now := mustTime(t, "2026-01-02T03:04:05Z")
	cases := []struct {
		schema, sub string
		doc         pass.Document
	}{
		{"authority-configuration.schema.json", "", validAuthorityConfig()},
		{"service-configuration.schema.json", "", validServiceConfig()},
		{"issuance-request.schema.json", "", &pass.IssuanceRequest{
			Type: pass.BrowserSession, Service: pass.ServiceRef{Origin: "https://svc.example.com"}, User: pass.User{Email: "alex@example.com"},
			Harness: pass.HarnessInfo{ID: "h1", Cnf: &pass.Cnf{JWK: jwk}, Attestation: &pass.JWTContainer{JWT: "a.b.c"}},
			Task:    pass.Task{ID: "t1", Description: "do it", Attestation: &pass.JWTContainer{JWT: "a.b.c"}},
			Intent:  &pass.Intent{DestinationURL: "https://svc.example.com/dash"},
		}},
		{"issuance-status.schema.json", "", &pass.IssuanceStatus{ID: "r1", Status: pass.StatusPending, Type: pass.BearerToken, PollAfterMS: &poll, ExpiresAt: &now, Links: &pass.Links{Self: "https://a.example.com/requests/r1"}}},
		{"issuance-status.schema.json", "", &pass.IssuanceStatus{ID: "r1", Status: pass.StatusApproved, AgentPass: &pass.AgentPass{Type: pass.BearerToken, Value: "ap_x"}}},
		{"issuance-status.schema.json", "", &pass.IssuanceStatus{ID: "r1", Status: pass.StatusDenied, Reason: "no"}},
		{"service-authority-resolution.schema.json", "request", &pass.ResolutionRequest{User: pass.User{Email: "alex@example.com"}}},
		{"service-authority-resolution.schema.json", "response", &pass.ResolutionResponse{EnterpriseAuthority: &pass.AuthorityRef{Authority: "https://a.example.com", AuthorityConfigurationURL: "https://a.example.com/ap"}}},
		{"service-authority-resolution.schema.json", "response", &pass.ResolutionResponse{TrustedFederatedAuthorities: []pass.AuthorityRef{{Authority: "https://f.example.com", AuthorityConfigurationURL: "https://f.example.com/ap"}}}},
		{"service-available-scopes.schema.json", "", &pass.AvailableScopesResponse{Scopes: []pass.ScopeInfo{{Name: "todos:read", Description: "Read"}}}},
		{"service-redeem-bearer-token.schema.json", "request", &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "ap"}, Authority: "https://a.example.com", User: pass.User{Email: "alex@example.com"}, HarnessProof: &pass.JWTContainer{JWT: "a.b.c"}, RequestedScope: pass.Scope{"todos:read"}}},
		{"service-redeem-bearer-token.schema.json", "response", &pass.BearerTokenResponse{BearerToken: "tok", Scope: pass.Scope{"todos:read"}, ExpiresIn: &expiresIn}},
		{"service-redeem-browser-session.schema.json", "request", &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BrowserSession, Value: "ap"}, Authority: "https://a.example.com", User: pass.User{Email: "alex@example.com"}, InitializationMethods: []string{"POST", "GET"}}},
		{"service-redeem-browser-session.schema.json", "response", &pass.BrowserSessionResponse{InitializationURL: "https://svc.example.com/init", ExpiresAt: &now, OneTime: &yes, InitializationRequest: &pass.InitializationRequest{Method: "POST", FormFields: map[string]string{"initialization_token": "x"}}}},
		{"authority-validate.schema.json", "request", &pass.ValidationRequest{AgentPass: pass.PassValue{Value: "ap"}}},
		{"authority-validate.schema.json", "response", &pass.ValidationResponse{AuthorizationID: "az", User: pass.User{Email: "alex@example.com"}, Agent: pass.Agent{ID: "h1"}, Scope: pass.Scope{}, Type: pass.BrowserSession, DestinationURL: "https://svc.example.com/x", Cnf: &pass.Cnf{JWK: jwk}, Task: &pass.Task{ID: "t1", Description: "d", Attested: true}, AuthorizationExpiresAt: &now}},
		{"authority-authorization-check.schema.json", "request", &pass.AuthorizationCheckRequest{AuthorizationID: "az"}},
		{"authority-authorization-check.schema.json", "response", &pass.AuthorizationCheckResponse{Scope: pass.Scope{"a"}, AuthorizationExpiresAt: &now}},
		{"error-response.schema.json", "", &pass.ErrorResponse{Error: pass.ErrorBody{Code: pass.CodeInvalidRequest, Message: "bad"}}},
	}
	for _, c := range cases {
		t.Run(c.schema+"/"+c.sub, func(t *testing.T) {
			if err := c.doc.Validate(); err != nil {
				t.Fatalf("our own document does not pass Validate: %v", err)
			}
			validateAgainst(t, c.schema, c.sub, c.doc)
		})
	}
	// A nil Scope must still encode as an array (X-SCOPE-1).
	validateAgainst(t, "authority-authorization-check.schema.json", "response", &pass.AuthorizationCheckResponse{})
}
