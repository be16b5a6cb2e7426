package pass_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func validAuthorityConfig() *pass.AuthorityConfiguration {
	return &pass.AuthorityConfiguration{
		Version: "0.1", Authority: "https://a.example.com", TrustMode: pass.TrustEnterprise,
		JWKSURI: "https://a.example.com/jwks.json",
		Endpoints: pass.AuthorityEndpoints{
			Issuance: "https://a.example.com/requests", IssuanceStatus: "https://a.example.com/requests/{id}",
			Validate: "https://a.example.com/validate", AuthorizationCheck: "https://a.example.com/check",
			AuthorizationClose: "https://a.example.com/close",
		},
		Approval: &pass.ApprovalHints{Modes: []string{"poll"}, DefaultTTLSeconds: 300},
	}
}

func validServiceConfig() *pass.ServiceConfiguration {
	return &pass.ServiceConfiguration{
		Version: "0.1", Kind: "service", Service: pass.ServiceInfo{Origin: "https://svc.example.com", Name: "Svc"},
		JWKSURI: "https://svc.example.com/jwks.json",
		Trust: pass.ServiceTrust{
			TrustedFederatedAuthorities: []pass.AuthorityRef{{Authority: "https://f.example.com", AuthorityConfigurationURL: "https://f.example.com/ap"}},
			ServiceAuthority:            &pass.AuthorityRef{Authority: "https://svc.example.com/ap", AuthorityConfigurationURL: "https://svc.example.com/ap/config"},
		},
		Endpoints: pass.ServiceEndpoints{
			ResolveAuthorities: "https://svc.example.com/resolve", RedeemBrowserSession: "https://svc.example.com/redeem-browser",
			RedeemBearerToken: "https://svc.example.com/redeem-bearer", AvailableScopes: "https://svc.example.com/scopes",
		},
	}
}

func validIssuance() *pass.IssuanceRequest {
	return &pass.IssuanceRequest{
		Type: pass.BearerToken, Service: pass.ServiceRef{Origin: "https://svc.example.com"}, User: pass.User{Email: "alex@example.com"},
		Harness: pass.HarnessInfo{ID: "h1", Cnf: &pass.Cnf{JWK: json.RawMessage(`{"kty":"EC","crv":"P-256","x":"a","y":"b"}`)}},
		Task:    pass.Task{ID: "t1", Description: "triage tickets"},
	}
}

