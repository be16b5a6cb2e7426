package authority_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// TestBadInput: item 11, X-ERR-1..3 — every endpoint answers wrong methods,
// content types, oversized and malformed bodies with the structured error,
// the same code twice, and unknown paths with a JSON 404.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bearer := http.Header{"Authorization": {"Bearer " + e.svc.Assertion(authID)}}
	posts := []string{"/requests", "/validate", "/authorization-check", "/authorization-close"}
	for _, p := range posts {
		url := e.base + p
		t.Run(p, func(t *testing.T) {
			defer e.bind(t)()
			r := e.do(http.MethodGet, url, nil, bearer)
			wantError(t, r, 405, pass.CodeMethodNotAllowed)
			if r.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
			req.Header = bearer.Clone()
			req.Header.Set("Content-Type", "text/plain")
			resp, err := e.net.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 415 {
				t.Errorf("text/plain: %d", resp.StatusCode)
			}
			big := `{"x":"` + strings.Repeat("a", 70<<10) + `"}`
			wantError(t, e.do(http.MethodPost, url, big, bearer), 413, pass.CodeRequestTooLarge)
			for range 2 { // X-ERR-3: same failure, same code
				wantError(t, e.do(http.MethodPost, url, `{"type":`, bearer), 400, pass.CodeInvalidRequest)
			}
			wantError(t, e.do(http.MethodPost, url, `[]`, bearer), 400, pass.CodeInvalidRequest)
		})
	}
	for _, p := range []string{"/configuration", "/jwks.json", "/requests/req_x"} {
		r := e.do(http.MethodPost, e.base+p, "{}", nil)
		wantError(t, r, 405, pass.CodeMethodNotAllowed)
		if r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s Allow %q", p, r.header.Get("Allow"))
		}
	}
	wantError(t, e.do(http.MethodGet, e.base+"/nope", nil, nil), 404, pass.CodeNotFound)
	if p, _ := e.auth.Pending(ctx, authority.ListOptions{}); len(p) != 0 {
		t.Fatal("bad input stored a request")
	}
}

// FuzzIssuanceHandler posts arbitrary bodies to a real issuance handler
// (real DNS, real Service over TLS, in-memory store): it never panics,
// never answers 5xx, and a refused body stores nothing.
func FuzzIssuanceHandler(f *testing.F) {
	e := newEnv(f)
	h := e.newHarness()
	for _, seed := range []string{
		mustJSON(h.req), mustJSON(e.plainHarness().req), `{}`, `{"request":{}}`, `null`, `{"type":"bearer_token"}`,
		`{"type":"browser_session","service":{"origin":"https://todo.test"},"user":{"email":"a@corp.test"},"harness":{"id":"h","cnf":{"jwk":{"kty":"EC"}}},"task":{"id":"t","description":"d"}}`,
		`{"type":"browser_session","service":{"origin":"https://todo.test"},"user":{"email":"a@corp.test"},"harness":{"id":"h","attestation":{"jwt":"a.b.c"}},"task":{"id":"t","description":"d","attestation":{"jwt":"x"}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before, _ := e.auth.Pending(ctx, authority.ListOptions{Limit: 1000})
		req := httptest.NewRequest(http.MethodPost, authID+"/requests", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.auth.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusBadGateway {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		after, _ := e.auth.Pending(ctx, authority.ListOptions{Limit: 1000})
		if rec.Code >= 400 && len(after) != len(before) {
			t.Fatalf("a refused request (%d) changed the store", rec.Code)
		}
		var er pass.ErrorResponse
		if rec.Code >= 400 && pass.Decode(rec.Body.Bytes(), &er) != nil {
			t.Fatalf("unstructured error %d: %s", rec.Code, rec.Body)
		}
	})
}

// FuzzValidateHandler posts arbitrary bodies with a valid Service assertion
// to the validate handler: never a panic or 5xx, and the one real pass is
// never consumed by garbage.
func FuzzValidateHandler(f *testing.F) {
	e := newEnv(f, approveAll)
	value, st := e.approvedPass(e.newHarness())
	for _, seed := range []string{`{"agentpass":{"value":"ap_x"}}`, `{}`, `{"agentpass":{}}`, `{"agentpass":{"value":""}}`, `{"request":{"agentpass":{"value":"x"}}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if strings.Contains(string(body), value) {
			return
		}
		req := httptest.NewRequest(http.MethodPost, authID+"/validate", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.svc.Assertion(authID))
		rec := httptest.NewRecorder()
		e.auth.ServeHTTP(rec, req)
		if rec.Code >= 500 || rec.Code == 200 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		r, err := e.auth.Request(ctx, st.Mission.ID)
		if err != nil || !r.ConsumedAt.IsZero() {
			t.Fatalf("the real pass was consumed: %v", err)
		}
	})
}
