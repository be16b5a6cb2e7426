package authority_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/agentpass-go/agentpass/pass"
)

// v01Service is a plain v0.1 Service written in the test from the wire
// format, with none of this module's code: a configuration without
// extensions, a JWKS, an available_scopes endpoint, and assertions signed
// with go-jose (typ "JWT", as a generic JWT library writes it).
type v01Service struct {
	origin string
	key    *ecdsa.PrivateKey
	signer jose.Signer
	now    func() time.Time
	n      int
}

func newV01Service(t *testing.T, e *env, host string) *v01Service {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "v01-1"))
	if err != nil {
		t.Fatal(err)
	}
	s := &v01Service{origin: "https://" + host, key: k, signer: signer, now: e.clock.Now}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "v01-1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`{"version":"0.1","kind":"service","service":{"origin":%q,"name":"Plain"},"jwks_uri":%q,
		"trust":{"trusted_federated_authorities":[{"authority":%q,"authority_configuration_url":%q}]},
		"endpoints":{"resolve_authorities":%q,"redeem_browser_session":%q,"redeem_bearer_token":%q,"available_scopes":%q}}`,
		s.origin, s.origin+"/jwks", authID, e.auth.ConfigurationURL(), s.origin+"/resolve", s.origin+"/redeem/browser",
		s.origin+"/redeem/bearer", s.origin+"/scopes")
	mux := http.NewServeMux()
	serve := func(path, body string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		})
	}
	serve("/config", config)
	serve("/jwks", string(jwks))
	serve("/scopes", `{"scopes":[{"name":"tickets:read"},{"name":"tickets:write"}]}`)
	e.net.Serve(host, mux)
	e.net.PublishService(host, s.origin+"/config")
	return s
}

// post sends body with a fresh assertion for the Authority.
func (s *v01Service) post(t *testing.T, e *env, path string, body string) response {
	t.Helper()
	s.n++
	now := s.now()
	tok, err := jwt.Signed(s.signer).Claims(map[string]any{"iss": s.origin, "aud": authID, "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "jti": fmt.Sprintf("v01-%d", s.n)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return e.do(http.MethodPost, e.base+path, []byte(body), http.Header{"Authorization": {"Bearer " + tok}})
}

// R3, X1: an Authority with the extensions on against a plain v0.1
// Service: validation, checks, suspension (a plain 404, no mission body),
// resumption and close work as v0.1 says, and every document the
// Authority sends validates against the v0.1 schemas.
func TestPlainV01ServiceInteroperates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	s := newV01Service(t, e, "plain.test")
	h := e.v01Harness()
	h.req.Service.Origin = s.origin
	h.req.Intent = &pass.Intent{DestinationURL: s.origin + "/inbox"}
	r, st := e.issue(h.req)
	if st == nil || st.Status != pass.StatusApproved || st.AgentPass == nil {
		t.Fatalf("issuance: %d %s", r.status, r.body)
	}
	validateSchema(t, "issuance-status.schema.json", "", r.body)

	r = s.post(t, e, "/validate", fmt.Sprintf(`{"agentpass":{"type":"browser_session","value":%q}}`, st.AgentPass.Value))
	if r.status != http.StatusOK {
		t.Fatalf("validate: %d %s", r.status, r.body)
	}
	validateSchema(t, "authority-validate.schema.json", "response", r.body)
	var v struct {
		AuthorizationID string   `json:"authorization_id"`
		Scope           []string `json:"scope"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.AuthorizationID == "" || len(v.Scope) != 2 {
		t.Fatalf("validation answer %s: %v", r.body, err)
	}
	check := func(want int) response {
		t.Helper()
		r := s.post(t, e, "/authorization-check", fmt.Sprintf(`{"authorization_id":%q}`, v.AuthorizationID))
		if r.status != want {
			t.Fatalf("check: %d %s, want %d", r.status, r.body, want)
		}
		if want == http.StatusOK {
			validateSchema(t, "authority-authorization-check.schema.json", "response", r.body)
		} else {
			validateSchema(t, "error-response.schema.json", "", r.body)
		}
		return r
	}
	check(http.StatusOK)
	if _, err := e.auth.Suspend(ctx, v.AuthorizationID, "human:lee", "look"); err != nil {
		t.Fatal(err)
	}
	if r := check(http.StatusNotFound); bytes.Contains(r.body, []byte(`"mission"`)) || !bytes.Contains(r.body, []byte(pass.CodeAuthorizationUnknown)) {
		t.Errorf("a plain Service's 404 for a suspended mission: %s", r.body)
	}
	if _, err := e.auth.Resume(ctx, v.AuthorizationID, "human:lee"); err != nil {
		t.Fatal(err)
	}
	check(http.StatusOK)
	r = s.post(t, e, "/authorization-close", fmt.Sprintf(`{"authorization_id":%q,"action":"complete"}`, v.AuthorizationID))
	if r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	check(http.StatusNotFound)
	// The plain Service may read the mission record too (it is just
	// another endpoint), and nothing there depends on its extensions.
	r = s.post(t, e, "/missions/read", fmt.Sprintf(`{"authorization_id":%q}`, v.AuthorizationID))
	if m := decodeMission(t, r); m == nil || m.State != pass.MissionCompleted {
		t.Errorf("mission read by a plain Service: %d %s", r.status, r.body)
	}
}