// TestValidateRejects has one row per validation rule; each row mutates a
// valid document and expects the named field in the error.
func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name  string
		doc   func() pass.Document
		field string
	}{
		// Authority configuration (A-CFG-2, X-VER-1, X-VER-4, X-DNS-15).
		{"authority version missing", func() pass.Document { c := validAuthorityConfig(); c.Version = ""; return c }, "version"},
		{"authority version 1.0", func() pass.Document { c := validAuthorityConfig(); c.Version = "1.0"; return c }, "version"},
		{"authority version 0.1.0", func() pass.Document { c := validAuthorityConfig(); c.Version = "0.1.0"; return c }, "version"},
		{"authority version v0.1", func() pass.Document { c := validAuthorityConfig(); c.Version = "v0.1"; return c }, "version"},
		{"authority http identifier", func() pass.Document { c := validAuthorityConfig(); c.Authority = "http://a.example.com"; return c }, "authority"},
		{"authority trust_mode unknown", func() pass.Document { c := validAuthorityConfig(); c.TrustMode = "global"; return c }, "trust_mode"},
		{"authority trust_mode missing", func() pass.Document { c := validAuthorityConfig(); c.TrustMode = ""; return c }, "trust_mode"},
		{"authority jwks http", func() pass.Document { c := validAuthorityConfig(); c.JWKSURI = "http://a.example.com/j"; return c }, "jwks_uri"},
		{"authority issuance missing", func() pass.Document { c := validAuthorityConfig(); c.Endpoints.Issuance = ""; return c }, "endpoints.issuance"},
		{"authority status without {id}", func() pass.Document {
			c := validAuthorityConfig()
			c.Endpoints.IssuanceStatus = "https://a.example.com/r"
			return c
		}, "endpoints.issuance_status"},
		{"authority validate http", func() pass.Document { c := validAuthorityConfig(); c.Endpoints.Validate = "http://a/v"; return c }, "endpoints.validate"},
		{"authority check missing", func() pass.Document { c := validAuthorityConfig(); c.Endpoints.AuthorizationCheck = ""; return c }, "endpoints.authorization_check"},
		{"authority close http", func() pass.Document {
			c := validAuthorityConfig()
			c.Endpoints.AuthorizationClose = "http://a/c"
			return c
		}, "endpoints.authorization_close"},
		{"authority approval push", func() pass.Document { c := validAuthorityConfig(); c.Approval.Modes = []string{"push"}; return c }, "approval.modes"},
		{"authority approval duplicate", func() pass.Document {
			c := validAuthorityConfig()
			c.Approval.Modes = []string{"poll", "poll"}
			return c
		}, "approval.modes"},
		// Service configuration (S-CFG-2, S-CFG-3, H-DISC-2).
		{"service kind authority", func() pass.Document { c := validServiceConfig(); c.Kind = "authority"; return c }, "kind"},
		{"service origin with path", func() pass.Document {
			c := validServiceConfig()
			c.Service.Origin = "https://svc.example.com/app"
			return c
		}, "service.origin"},
		{"service origin http", func() pass.Document { c := validServiceConfig(); c.Service.Origin = "http://svc.example.com"; return c }, "service.origin"},
		{"service version 2.0", func() pass.Document { c := validServiceConfig(); c.Version = "2.0"; return c }, "version"},
		{"service jwks missing", func() pass.Document { c := validServiceConfig(); c.JWKSURI = ""; return c }, "jwks_uri"},
		{"service empty federated list", func() pass.Document {
			c := validServiceConfig()
			c.Trust.TrustedFederatedAuthorities = []pass.AuthorityRef{}
			return c
		}, "trust.trusted_federated_authorities"},
		{"service duplicate federated", func() pass.Document {
			c := validServiceConfig()
			c.Trust.TrustedFederatedAuthorities = append(c.Trust.TrustedFederatedAuthorities, c.Trust.TrustedFederatedAuthorities[0])
			return c
		}, "trust.trusted_federated_authorities"},
		{"service federated http", func() pass.Document {
			c := validServiceConfig()
			c.Trust.TrustedFederatedAuthorities[0].AuthorityConfigurationURL = "http://f/ap"
			return c
		}, "trust.trusted_federated_authorities.authority_configuration_url"},
		{"service authority http", func() pass.Document {
			c := validServiceConfig()
			c.Trust.ServiceAuthority.Authority = "http://x"
			return c
		}, "trust.service_authority.authority"},
		{"service redeem bearer missing", func() pass.Document { c := validServiceConfig(); c.Endpoints.RedeemBearerToken = ""; return c }, "endpoints.redeem_bearer_token"},
		{"service scopes http", func() pass.Document { c := validServiceConfig(); c.Endpoints.AvailableScopes = "http://x/s"; return c }, "endpoints.available_scopes"},
		// Resolution (S-RES-1, H-RES-2, S-RES-13).
		{"resolution email missing", func() pass.Document { return &pass.ResolutionRequest{} }, "user.email"},
		{"resolution email nope", func() pass.Document { return &pass.ResolutionRequest{User: pass.User{Email: "nope"}} }, "user.email"},
		{"resolution empty response", func() pass.Document { return &pass.ResolutionResponse{} }, "response"},
		{"resolution enterprise and federated", func() pass.Document {
			r := &pass.AuthorityRef{Authority: "https://a.example.com", AuthorityConfigurationURL: "https://a.example.com/ap"}
			return &pass.ResolutionResponse{EnterpriseAuthority: r, TrustedFederatedAuthorities: []pass.AuthorityRef{*r}}
		}, "enterprise_authority"},
		{"resolution enterprise and service", func() pass.Document {
			r := &pass.AuthorityRef{Authority: "https://a.example.com", AuthorityConfigurationURL: "https://a.example.com/ap"}
			return &pass.ResolutionResponse{EnterpriseAuthority: r, ServiceAuthority: r}
		}, "enterprise_authority"},
		{"resolution empty federated", func() pass.Document {
			return &pass.ResolutionResponse{TrustedFederatedAuthorities: []pass.AuthorityRef{}}
		}, "trusted_federated_authorities"},
		{"resolution enterprise http", func() pass.Document {
			return &pass.ResolutionResponse{EnterpriseAuthority: &pass.AuthorityRef{Authority: "http://a", AuthorityConfigurationURL: "https://a.example.com/ap"}}
		}, "enterprise_authority.authority"},
		// Available scopes (S-SCOPE-5, S-SCOPE-7).
		{"scopes request no agent", func() pass.Document { return &pass.AvailableScopesRequest{User: pass.User{Email: "a@example.com"}} }, "agent.id"},
		{"scopes request bad email", func() pass.Document {
			return &pass.AvailableScopesRequest{User: pass.User{Email: "a@"}, Agent: pass.Agent{ID: "x"}}
		}, "user.email"},
		{"scopes response missing", func() pass.Document { return &pass.AvailableScopesResponse{} }, "scopes"},
		{"scopes response empty name", func() pass.Document { return &pass.AvailableScopesResponse{Scopes: []pass.ScopeInfo{{Name: ""}}} }, "scopes.name"},
		// Issuance request (A-ISS-1, A-ISS-2, HB-2, ATT-1, TATT-1, TATT-5).
		{"issuance type cookie", func() pass.Document { r := validIssuance(); r.Type = "cookie"; return r }, "type"},
		{"issuance type missing", func() pass.Document { r := validIssuance(); r.Type = ""; return r }, "type"},
		{"issuance origin http", func() pass.Document { r := validIssuance(); r.Service.Origin = "http://svc.example.com"; return r }, "service.origin"},
		{"issuance email missing", func() pass.Document { r := validIssuance(); r.User.Email = ""; return r }, "user.email"},
		{"issuance harness id missing", func() pass.Document { r := validIssuance(); r.Harness.ID = ""; return r }, "harness.id"},
		{"issuance task id missing", func() pass.Document { r := validIssuance(); r.Task.ID = ""; return r }, "task.id"},
		{"issuance task description missing", func() pass.Document { r := validIssuance(); r.Task.Description = ""; return r }, "task.description"},
		{"issuance cnf empty", func() pass.Document { r := validIssuance(); r.Harness.Cnf = &pass.Cnf{}; return r }, "harness.cnf.jwk"},
		{"issuance cnf private key", func() pass.Document {
			r := validIssuance()
			r.Harness.Cnf.JWK = json.RawMessage(`{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"secret"}`)
			return r
		}, "harness.cnf.jwk"},
		{"issuance cnf symmetric", func() pass.Document {
			r := validIssuance()
			r.Harness.Cnf.JWK = json.RawMessage(`{"kty":"oct","k":"c2VjcmV0"}`)
			return r
		}, "harness.cnf.jwk"},
		{"issuance cnf not object", func() pass.Document { r := validIssuance(); r.Harness.Cnf.JWK = json.RawMessage(`"key"`); return r }, "harness.cnf.jwk"},
		{"issuance attestation empty", func() pass.Document { r := validIssuance(); r.Harness.Attestation = &pass.JWTContainer{}; return r }, "harness.attestation.jwt"},
		{"issuance attestation without cnf", func() pass.Document {
			r := validIssuance()
			r.Harness.Cnf = nil
			r.Harness.Attestation = &pass.JWTContainer{JWT: "a.b.c"}
			return r
		}, "harness.cnf"},
		{"issuance task attestation empty", func() pass.Document { r := validIssuance(); r.Task.Attestation = &pass.JWTContainer{}; return r }, "task.attestation.jwt"},
		{"issuance task attestation without cnf", func() pass.Document {
			r := validIssuance()
			r.Harness.Cnf = nil
			r.Task.Attestation = &pass.JWTContainer{JWT: "a.b.c"}
			return r
		}, "harness.cnf"},
		{"issuance destination http", func() pass.Document {
			r := validIssuance()
			r.Intent = &pass.Intent{DestinationURL: "http://svc.example.com/x"}
			return r
		}, "intent.destination_url"},
		// Issuance status (H-POLL-2, H-POLL-6, A-STAT-1).
		{"status id missing", func() pass.Document { return &pass.IssuanceStatus{Status: pass.StatusPending} }, "id"},
		{"status weird", func() pass.Document { return &pass.IssuanceStatus{ID: "r", Status: "weird"} }, "status"},
		{"status approved without pass", func() pass.Document { return &pass.IssuanceStatus{ID: "r", Status: pass.StatusApproved} }, "agentpass"},
		{"status pass without value", func() pass.Document {
			return &pass.IssuanceStatus{ID: "r", Status: pass.StatusApproved, AgentPass: &pass.AgentPass{Type: pass.BearerToken}}
		}, "agentpass.value"},
		{"status negative poll", func() pass.Document {
			p := int64(-1)
			return &pass.IssuanceStatus{ID: "r", Status: pass.StatusPending, PollAfterMS: &p}
		}, "poll_after_ms"},
		// Redemption (S-RED-5, HB-3).
		{"redeem value missing", func() pass.Document {
			return &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken}, Authority: "https://a.example.com", User: pass.User{Email: "a@example.com"}}
		}, "agentpass.value"},
		{"redeem authority missing", func() pass.Document {
			return &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "v"}, User: pass.User{Email: "a@example.com"}}
		}, "authority"},
		{"redeem email missing", func() pass.Document {
			return &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "v"}, Authority: "https://a.example.com"}
		}, "user.email"},
		{"redeem proof empty", func() pass.Document {
			return &pass.RedemptionRequest{AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: "v"}, Authority: "https://a.example.com", User: pass.User{Email: "a@example.com"}, HarnessProof: &pass.JWTContainer{}}
		}, "harness_proof.jwt"},
		{"bearer response empty", func() pass.Document { return &pass.BearerTokenResponse{} }, "bearer_token"},
		{"browser response http", func() pass.Document { return &pass.BrowserSessionResponse{InitializationURL: "http://x/init"} }, "initialization_url"},
		{"browser response PUT", func() pass.Document {
			return &pass.BrowserSessionResponse{InitializationURL: "https://x.example.com/init", InitializationRequest: &pass.InitializationRequest{Method: "PUT"}}
		}, "initialization_request.method"},
		// Validation (A-VAL-4, A-VAL-9).
		{"validate value missing", func() pass.Document { return &pass.ValidationRequest{} }, "agentpass.value"},
		{"validate response no scope", func() pass.Document {
			return &pass.ValidationResponse{AuthorizationID: "a", User: pass.User{Email: "a@example.com"}, Agent: pass.Agent{ID: "x"}, Type: pass.BearerToken}
		}, "scope"},
		{"validate response no agent", func() pass.Document {
			return &pass.ValidationResponse{AuthorizationID: "a", User: pass.User{Email: "a@example.com"}, Scope: pass.Scope{}, Type: pass.BearerToken}
		}, "agent.id"},
		{"validate response bad type", func() pass.Document {
			return &pass.ValidationResponse{AuthorizationID: "a", User: pass.User{Email: "a@example.com"}, Agent: pass.Agent{ID: "x"}, Scope: pass.Scope{}, Type: "x"}
		}, "type"},
		{"validate response destination http", func() pass.Document {
			return &pass.ValidationResponse{AuthorizationID: "a", User: pass.User{Email: "a@example.com"}, Agent: pass.Agent{ID: "x"}, Scope: pass.Scope{}, Type: pass.BrowserSession, DestinationURL: "http://x"}
		}, "destination_url"},
		{"validate response empty scope value", func() pass.Document {
			return &pass.ValidationResponse{AuthorizationID: "a", User: pass.User{Email: "a@example.com"}, Agent: pass.Agent{ID: "x"}, Scope: pass.Scope{""}, Type: pass.BearerToken}
		}, "scope"},
		// Authorization check and close (A-AUTHZ-2).
		{"check id missing", func() pass.Document { return &pass.AuthorizationCheckRequest{} }, "authorization_id"},
		{"check response no scope", func() pass.Document { return &pass.AuthorizationCheckResponse{} }, "scope"},
		{"close action bad", func() pass.Document { return &pass.AuthorizationCloseRequest{AuthorizationID: "a", Action: "pause"} }, "action"},
		{"close action missing", func() pass.Document { return &pass.AuthorizationCloseRequest{AuthorizationID: "a"} }, "action"},
		{"close response status", func() pass.Document { return &pass.AuthorizationCloseResponse{Status: "active", ClosedAt: time.Now()} }, "status"},
		{"error code missing", func() pass.Document { return &pass.ErrorResponse{} }, "error.code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.doc().Validate()
			if err == nil {
				t.Fatal("Validate accepted an invalid document")
			}
			if !errors.Is(err, pass.ErrInvalidDocument) {
				t.Errorf("error %v does not match ErrInvalidDocument", err)
			}
			var fe *pass.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("error %v names field %q, want %q", err, fieldOf(err), c.field)
			}
		})
	}
}

