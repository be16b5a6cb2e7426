package pass_test

import (
	"encoding/json"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// fuzzDocument decodes arbitrary bytes into a fresh document and checks the
// invariants every decoder must keep: no panic, and anything accepted
// re-encodes to a document that is accepted again with the same meaning.
func fuzzDocument[T any, P interface {
	*T
	pass.Document
}](f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var doc T
		if err := pass.Decode(data, P(&doc)); err != nil {
			return
		}
		out, err := json.Marshal(P(&doc))
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		var again T
		if err := pass.Decode(out, P(&again)); err != nil {
			t.Fatalf("re-encoded document rejected: %v\n%s", err, out)
		}
		out2, _ := json.Marshal(P(&again))
		if string(out) != string(out2) {
			t.Fatalf("encoding not stable:\n%s\n%s", out, out2)
		}
	})
}

func FuzzIssuanceRequest(f *testing.F) {
	fuzzDocument[pass.IssuanceRequest](f,
		`{"type":"bearer_token","service":{"origin":"https://api.example.com"},"user":{"email":"alex@example.com"},"harness":{"id":"h","cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"a","y":"b"}}},"task":{"id":"t","description":"d","attestation":{"jwt":"a.b.c"}}}`,
		`{"type":"browser_session","service":{"origin":"https://api.example.com"},"user":{"email":"alex@bücher.example"},"harness":{"id":"h"},"task":{"id":"t","description":"d"},"intent":{"destination_url":"https://api.example.com/x"}}`,
		`{"request":{"type":"bearer_token"}}`)
}

func FuzzRedemptionRequest(f *testing.F) {
	fuzzDocument[pass.RedemptionRequest](f,
		`{"agentpass":{"type":"bearer_token","value":"ap_x"},"authority":"https://a.example.com","user":{"email":"a@example.com"},"harness_proof":{"jwt":"a.b.c"},"requested_scope":["x","*"]}`,
		`{"agentpass":{"type":"browser_session","value":"v"},"authority":"https://a.example.com","user":{"email":"a@example.com"},"initialization_methods":["POST"]}`)
}

func FuzzResolutionRequest(f *testing.F) {
	fuzzDocument[pass.ResolutionRequest](f, `{"user":{"email":"alex@example.com"}}`, `{"request":{"user":{"email":"x@xn--bcher-kva.example"}}}`)
}

func FuzzAvailableScopesRequest(f *testing.F) {
	fuzzDocument[pass.AvailableScopesRequest](f, `{"user":{"email":"colin@example.com"},"agent":{"id":"agent:x"},"task":{"id":"t","description":"d"}}`)
}

func FuzzValidationRequest(f *testing.F) {
	fuzzDocument[pass.ValidationRequest](f, `{"agentpass":{"value":"ap_8f3a"}}`)
}

func FuzzAuthorizationCheckRequest(f *testing.F) {
	fuzzDocument[pass.AuthorizationCheckRequest](f, `{"authorization_id":"authz_1"}`)
}

func FuzzAuthorizationCloseRequest(f *testing.F) {
	fuzzDocument[pass.AuthorizationCloseRequest](f, `{"authorization_id":"authz_1","action":"revoke","reason":"done"}`)
}

func FuzzServiceConfiguration(f *testing.F) {
	b, _ := json.Marshal(validServiceConfig())
	fuzzDocument[pass.ServiceConfiguration](f, string(b))
}

func FuzzAuthorityConfiguration(f *testing.F) {
	b, _ := json.Marshal(validAuthorityConfig())
	fuzzDocument[pass.AuthorityConfiguration](f, string(b))
}

func FuzzIssuanceStatus(f *testing.F) {
	fuzzDocument[pass.IssuanceStatus](f, `{"id":"r1","status":"approved","agentpass":{"type":"bearer_token","value":"v"},"poll_after_ms":5,"expires_at":"2026-01-01T00:00:00Z"}`)
}

func FuzzResolutionResponse(f *testing.F) {
	fuzzDocument[pass.ResolutionResponse](f, `{"service_authority":{"authority":"https://a.example.com","authority_configuration_url":"https://a.example.com/ap"},"trusted_federated_authorities":[{"authority":"https://f.example.com","authority_configuration_url":"https://f.example.com/ap"}]}`)
}

func FuzzValidationResponse(f *testing.F) {
	fuzzDocument[pass.ValidationResponse](f, `{"authorization_id":"a","user":{"email":"a@example.com"},"agent":{"id":"x"},"scope":["a"],"type":"browser_session","destination_url":"https://x.example.com/","cnf":{"jwk":{"kty":"OKP","crv":"Ed25519","x":"y"}},"task":{"id":"t","attested":true},"authorization_expires_at":"2026-01-01T00:00:00Z"}`)
}

func FuzzEmailDomain(f *testing.F) {
	for _, s := range []string{"alex@example.com", "x@bücher.example", "a@[::1]", "a@@b.c", "\u00ad@xn--.com", "K@\u212a.example", "x@\uff43.example", "A@XN--BCHER-KVA.example",
		"jose\u0301@corp.example", "jos\u00e9@corp.example", "alex@ab--cd.example", "alex@AB--CD.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := pass.EmailDomain(s)
		if err != nil {
			return
		}
		if d2, err := pass.CanonicalDomain(d); err != nil || d2 != d {
			t.Fatalf("canonical domain %q not stable: %q %v", d, d2, err)
		}
		c, err := pass.CanonicalEmail(s)
		if err != nil {
			t.Fatalf("EmailDomain accepted %q but CanonicalEmail refused it: %v", s, err)
		}
		if c2, err := pass.CanonicalEmail(c); err != nil || c2 != c {
			t.Fatalf("canonical e-mail %q not stable: %q %v", c, c2, err)
		}
		if !pass.SameEmail(s, c) {
			t.Fatalf("SameEmail(%q, its canonical form %q) = false", s, c)
		}
	})
}
