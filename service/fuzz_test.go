package service_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/discovery/dnstest"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/spectest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// fuzzService is a Service whose every lookup answers "no record" at once
// from a loopback DNS server and that trusts no Authority, so fuzzed
// requests exercise decoding and validation without network waits. Its
// rate limits are off: with the defaults, every fuzzed request after the
// first burst was a 429 that exercised nothing.
func fuzzService(f *testing.F) *service.Service {
	f.Helper()
	dns := dnstest.NewServer(f)
	d, err := discovery.New(discovery.Config{Nameservers: []string{dns.Addr()}})
	if err != nil {
		f.Fatal(err)
	}
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		f.Fatal(err)
	}
	svc, err := service.New(service.Config{
		Origin: appURL, Keys: keys, Scopes: testScopes, Discovery: d,
		RateLimits: service.RateLimits{Resolve: off, Initialize: off, Redeem: off, AvailableScopes: off},
	})
	if err != nil {
		f.Fatal(err)
	}
	return svc
}

func exampleBody(f *testing.F, name, member string) []byte {
	f.Helper()
	b, ok := spectest.Example(name)
	if !ok {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil || m[member] == nil {
		return b
	}
	return m[member]
}

// checkAnswer asserts the invariants of every answer to a fuzzed request:
// never a server error, a structured JSON error for every failure, and no
// credential.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, allowed ...int) {
	t.Helper()
	if rec.Code >= 500 && rec.Code != http.StatusBadGateway {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	ok := len(allowed) == 0
	for _, s := range allowed {
		ok = ok || rec.Code == s
	}
	if !ok {
		t.Fatalf("status %d not in %v: %s", rec.Code, allowed, rec.Body)
	}
	if rec.Code >= 400 {
		var er pass.ErrorResponse
		if err := pass.Decode(rec.Body.Bytes(), &er); err != nil {
			t.Fatalf("error body %q: %v", rec.Body, err)
		}
	}
	body := rec.Body.String()
	if strings.Contains(body, `"bearer_token":`) || strings.Contains(body, `"initialization_url":`) || rec.Header().Get("Set-Cookie") != "" {
		t.Fatalf("a credential was minted for a fuzzed request: %s", body)
	}
}

// FuzzRedeem feeds arbitrary bodies to both redemption endpoints (S-RED-5).
func FuzzRedeem(f *testing.F) {
	for _, seed := range [][]byte{
		exampleBody(f, "service-redeem-bearer-token.json", "request"),
		exampleBody(f, "service-redeem-browser-session.json", "request"),
		[]byte(`{"agentpass":{"type":"bearer_token","value":"v"},"authority":"https://idp.corp.test","user":{"email":"a@corp.test"},"requested_scope":[]}`),
		[]byte(`{"request":{"agentpass":{"type":"browser_session","value":"v"},"authority":"https://x.test","user":{"email":"a@b.test"},"harness_proof":{"jwt":"a.b.c"}}}`),
		[]byte(`{"agentpass":{"type":"bearer_token","value":"v"},"authority":"https://x.test","user":{"email":"a@b.test"},"requested_scope":"x"}`),
		[]byte(`{}`), []byte(`null`), []byte(`[]`), []byte("{\"agentpass\":{\"type\":\"bearer_token\",\"value\":\"\\u0000\"}}"),
	} {
		if seed != nil {
			f.Add(seed, true)
			f.Add(seed, false)
		}
	}
	svc := fuzzService(f)
	cfg := svc.Configuration()
	f.Fuzz(func(t *testing.T, body []byte, bearer bool) {
		u := cfg.Endpoints.RedeemBrowserSession
		if bearer {
			u = cfg.Endpoints.RedeemBearerToken
		}
		req := httptest.NewRequest(http.MethodPost, u, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		checkAnswer(t, rec, 400, 403, 404, 413)
	})
}

// FuzzResolveAndScopes feeds arbitrary bodies and assertions to the
// resolution and available-scopes endpoints (S-RES-1, S-SCOPE-1).
func FuzzResolveAndScopes(f *testing.F) {
	f.Add(exampleBody(f, "service-authority-resolution-enterprise.json", "request"), "")
	f.Add([]byte(`{"user":{"email":"alex@free.test"}}`), "")
	f.Add([]byte(`{"user":{"email":"alex@free.test"},"agent":{"id":"a"},"task":{"id":"t"}}`), "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJodHRwczovL3guZXhhbXBsZSJ9.c2ln")
	f.Add([]byte(`{"user":{"email":"a@[::1]"}}`), "a.b.c")
	svc := fuzzService(f)
	cfg := svc.Configuration()
	f.Fuzz(func(t *testing.T, body []byte, assertion string) {
		for _, u := range []string{cfg.Endpoints.ResolveAuthorities, cfg.Endpoints.AvailableScopes} {
			req := httptest.NewRequest(http.MethodPost, u, strings.NewReader(string(body)))
			req.Header.Set("Content-Type", "application/json")
			if assertion != "" && !strings.ContainsAny(assertion, "\r\n\x00") {
				req.Header.Set("Authorization", "Bearer "+assertion)
			}
			rec := httptest.NewRecorder()
			svc.ServeHTTP(rec, req)
			checkAnswer(t, rec, 400, 401, 403, 404, 413)
		}
	})
}

// FuzzInitialize feeds arbitrary queries and forms to the initialization
// endpoint: nothing is ever initialized, and the answer never echoes the
// token (S-BRW-11, S-BRW-17).
func FuzzInitialize(f *testing.F) {
	f.Add("token=api_abc", "", false)
	f.Add("", "initialization_token=api_abc", true)
	f.Add("token=a&token=b&next=https://evil.test", "initialization_token=x&initialization_token=y", true)
	f.Add("token=%zz", "%zz", true)
	svc := fuzzService(f)
	init := appURL + "/agentpass/initialize"
	f.Fuzz(func(t *testing.T, query, form string, post bool) {
		target := init
		if query != "" {
			target = init + "?" + query
		}
		if _, err := url.ParseRequestURI(target); err != nil || strings.ContainsAny(target, " \r\n\x00\x7f") {
			return
		}
		method := http.MethodGet
		if post {
			method = http.MethodPost
		}
		req := httptest.NewRequest(method, target, strings.NewReader(form))
		if post {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		checkAnswer(t, rec, 400, 404, 413, 415)
		if tok := req.URL.Query().Get("token"); len(tok) > 3 && strings.Contains(rec.Body.String(), tok) {
			t.Fatalf("the answer echoes the token")
		}
	})
}

// FuzzMiddleware feeds arbitrary credentials to the middleware: nothing
// is ever let through.
func FuzzMiddleware(f *testing.F) {
	f.Add("Bearer apt_abc", "", "")
	f.Add("DPoP apt_abc", "", "a.b.c")
	f.Add("", "aps_abc", "")
	f.Add("Basic dXNlcjpwYXNz", "x", "")
	svc := fuzzService(f)
	h := svc.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	f.Fuzz(func(t *testing.T, authz, cookie, proof string) {
		req := httptest.NewRequest(http.MethodGet, appURL+"/api", nil)
		for k, v := range map[string]string{"Authorization": authz, "DPoP": proof} {
			if v != "" && !strings.ContainsAny(v, "\r\n\x00") {
				req.Header.Set(k, v)
			}
		}
		if cookie != "" && !strings.ContainsAny(cookie, "\r\n\x00;") {
			req.Header.Set("Cookie", service.SessionCookie+"="+cookie)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, 401)
	})
}