func fieldOf(err error) string {
	var fe *pass.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

func TestValidDocumentsAccepted(t *testing.T) {
	for _, d := range []pass.Document{validAuthorityConfig(), validServiceConfig(), validIssuance()} {
		if err := d.Validate(); err != nil {
			t.Errorf("%T: %v", d, err)
		}
	}
	// HARDENING je.authority-resolution-followup: service + federated together.
	r := pass.AuthorityRef{Authority: "https://a.example.com", AuthorityConfigurationURL: "https://a.example.com/ap"}
	both := &pass.ResolutionResponse{ServiceAuthority: &r, TrustedFederatedAuthorities: []pass.AuthorityRef{r}}
	if err := both.Validate(); err != nil {
		t.Errorf("service+federated rejected: %v", err)
	}
}

// TestVersions: X-VER-1, X-VER-2, X-VER-4, X-VER-5.
func TestVersions(t *testing.T) {
	for _, v := range []string{"0.1", "0.9", "0.10"} {
		if err := pass.CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%q) = %v", v, err)
		}
	}
	for _, v := range []string{"1.0", "2.3", "0.1.0", "v0.1", "", "0", ".1", "0.", "1.x", "0.1 ", "99999999999.1"} {
		err := pass.CheckVersion(v)
		if !errors.Is(err, pass.ErrUnsupportedVersion) {
			t.Errorf("CheckVersion(%q) = %v, want ErrUnsupportedVersion", v, err)
		}
	}
	err := pass.CheckVersion("1.0")
	if !strings.Contains(err.Error(), `"1.0"`) {
		t.Errorf("error %q does not name the version", err)
	}
	// Decoding a configuration of another major fails with the version error.
	c := validAuthorityConfig()
	c.Version = "1.0"
	b, _ := json.Marshal(c)
	var got pass.AuthorityConfiguration
	if err := pass.Decode(b, &got); !errors.Is(err, pass.ErrUnsupportedVersion) {
		t.Errorf("Decode 1.0 config: %v", err)
	}
	// Numeric version is a type error, not accepted (X-VER-4).
	if err := pass.Decode([]byte(strings.Replace(string(b), `"1.0"`, `0.1`, 1)), &got); err == nil {
		t.Error("numeric version accepted")
	}
}

