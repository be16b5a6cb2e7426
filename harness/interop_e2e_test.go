package harness_test

// End-to-end tests of issue #13 with a plain v0.1 Harness written here from
// the wire format alone (net/http, encoding/json and go-jose; no harness,
// dpop or pass package), against real Authorities and a real Service on the
// loopback network with DNS and TLS.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness/internal/e2e"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

const holderBindingURI = "https://agentpass-go.github.io/ext/holder-binding"

// v01Harness speaks AgentPass v0.1 as its spec defines it: holder binding
// with harness.cnf and proofs carrying iss, aud, iat, exp and jti only; no
// AgentPass-Proof header. With signal it also lists the holder-binding
// extension (to show that the signal cannot be dropped later).
type v01Harness struct {
	t      *testing.T
	e      *e2e.Env
	id     string
	key    *ecdsa.PrivateKey
	signal bool
}

func newV01Harness(t *testing.T, e *e2e.Env) *v01Harness {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &v01Harness{t: t, e: e, id: "v01-harness", key: k}
}

// sign makes a compact ES256 JWS without typ, as a v0.1 peer may.
func (h *v01Harness) sign(claims map[string]any) string {
	h.t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: h.key}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

// proof is a v0.1 harness proof (§3.1.1); extra adds claims (htm, htu, aph).
func (h *v01Harness) proof(aud string, extra map[string]any) string {
	now := h.e.Clock.Now()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	c := map[string]any{"iss": h.id, "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "jti": base64.RawURLEncoding.EncodeToString(jti)}
	for k, v := range extra {
		c[k] = v
	}
	return h.sign(c)
}

type answer struct {
	status int
	body   map[string]any
}

func (a answer) str(path ...string) string {
	var v any = a.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (h *v01Harness) call(method, url string, body any, hdr http.Header) answer {
	h.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.e.Client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return answer{resp.StatusCode, m}
}

// discover finds the Service by its DNS TXT record and the user's
// Authority through resolve_authorities; it returns the Service
// configuration and the Authority configuration.
func (h *v01Harness) discover(user string) (svc, auth answer) {
	h.t.Helper()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, h.e.Net.DNS.Addr())
	}}
	txt, err := r.LookupTXT(context.Background(), "_agentpass-service."+e2e.AppHost)
	if err != nil || len(txt) != 1 {
		h.t.Fatalf("TXT lookup: %v %v", txt, err)
	}
	svc = h.call("GET", txt[0], nil, nil)
	res := h.call("POST", svc.str("endpoints", "resolve_authorities"), map[string]any{"user": map[string]any{"email": user}}, nil)
	cfgURL := res.str("enterprise_authority", "authority_configuration_url")
	if res.status != 200 || cfgURL == "" {
		h.t.Fatalf("resolve: %d %v", res.status, res.body)
	}
	return svc, h.call("GET", cfgURL, nil, nil)
}

// issue posts the issuance request and returns the status answer.
func (h *v01Harness) issue(auth answer, typ, user string) answer {
	h.t.Helper()
	jwk, err := jose.JSONWebKey{Key: &h.key.PublicKey}.MarshalJSON()
	if err != nil {
		h.t.Fatal(err)
	}
	hi := map[string]any{"id": h.id, "cnf": map[string]any{"jwk": json.RawMessage(jwk)}}
	if h.signal {
		hi["extensions"] = []string{holderBindingURI}
	}
	return h.call("POST", auth.str("endpoints", "issuance"), map[string]any{
		"type": typ, "service": map[string]any{"origin": e2e.AppOrigin}, "user": map[string]any{"email": user},
		"harness": hi, "task": map[string]any{"id": "t1", "description": "Triage my open tickets"},
	}, nil)
}

// redeem presents the pass at the Service's endpoint for typ with proof.
func (h *v01Harness) redeem(svc answer, auth answer, typ, user, value, proof string) (answer, string) {
	h.t.Helper()
	endpoint := svc.str("endpoints", "redeem_"+typ)
	return h.call("POST", endpoint, map[string]any{
		"agentpass": map[string]any{"type": typ, "value": value}, "authority": auth.str("authority"),
		"user": map[string]any{"email": user}, "harness_proof": map[string]any{"jwt": proof},
	}, nil), endpoint
}

