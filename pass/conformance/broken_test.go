package conformance_test

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/pass/conformance"
)

// fault breaks one behaviour of a party: it sees each request (with its
// body) and either answers it itself (true) or lets the real party answer.
type fault func(w http.ResponseWriter, r *http.Request, body map[string]any, next http.Handler) bool

func breaking(f fault) wrap {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, _ := io.ReadAll(r.Body)
			var body map[string]any
			_ = json.Unmarshal(raw, &body)
			r.Body = io.NopCloser(bytes.NewReader(raw))
			if f(w, r, body, h) {
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(raw))
			h.ServeHTTP(w, r)
		})
	}
}

// record runs next and returns what it answered.
func record(next http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec
}

func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	maps.Copy(w.Header(), rec.Header())
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func jwtHeader(tok string) map[string]any {
	h, _, _ := strings.Cut(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(h)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func jwtClaims(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) < 2 {
		return nil
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func str(m map[string]any, path ...string) string {
	var v any = m
	for _, p := range path {
		o, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = o[p]
	}
	s, _ := v.(string)
	return s
}

func issueToken(w http.ResponseWriter) bool {
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"bearer_token": "broken-token-0123456789", "scope": []string{"items:read"}, "expires_in": 60})
	return true
}

func isRedeem(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Contains(r.URL.Path, "redeem")
}

func bearerOf(r *http.Request) string {
	s, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return s
}

// A target still speaking TLS 1.1 fails X-DNS-13.
func TestOldTLSIsCaught(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]any{})
	}))
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	srv.StartTLS()
	defer srv.Close()
	rep, err := conformance.Run(t.Context(), conformance.Config{
		ServiceConfigURL: srv.URL + "/configuration", User: user, HTTPClient: srv.Client(),
		InsecureAllowPrivateNetworks: true, Only: []string{"X-DNS-13"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := rep.Find("X-DNS-13", "")
	if !ok || got.Outcome != conformance.Fail {
		t.Errorf("X-DNS-13 = %+v, want fail", got)
	}
}

type want struct {
	id, name string
	outcome  conformance.Outcome
}

// breakCase is a party broken in one way and the results that must show
// it.
type breakCase struct {
	name      string
	auth, svc fault
	only      []string
	want      []want
	cfg       func(*conformance.Config)
}

// Each broken party makes the check that guards against its flaw fail
// (or warn, for a recommendation), so a green run means something.
func TestBrokenPartiesAreCaught(t *testing.T) {
	tests := []breakCase{
		{name: "Service falls back when the domain says none", only: []string{"S-RES-7"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if str(b, "user", "email") != "eve@locked.test" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, map[string]any{"trusted_federated_authorities": []map[string]string{
					{"authority": idpID, "authority_configuration_url": idpID + "/configuration"}}})
				return true
			},
			want: []want{{"S-RES-7", "", conformance.Fail}}},
		{name: "Service trusts the pass without asking the Authority", only: []string{"S-RED-9"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				return isRedeem(r) && strings.HasPrefix(str(b, "agentpass", "value"), "conformance-unknown-") && issueToken(w)
			},
			want: []want{{"S-RED-9", "", conformance.Fail}}},
		{name: "Service accepts a proof with alg none", only: []string{"HB-7"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				return isRedeem(r) && jwtHeader(str(b, "harness_proof", "jwt"))["alg"] == "none" && issueToken(w)
			},
			want: []want{{"HB-7", "proof with alg none", conformance.Fail}}},
		{name: "Service accepts a proof HMAC-signed with the public key", only: []string{"HB-7"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				return isRedeem(r) && jwtHeader(str(b, "harness_proof", "jwt"))["alg"] == "HS256" && issueToken(w)
			},
			want: []want{{"HB-7", "proof HMAC", conformance.Fail}}},
		{name: "Service skips the proof's audience", only: []string{"G-3"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				aud, _ := jwtClaims(str(b, "harness_proof", "jwt"))["aud"].(string)
				return isRedeem(r) && aud != "" && aud != appOrigin && issueToken(w)
			},
			want: []want{{"G-3", "proof for another audience", conformance.Warn}}},
		{name: "Service redeems without a proof", only: []string{"HB-8"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				_, has := b["harness_proof"]
				return isRedeem(r) && !has && issueToken(w)
			},
			want: []want{{"HB-8", "", conformance.Fail}}},
		{name: "Service calls the Authority before checking the request", only: []string{"S-RED-5"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !isRedeem(r) || b["user"] != nil || b["agentpass"] == nil {
					return false
				}
				b["user"] = map[string]any{"email": user} // "fixes" the request, so the pass is spent
				raw, _ := json.Marshal(b)
				r.Body = io.NopCloser(bytes.NewReader(raw))
				r.ContentLength = int64(len(raw))
				rec := record(next, r)
				httpx.WriteError(w, nil, pass.Fail(pass.CodeInvalidRequest, "user.email missing"))
				_ = rec
				return true
			},
			want: []want{{"S-RED-5", "", conformance.Fail}}},
		{name: "Service accepts an unsigned Authority assertion", only: []string{"S-SCOPE"},
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.Contains(r.URL.Path, "scopes") || jwtHeader(bearerOf(r))["alg"] != "none" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, pass.AvailableScopesResponse{Scopes: []pass.ScopeInfo{{Name: "items:read"}}})
				return true
			},
			want: []want{{"S-SCOPE-3", "", conformance.Fail}}},
		{name: "Service lets an initialization URL work twice", only: []string{"S-BRW"},
			svc: func() fault {
				var mu sync.Mutex
				seen := map[string]*httptest.ResponseRecorder{}
				return func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
					if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "initialize") {
						return false
					}
					key := r.URL.Path + "?" + r.URL.Query().Get("token")
					rec := record(next, r)
					mu.Lock()
					defer mu.Unlock()
					if rec.Code < 400 {
						seen[key] = rec
					} else if old := seen[key]; old != nil {
						rec = old
					}
					replay(w, rec)
					return true
				}
			}(),
			want: []want{{"S-BRW-1", "", conformance.Fail}}},
		{name: "Service keeps honouring a revoked token", only: []string{"S-AUTHZ"},
			cfg: func(c *conformance.Config) { c.RevocationWait = time.Second },
			svc: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if r.URL.Path != "/api/items" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, map[string]any{"items": []string{}})
				return true
			},
			want: []want{{"S-AUTHZ-6", "", conformance.Fail}}},
		{name: "Authority validates a pass twice", only: []string{"A-VAL-1", "A-VAL-8"},
			auth: func() fault {
				var mu sync.Mutex
				ok := map[string]*httptest.ResponseRecorder{}
				return func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
					if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/validate") {
						return false
					}
					v := str(b, "agentpass", "value")
					rec := record(next, r)
					mu.Lock()
					defer mu.Unlock()
					if rec.Code == http.StatusOK {
						ok[v] = rec
					} else if old := ok[v]; old != nil && rec.Code == http.StatusConflict {
						rec = old
					}
					replay(w, rec)
					return true
				}
			}(),
			want: []want{{"A-VAL-1", "", conformance.Fail}, {"A-VAL-8", "", conformance.Fail}}},
		{name: "Authority accepts an unsigned Service assertion", only: []string{"A-VAL-3"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.HasSuffix(r.URL.Path, "/validate") || jwtHeader(bearerOf(r))["alg"] != "none" {
					return false
				}
				httpx.WriteError(w, nil, pass.Fail(pass.CodeAgentPassInvalid, "unknown AgentPass").WithStatus(http.StatusNotFound))
				return true
			},
			want: []want{{"A-VAL-3", "", conformance.Fail}}},
		{name: "Authority burns a pass shown by the wrong Service", only: []string{"A-VAL-7"},
			auth: func() fault {
				var mu sync.Mutex
				burnt := map[string]bool{}
				return func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
					if !strings.HasSuffix(r.URL.Path, "/validate") {
						return false
					}
					v := str(b, "agentpass", "value")
					mu.Lock()
					defer mu.Unlock()
					if burnt[v] {
						httpx.WriteError(w, nil, pass.Fail(pass.CodeAgentPassConsumed, "already used"))
						return true
					}
					rec := record(next, r)
					if rec.Code == http.StatusForbidden {
						burnt[v] = true
					}
					replay(w, rec)
					return true
				}
			}(),
			want: []want{{"A-VAL-7", "", conformance.Fail}}},
		{name: "Authority accepts a request of an unknown type", only: []string{"A-ISS-1"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if b["type"] != "cookie" {
					return false
				}
				httpx.WriteJSON(w, http.StatusAccepted, map[string]any{"id": "req-broken", "status": "pending"})
				return true
			},
			want: []want{{"A-ISS-1", "", conformance.Fail}}},
		{name: "Authority accepts an unsigned task attestation", only: []string{"TATT"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if jwtHeader(str(b, "task", "attestation", "jwt"))["alg"] != "none" {
					return false
				}
				httpx.WriteJSON(w, http.StatusAccepted, map[string]any{"id": "req-broken", "status": "pending"})
				return true
			},
			want: []want{{"TATT-6", "", conformance.Fail}}},
		{name: "Authority keeps answering a revoked delegation", only: []string{"A-AUTHZ", "A-VAL-1"},
			auth: func() fault {
				var mu sync.Mutex
				ok := map[string]*httptest.ResponseRecorder{}
				return func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
					if !strings.HasSuffix(r.URL.Path, "/authorization-check") && !strings.Contains(r.URL.Path, "authorization") {
						return false
					}
					id := str(b, "authorization_id")
					rec := record(next, r)
					mu.Lock()
					defer mu.Unlock()
					if rec.Code == http.StatusOK {
						ok[id] = rec
					} else if old := ok[id]; old != nil && rec.Code == http.StatusNotFound {
						rec = old
					}
					replay(w, rec)
					return true
				}
			}(),
			want: []want{{"A-AUTHZ-3", "", conformance.Fail}}},
		{name: "Authority publishes a private key", only: []string{"A-CFG-5"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if !strings.Contains(r.URL.Path, "jwks") {
					return false
				}
				rec := record(next, r)
				var set map[string][]map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &set)
				for _, k := range set["keys"] {
					k["d"] = "AAAA"
				}
				httpx.WriteJSON(w, http.StatusOK, set)
				return true
			},
			want: []want{{"A-CFG-5", "", conformance.Fail}}},
		{name: "Authority releases a hardened pass without a proof", only: []string{"ext:holder"},
			auth: func() fault {
				var mu sync.Mutex
				withPass := map[string]*httptest.ResponseRecorder{}
				return func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
					if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "status") && !strings.Contains(r.URL.Path, "requests") {
						return false
					}
					rec := record(next, r)
					mu.Lock()
					defer mu.Unlock()
					if strings.Contains(rec.Body.String(), `"agentpass"`) {
						withPass[r.URL.Path] = rec
					} else if old := withPass[r.URL.Path]; old != nil {
						rec = old
					}
					replay(w, rec)
					return true
				}
			}(),
			want: []want{{"ext:holder-binding", "Authority", conformance.Fail}}},
		{name: "Authority shows a mission without a holder proof", only: []string{"ext:mission"},
			auth: func(w http.ResponseWriter, r *http.Request, b map[string]any, next http.Handler) bool {
				if b["mission_id"] == nil || r.Header.Get(pass.ProofHeader) != "" {
					return false
				}
				httpx.WriteJSON(w, http.StatusOK, map[string]any{"mission": map[string]any{"id": b["mission_id"]}})
				return true
			},
			want: []want{{"ext:mission", "", conformance.Fail}}},
	}
	tests = append(tests, missionLayerBreaks()...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wa, ws := keep, keep
			if tt.auth != nil {
				wa = breaking(tt.auth)
			}
			if tt.svc != nil {
				ws = breaking(tt.svc)
			}
			o := newOurs(t, approveAll(), wa, ws)
			cfg := o.config()
			cfg.Only = tt.only
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			rep, err := conformance.Run(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				got, ok := rep.Find(w.id, w.name)
				if !ok {
					t.Fatalf("no result %s %q", w.id, w.name)
				}
				t.Logf("%s %q: %s: %s", w.id, got.Name, got.Outcome, got.Got)
				if got.Outcome != w.outcome {
					t.Errorf("%s %q = %s (%s), want %s%s", w.id, got.Name, got.Outcome, got.Got, w.outcome, exchanges(got))
				}
			}
			if w := tt.want[0]; w.outcome == conformance.Fail && !rep.Failed() {
				t.Error("the report does not count as failed")
			}
		})
	}
}