// TestForwardCompatible: unknown members and a higher minor are accepted
// (X-VER-2, X-VER-3).
func TestForwardCompatible(t *testing.T) {
	c := validServiceConfig()
	c.Version = "0.9"
	b, _ := json.Marshal(c)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	m["x_future"] = map[string]any{"a": 1}
	m["service"].(map[string]any)["x_ext"] = 1
	b, _ = json.Marshal(m)
	var got pass.ServiceConfiguration
	if err := pass.Decode(b, &got); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if got.Service.Origin != c.Service.Origin {
		t.Errorf("origin %q", got.Service.Origin)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	for _, body := range []string{``, `null`, `[]`, `"x"`, `{`, `{"user":{"email":"a@example.com"}} {}`, `{"user":{"email":5}}`, `{"request":[1]}`} {
		var r pass.ResolutionRequest
		if err := pass.Decode([]byte(body), &r); !errors.Is(err, pass.ErrInvalidDocument) {
			t.Errorf("Decode(%q) = %v, want ErrInvalidDocument", body, err)
		}
	}
	big := `{"user":{"email":"a@example.com"},"pad":"` + strings.Repeat("x", pass.MaxDocumentSize) + `"}`
	var r pass.ResolutionRequest
	if err := pass.Decode([]byte(big), &r); err == nil {
		t.Error("oversized document accepted")
	}
	// A scope sent as a string is rejected (X-SCOPE-1).
	var v pass.AuthorizationCheckResponse
	if err := pass.Decode([]byte(`{"scope":"tickets:read"}`), &v); err == nil {
		t.Error("string scope accepted")
	}
	if err := pass.Decode([]byte(`{"scope":null}`), &v); err == nil {
		t.Error("null scope accepted")
	}
}

func TestEmail(t *testing.T) {
	good := map[string]string{
		"alex@example.com":               "example.com",
		"Alex@Example.COM":               "example.com",
		"a.b+c@sub.example.com":          "sub.example.com",
		"user@bücher.example":            "xn--bcher-kva.example",
		"x@ÉCOLE.example":                "xn--cole-9oa.example",
		"weird@name@example.com":         "example.com", // split at the last @ (G-25); rejected by local-part rules below
		"alex@example.com.":              "example.com",
		"o'brien@example.co.uk":          "example.co.uk",
		"tag-only@xn--bcher-kva.example": "xn--bcher-kva.example",
	}
	for in, want := range good {
		got, err := pass.EmailDomain(in)
		if in == "weird@name@example.com" {
			if err == nil {
				t.Errorf("EmailDomain(%q) accepted an @ in the local part", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("EmailDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "nope", "@example.com", "alex@", "alex@localhost", "alex@[127.0.0.1]", "alex@127.0.0.1", "al ex@example.com", "alex@exa mple.com", "alex@example..com", "alex@example.com..", "alex@.example.com", "alex@192.168.1.1", "alex@-bad.example", "a\x00@example.com", "alex@exa_mple.com",
		// Review Low 4b: hyphens in the third and fourth positions of a
		// label that is not an A-label, whatever the case.
		"alex@ab--cd.example", "alex@AB--CD.example", "alex@corp.ab--cd", "alex@xy--.example"} {
		if _, err := pass.EmailDomain(in); err == nil {
			t.Errorf("EmailDomain(%q) accepted", in)
		}
	}
	if !pass.SameEmail("Alex@Example.com", "alex@example.COM") || pass.SameEmail("alex@example.com", "alex@example.org") {
		t.Error("SameEmail")
	}
}

// TestEmailLookalikes pins the #14 finding 9 fix (G-12, G-25): invisible
// and control code points are refused, domains written in a form that IDNA
// would silently fold onto another domain are refused, and local parts are
// compared in ASCII only, so that no two addresses that differ on the wire
// name one mailbox.
func TestEmailLookalikes(t *testing.T) {
	for _, in := range []string{
		"alex@corp\u200b.example",               // zero-width space in the domain
		"al\u200bex@corp.example",               // ... and in the local part
		"alex@cor\u00adp.example",               // soft hyphen
		"alex\u2060@corp.example",               // word joiner
		"alex@\uff43\uff4f\uff52\uff50.example", // full-width "corp"
		"alex@\u212aorp.example",                // KELVIN SIGN, folds to k
		"alex@corp.\u2460example",               // circled digit one, folds to 1
		"alex\u00a0@corp.example",               // no-break space
		"alex@corp.example\u200e",               // left-to-right mark
		"\ue000@corp.example",                   // private use
		"alex@corp.ex\xffample",                 // invalid UTF-8
		"jose\u0301@corp.example",               // NFD "josé" (review Low 4a)
		"\u212b@corp.example",                   // ANGSTROM SIGN, NFC is U+00C5
	} {
		if got, err := pass.EmailDomain(in); err == nil {
			t.Errorf("EmailDomain(%+q) = %q, want an error", in, got)
		}
		if _, err := pass.CanonicalEmail(in); err == nil {
			t.Errorf("CanonicalEmail(%+q) accepted", in)
		}
	}
	canon := map[string]string{
		"Alex@Corp.Example":      "alex@corp.example",
		"ALEX@BÜCHER.example":    "alex@xn--bcher-kva.example",
		"Ünïcode@bücher.example": "Ünïcode@xn--bcher-kva.example",
		"a.b+C@corp.example.":    "a.b+c@corp.example",
		"Jos\u00e9@corp.example": "jos\u00e9@corp.example", // NFC "José"
		"a--b@ab-cd.example":     "a--b@ab-cd.example",
	}
	for in, want := range canon {
		if got, err := pass.CanonicalEmail(in); err != nil || got != want {
			t.Errorf("CanonicalEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if pass.SameEmail("\u212aate@corp.example", "kate@corp.example") {
		t.Error("SameEmail folded KELVIN SIGN onto k in the local part")
	}
	if pass.SameEmail("straße@corp.example", "strasse@corp.example") {
		t.Error("SameEmail folded ß onto ss")
	}
	if !pass.SameEmail("KATE@corp.example", "kate@CORP.example") {
		t.Error("SameEmail is not ASCII case-insensitive")
	}
}

func TestOrigin(t *testing.T) {
	cases := map[string]string{
		"https://API.Example.com":         "https://api.example.com",
		"https://api.example.com:443/x?y": "https://api.example.com",
		"https://api.example.com:8443/":   "https://api.example.com:8443",
		"https://127.0.0.1:9000":          "https://127.0.0.1:9000",
		"https://[::1]:9000/a":            "https://[::1]:9000",
	}
	for in, want := range cases {
		got, err := pass.Origin(in)
		if err != nil || got != want {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"http://a.example.com", "https://", "https://user@a.example.com", "https://a.example.com/#f", "ftp://a", "HTTPS://a.example.com"} {
		if _, err := pass.Origin(in); err == nil {
			t.Errorf("Origin(%q) accepted", in)
		}
	}
	if !pass.SameOrigin("https://a.example.com/x", "https://A.example.com:443") || pass.SameOrigin("https://a.example.com", "https://a.example.com:8443") {
		t.Error("SameOrigin")
	}
	if err := pass.CheckOrigin("https://a.example.com/path"); err == nil {
		t.Error("CheckOrigin accepted a path")
	}
}

// TestScope covers the wildcard rules (X-SCOPE-2, S-RED-11, G-14).
func TestScope(t *testing.T) {
	type S = pass.Scope
	intersect := []struct {
		name    string
		a, b    S
		want    S
		isEmpty bool
	}{
		{"plain", S{"a", "b"}, S{"b", "c"}, S{"b"}, false},
		{"disjoint", S{"a"}, S{"c"}, S{}, true},
		{"empty requested", S{"a", "b"}, S{}, S{}, true},
		{"wildcard left", S{"*"}, S{"b", "c", "b"}, S{"b", "c"}, false},
		{"wildcard right", S{"a", "a", "b"}, S{"*"}, S{"a", "b"}, false},
		{"wildcard both", S{"*", "a"}, S{"*"}, S{"*"}, false},
		{"wildcard left empty right", S{"*"}, S{}, S{}, true},
		{"nil", nil, S{"a"}, S{}, true},
		{"order of left", S{"c", "b", "a"}, S{"a", "b"}, S{"b", "a"}, false},
	}
	for _, c := range intersect {
		t.Run("intersect/"+c.name, func(t *testing.T) {
			got := c.a.Intersect(c.b)
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if got.IsEmpty() != c.isEmpty {
				t.Errorf("IsEmpty = %v", got.IsEmpty())
			}
		})
	}
	subset := []struct {
		a, b S
		want bool
	}{
		{S{"a"}, S{"a", "b"}, true},
		{S{"a", "c"}, S{"a", "b"}, false},
		{S{}, S{"a"}, true},
		{S{"a"}, S{"*"}, true},
		{S{"*"}, S{"a", "b"}, false},
		{S{"*"}, S{"*"}, true},
	}
	for _, c := range subset {
		if got := c.a.SubsetOf(c.b); got != c.want {
			t.Errorf("%v.SubsetOf(%v) = %v", c.a, c.b, got)
		}
	}
	if !(S{"*"}).Allows("x") || (S{"a"}).Allows("x") || !(S{"a"}).Has("a") || (S{"*"}).Has("x") {
		t.Error("Allows/Has")
	}
	if d := cmp.Diff(S{"x", "a", "b"}, S{"x", "*", "a"}.Expand([]string{"a", "b"})); d != "" {
		t.Errorf("Expand (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"c"}, S{"a", "b"}.Missing("a", "c")); d != "" {
		t.Errorf("Missing (-want +got):\n%s", d)
	}
	if !(S{"a", "b", "a"}).Equal(S{"b", "a"}) || (S{"a"}).Equal(S{"a", "b"}) {
		t.Error("Equal")
	}
	b, _ := json.Marshal(struct{ S S }{})
	if string(b) != `{"S":[]}` {
		t.Errorf("nil scope encodes as %s", b)
	}
}

// TestWireErrors: X-ERR-2, X-ERR-3 and the errors.Is mapping.
func TestWireErrors(t *testing.T) {
	e := pass.Fail(pass.CodeAgentPassConsumed, "already used")
	if !errors.Is(e, pass.ErrConsumed) || errors.Is(e, pass.ErrExpired) {
		t.Error("sentinel mapping")
	}
	if !errors.Is(e, &pass.Error{Code: pass.CodeAgentPassConsumed}) || errors.Is(e, &pass.Error{Code: pass.CodeAgentPassExpired}) {
		t.Error("code matching")
	}
	b, _ := json.Marshal(e.Body())
	got := pass.ErrorFromResponse(409, b)
	if got.Code != pass.CodeAgentPassConsumed || got.Message != "already used" || got.Status != 409 || !errors.Is(got, pass.ErrConsumed) {
		t.Errorf("round trip: %+v", got)
	}
	// A hostile or broken body still yields a failure with a status-derived code.
	junk := pass.ErrorFromResponse(502, []byte("<html>"))
	if junk.Code != pass.CodeInternal || !errors.Is(junk, pass.ErrUnavailable) {
		t.Errorf("junk body: %+v", junk)
	}
	cause := errors.New("db down")
	wrapped := pass.Fail(pass.CodeInternal, "internal error").WithStatus(500).WithCause(cause)
	if !errors.Is(wrapped, cause) {
		t.Error("cause lost")
	}
	if b, _ := json.Marshal(wrapped.Body()); strings.Contains(string(b), "db down") {
		t.Error("cause leaked to the wire")
	}
	for _, c := range []pass.Code{pass.CodeAgentPassExpired, pass.CodeInitTokenExpired} {
		if !errors.Is(pass.Fail(c, "").WithStatus(410), pass.ErrExpired) {
			t.Errorf("%s is not ErrExpired", c)
		}
	}
	if !errors.Is(pass.Fail(pass.CodeAuthorizationUnknown, "").WithStatus(404), pass.ErrRevoked) {
		t.Error("authorization_unknown is not ErrRevoked")
	}
}

func TestStatusURLEscapes(t *testing.T) {
	c := validAuthorityConfig()
	if got := c.StatusURL("a/b?c"); got != "https://a.example.com/requests/a%2Fb%3Fc" {
		t.Errorf("StatusURL = %s", got)
	}
	if !c.AllowsServiceAuthorities() {
		t.Error("absent policy must mean true")
	}
	f := false
	c.Policy = &pass.AuthorityPolicy{AllowServiceAuthorities: &f}
	if c.AllowsServiceAuthorities() {
		t.Error("explicit false ignored")
	}
}

func TestAgentPassStringHidesValue(t *testing.T) {
	p := pass.AgentPass{Type: pass.BearerToken, Value: "ap_secret"}
	if strings.Contains(p.String(), "secret") {
		t.Error("String leaks the value")
	}
}

// TestScopeLargeInputs: input bounds — a scope list fills at most one
// 64 KiB document, but that is ~10,000 values, and an Authority receives
// such a list from any Service a Harness names (available_scopes). Dedupe,
// Intersect, SubsetOf and Equal must stay near linear on it (they were
// quadratic: about a second of CPU per document), and keep their results.
func TestScopeLargeInputs(t *testing.T) {
	const n = 20_000
	big := make(pass.Scope, 0, 2*n)
	for i := range n {
		big = append(big, strconv.Itoa(i))
	}
	big = append(big, big...) // every value twice
	half := big[:n/2]
	start := time.Now()
	d := big.Dedupe()
	in := big.Intersect(half)
	sub := half.SubsetOf(big)
	notSub := append(pass.Scope{"missing"}, big...).SubsetOf(half)
	eq := big.Equal(big[:n])
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("scope operations on %d values took %v", len(big), elapsed)
	}
	if len(d) != n || d[0] != "0" || d[n-1] != strconv.Itoa(n-1) {
		t.Errorf("Dedupe: %d values, first %q", len(d), d[0])
	}
	if len(in) != n/2 || in[0] != "0" || in[n/2-1] != strconv.Itoa(n/2-1) {
		t.Errorf("Intersect: %d values", len(in))
	}
	if !sub || notSub || !eq {
		t.Errorf("SubsetOf = %v, %v; Equal = %v", sub, notSub, eq)
	}
}

// TestCanonicalEmailAllocs: an address already in canonical form, as nearly
// every one on the wire is, is returned as it is, so comparing the
// validated user with the request's costs a redemption no copies; any
// other spelling still gets its canonical copy.
func TestCanonicalEmailAllocs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice@corp.example", "alice@corp.example"},
		{"Alice@corp.example", "alice@corp.example"},
		{"alice@Corp.Example", "alice@corp.example"},
		{"josé@corp.example", "josé@corp.example"},
	} {
		if got, err := pass.CanonicalEmail(tc.in); err != nil || got != tc.want {
			t.Errorf("CanonicalEmail(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := pass.CanonicalEmail("jose\u0301@corp.example"); err == nil {
		t.Error("a local part not in NFC was accepted")
	}
	n := testing.AllocsPerRun(100, func() {
		if !pass.SameEmail("alice@corp.example", "alice@corp.example") {
			t.Fatal("SameEmail")
		}
	})
	if n != 0 {
		t.Errorf("SameEmail on canonical addresses: %v allocations, want 0", n)
	}
}