// use proves the credential works at the application.
func (h *v01Harness) use(typ string, redeemed answer) {
	h.t.Helper()
	if typ == "bearer_token" {
		r := h.call("GET", e2e.AppOrigin+"/api/tickets", nil, http.Header{"Authorization": {"Bearer " + redeemed.str("bearer_token")}})
		if r.status != 200 || r.str("user") != e2e.EnterpriseUser {
			h.t.Fatalf("API with the v0.1 token: %d %v", r.status, r.body)
		}
		return
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: h.e.Client.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	init := redeemed.str("initialization_url")
	if !strings.Contains(init, "token=") {
		h.t.Fatalf("a v0.1 Harness gets a GET initialization URL: %v", redeemed.body)
	}
	resp, err := browser.Get(init)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("initialization: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = browser.Get(e2e.AppOrigin + "/tickets")
	if err != nil {
		h.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Logged in as "+e2e.EnterpriseUser) {
		h.t.Fatalf("browser session: %d %s", resp.StatusCode, page)
	}
}

func humanApproval() e2e.Options { return e2e.Options{Approver: authority.Manual{}} }

// TestV01HarnessInterop: a plain v0.1 Harness gets and uses a pass, with
// human approval and with auto-approval, for a bearer token and for a
// browser session (HB-1, HB-4..HB-6, G-2 as revised, G-4; issue #13 item 6).
func TestV01HarnessInterop(t *testing.T) {
	for _, human := range []bool{false, true} {
		for _, typ := range []string{"bearer_token", "browser_session"} {
			name := typ + "/auto-approval"
			if human {
				name = typ + "/human-approval"
			}
			t.Run(name, func(t *testing.T) {
				opts := e2e.Options{}
				if human {
					opts = humanApproval()
				}
				e := e2e.New(t, opts)
				h := newV01Harness(t, e)
				svc, auth := h.discover(e2e.EnterpriseUser)
				if !strings.Contains(auth.str("authority"), "idp.corp.test") {
					t.Fatalf("authority configuration: %v", auth.body)
				}
				st := h.issue(auth, typ, e2e.EnterpriseUser)
				if st.status != http.StatusAccepted {
					t.Fatalf("issuance: %d %v", st.status, st.body)
				}
				if human {
					if st.str("status") != "pending" {
						t.Fatalf("issuance: %v", st.body)
					}
					if _, err := e.Enterprise.Decide(context.Background(), st.str("mission", "id"), authority.Decision{Outcome: authority.Approve, DecidedBy: "human:boss@corp.test"}); err != nil {
						t.Fatal(err)
					}
					// The approved status reaches a poller without AgentPass-Proof.
					st = h.call("GET", st.str("links", "self"), nil, nil)
				}
				value := st.str("agentpass", "value")
				if st.status != 200 && st.status != 202 || st.str("status") != "approved" || value == "" {
					t.Fatalf("approved status: %d %v", st.status, st.body)
				}
				redeemed, _ := h.redeem(svc, auth, typ, e2e.EnterpriseUser, value, h.proof(e2e.AppOrigin, nil))
				if redeemed.status != 200 {
					t.Fatalf("redemption with a v0.1 proof: %d %v", redeemed.status, redeemed.body)
				}
				h.use(typ, redeemed)
			})
		}
	}
}

// TestDowngradeRefused: a request that listed the holder-binding extension
// is held to it: polling its approved status without the proof is refused,
// and its pass redeemed with a v0.1 proof is refused and the delegation
// then revoked at the Authority (G-2, G-4, HB-7; issue #13 items 1, 4, 6).
func TestDowngradeRefused(t *testing.T) {
	t.Run("status without proof", func(t *testing.T) {
		e := e2e.New(t, humanApproval())
		h := newV01Harness(t, e)
		h.signal = true
		_, auth := h.discover(e2e.EnterpriseUser)
		st := h.issue(auth, "bearer_token", e2e.EnterpriseUser)
		if _, err := e.Enterprise.Decide(context.Background(), st.str("mission", "id"), authority.Decision{Outcome: authority.Approve}); err != nil {
			t.Fatal(err)
		}
		self := st.str("links", "self")
		if r := h.call("GET", self, nil, nil); r.status != 401 || r.str("error", "code") != "proof_required" || r.str("agentpass", "value") != "" {
			t.Fatalf("signalled status without proof: %d %v", r.status, r.body)
		}
		// The Harness that holds the key reads it with a hardened proof.
		sum := sha256.Sum256([]byte(st.str("id")))
		p := h.proof(auth.str("authority"), map[string]any{"htm": "GET", "htu": self, "aph": base64.RawURLEncoding.EncodeToString(sum[:])})
		if r := h.call("GET", self, nil, http.Header{"Agentpass-Proof": {p}}); r.status != 200 || r.str("agentpass", "value") == "" {
			t.Fatalf("signalled status with the holder proof: %d %v", r.status, r.body)
		}
	})
	t.Run("pass with a v0.1 proof", func(t *testing.T) {
		e := e2e.New(t, e2e.Options{})
		h := newV01Harness(t, e)
		h.signal = true
		svc, auth := h.discover(e2e.EnterpriseUser)
		st := h.issue(auth, "bearer_token", e2e.EnterpriseUser)
		r, _ := h.redeem(svc, auth, "bearer_token", e2e.EnterpriseUser, st.str("agentpass", "value"), h.proof(e2e.AppOrigin, nil))
		if r.status != 401 || r.str("error", "code") != "invalid_harness_proof" || r.str("error", "message") != "proof refused: missing htm" {
			t.Fatalf("signalled pass with a v0.1 proof: %d %v", r.status, r.body)
		}
		if strings.Contains(r.str("error", "message"), st.str("agentpass", "value")) {
			t.Error("the refusal echoes the pass")
		}
		req, err := e.Enterprise.Request(context.Background(), st.str("mission", "id"))
		if err != nil || req.AuthorizationID == "" {
			t.Fatalf("the pass was not consumed: %+v %v", req, err)
		}
		az, err := e.Enterprise.Authorization(context.Background(), req.AuthorizationID)
		if err != nil || az.State != pass.DelegationRevoked || !strings.HasPrefix(az.StateBy, "service:") {
			t.Fatalf("the Authority shows %+v %v, want the delegation revoked by the Service", az, err)
		}
	})
}

// TestRequireHardenedProofsRefusesV01 (issue #13 item 2): a Service that
// requires the hardening refuses a v0.1 redemption before the pass is
// consumed, and an Authority that requires it refuses the issuance.
func TestRequireHardenedProofsRefusesV01(t *testing.T) {
	t.Run("service", func(t *testing.T) {
		e := e2e.New(t, e2e.Options{Service: func(c *service.Config) { c.RequireHardenedProofs = true }})
		h := newV01Harness(t, e)
		svc, auth := h.discover(e2e.EnterpriseUser)
		st := h.issue(auth, "bearer_token", e2e.EnterpriseUser)
		r, _ := h.redeem(svc, auth, "bearer_token", e2e.EnterpriseUser, st.str("agentpass", "value"), h.proof(e2e.AppOrigin, nil))
		if r.status != 401 || r.str("error", "code") != "invalid_harness_proof" {
			t.Fatalf("v0.1 proof at a strict Service: %d %v", r.status, r.body)
		}
		req, err := e.Enterprise.Request(context.Background(), st.str("mission", "id"))
		if err != nil || req.AuthorizationID != "" {
			t.Fatalf("the refused pass was consumed: %+v %v", req, err)
		}
	})
	t.Run("authority", func(t *testing.T) {
		e := e2e.New(t, e2e.Options{Authority: func(c *authority.Config) { c.RequireHardenedProofs = true }})
		h := newV01Harness(t, e)
		_, auth := h.discover(e2e.EnterpriseUser)
		if st := h.issue(auth, "bearer_token", e2e.EnterpriseUser); st.status != 400 || st.str("error", "code") != "invalid_request" {
			t.Fatalf("v0.1 issuance at a strict Authority: %d %v", st.status, st.body)
		}
	})
}
