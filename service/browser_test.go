package service_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// browserPass redeems a browser pass and returns the response.
func (e *env) browserRedeem(t *testing.T, vr pass.ValidationResponse, methods ...string) *pass.BrowserSessionResponse {
	t.Helper()
	value := e.idp.issue(vr)
	req := redemption(e.idp, pass.BrowserSession, vr.User.Email, value)
	req.InitializationMethods = methods
	r := e.redeem(pass.BrowserSession, req, nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	validJSON(t, r.body, "service-redeem-browser-session.schema.json", "response") // S-RED-18
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("redemption Cache-Control = %q, want no-store (S-BRW-16)", cc)
	}
	var resp pass.BrowserSessionResponse
	r.decode(t, &resp)
	return &resp
}

// S-BRW-1..5, S-BRW-9, S-BRW-13, S-BRW-14, S-BRW-16, S-BRW-17: the plain
// v0.1 construction, a GET of the initialization URL.
func TestBrowserSessionGET(t *testing.T) {
	e := newEnv(t, nil)
	vr := validation(corpUser, pass.BrowserSession, "tickets:read")
	vr.DestinationURL = appURL + "/tickets/42"
	resp := e.browserRedeem(t, vr)
	if resp.OneTime == nil || !*resp.OneTime || resp.ExpiresAt == nil || !resp.ExpiresAt.After(e.clock.Now()) {
		t.Errorf("one_time = %v, expires_at = %v", resp.OneTime, resp.ExpiresAt)
	}
	if resp.ExpiresAt.Sub(e.clock.Now()) > time.Minute {
		t.Errorf("initialization URL lives %v, want at most 60 s (G-29)", resp.ExpiresAt.Sub(e.clock.Now()))
	}
	if resp.InitializationRequest != nil {
		t.Errorf("a plain v0.1 Harness got initialization_request")
	}
	tok := queryToken(t, resp.InitializationURL)
	if len(tok) < 22 {
		t.Fatalf("initialization token %q too short", tok)
	}
	// S-BRW-15: parameters an attacker adds never steer the redirect.
	r := e.do(http.MethodGet, resp.InitializationURL+"&next=https://evil.test/&redirect=//evil.test", nil, nil)
	if r.status != http.StatusSeeOther {
		t.Fatalf("init GET: %d %s", r.status, r.body)
	}
	if loc := r.header.Get("Location"); loc != appURL+"/tickets/42" {
		t.Errorf("Location = %q, want the approved destination", loc)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	cookie := sessionCookie(t, r)
	// S-BRW-9: the session is the validated user and agent.
	api := e.get("/api/tickets", http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}})
	if api.status != http.StatusOK {
		t.Fatalf("API with the session: %d %s", api.status, api.body)
	}
	var got map[string]any
	api.decode(t, &got)
	if got["user"] != corpUser || got["agent"] != "agent-7" || got["credential"] != "session" {
		t.Errorf("session delegation = %v", got)
	}
	// S-BRW-3, S-BRW-11: used.
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status != http.StatusGone || r.errorCode() != pass.CodeInitTokenUsed {
		t.Errorf("second GET: %d %s, want 410 init_token_used", r.status, r.body)
	} else {
		validError(t, r)
	}
	// S-BRW-17, S-AUD-1: the audit has the initialization, no token.
	recs := e.logs.records("agentpass initialization")
	if len(recs) != 2 || recs[0]["outcome"] != "ok" || recs[0]["user"] != corpUser || recs[0]["agent"] != "agent-7" {
		t.Errorf("initialization audit = %v", recs)
	}
	if strings.Contains(e.logs.String(), tok) || strings.Contains(e.logs.String(), cookie.Value) {
		t.Errorf("a secret was logged")
	}
}

// sessionCookie returns the session cookie set by r and checks its
// attributes (S-BRW-14, G-29).
func sessionCookie(t *testing.T, r *response) *http.Cookie {
	t.Helper()
	raw := r.header.Get("Set-Cookie")
	for _, attr := range []string{"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(raw, attr) {
			t.Errorf("Set-Cookie %q lacks %s", strings.SplitN(raw, "=", 2)[0], attr)
		}
	}
	if strings.Contains(raw, "Domain=") {
		t.Errorf("__Host- cookie with a Domain attribute")
	}
	resp := http.Response{Header: r.header}
	for _, c := range resp.Cookies() {
		if c.Name == service.SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", service.SessionCookie, r.header)
	return nil
}

// je.browser-bootstrap-hardening: a Harness that lists POST gets a secret-free
// URL and a form to submit.
func TestBrowserSessionPOST(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.browserRedeem(t, validation(corpUser, pass.BrowserSession), "POST", "GET")
	if strings.Contains(resp.InitializationURL, "?") {
		t.Errorf("initialization_url %q carries a query", resp.InitializationURL)
	}
	ir := resp.InitializationRequest
	if ir == nil || ir.Method != "POST" || ir.FormFields[service.InitTokenField] == "" {
		t.Fatalf("initialization_request = %+v", ir)
	}
	form := url.Values{service.InitTokenField: {ir.FormFields[service.InitTokenField]}}
	post := func(ct string, body string) *response {
		return e.do(http.MethodPost, resp.InitializationURL, http.Header{"Content-Type": {ct}}, strings.NewReader(body))
	}
	if r := post("application/json", `{}`); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("JSON POST: %d, want 415", r.status)
	}
	// The token in the query of a POST is not read.
	if r := e.do(http.MethodPost, resp.InitializationURL+"?token="+form.Get(service.InitTokenField), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("")); r.status != http.StatusBadRequest {
		t.Errorf("token in the query of a POST: %d, want 400", r.status)
	}
	r := post("application/x-www-form-urlencoded", form.Encode())
	if r.status != http.StatusSeeOther || r.header.Get("Location") != appURL+"/" {
		t.Fatalf("form POST: %d Location %q, want 303 to the default destination: %s", r.status, r.header.Get("Location"), r.body)
	}
	sessionCookie(t, r)
	if r := post("application/x-www-form-urlencoded", form.Encode()); r.status != http.StatusGone {
		t.Errorf("second POST: %d, want 410", r.status)
	}
}

// S-BRW-4, S-BRW-11, S-BRW-12, G-29: unknown, expired, HEAD and prefetch.
func TestInitializationRejections(t *testing.T) {
	e := newEnv(t, nil)
	init := e.appPath("/agentpass/initialize")
	if r := e.do(http.MethodGet, init+"?token=api_unknown", nil, nil); r.status != http.StatusNotFound || r.errorCode() != pass.CodeInitTokenUnknown {
		t.Errorf("unknown token: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, init, nil, nil); r.status != http.StatusBadRequest {
		t.Errorf("no token: %d", r.status)
	}

	// HEAD and prefetch never consume.
	resp := e.browserRedeem(t, validation(corpUser, pass.BrowserSession))
	if r := e.do(http.MethodHead, resp.InitializationURL, nil, nil); r.status >= 300 {
		t.Errorf("HEAD: %d", r.status)
	}
	for _, h := range []http.Header{{"Sec-Purpose": {"prefetch;prerender"}}, {"Purpose": {"prefetch"}}} {
		if r := e.do(http.MethodGet, resp.InitializationURL, h, nil); r.status == http.StatusSeeOther {
			t.Errorf("prefetch %v consumed the token", h)
		}
	}
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status != http.StatusSeeOther {
		t.Fatalf("GET after HEAD and prefetch: %d %s", r.status, r.body)
	}

	// Expired, then still refused.
	resp = e.browserRedeem(t, validation(corpUser, pass.BrowserSession))
	e.clock.Advance(61 * time.Second)
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status != http.StatusGone || r.errorCode() != pass.CodeInitTokenExpired {
		t.Errorf("expired: %d %s, want 410 init_token_expired", r.status, r.body)
	}
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status != http.StatusGone {
		t.Errorf("expired, again: %d, want 410", r.status)
	}

	// S-BRW-12: a failed first attempt (the delegation was revoked in
	// between) still uses the token up.
	vr := validation(corpUser, pass.BrowserSession)
	vr.AuthorizationID = "authz-revoked-early"
	resp = e.browserRedeem(t, vr)
	if err := e.svc.CloseAuthorization(t.Context(), vr.AuthorizationID, pass.CloseRevoke, "test"); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status == http.StatusSeeOther {
		t.Fatalf("initialization of a revoked delegation succeeded")
	}
	if r := e.do(http.MethodGet, resp.InitializationURL, nil, nil); r.status != http.StatusGone {
		t.Errorf("after a failed attempt: %d, want 410", r.status)
	}
}

func (e *env) appPath(p string) string { return appURL + p }

// S-BRW-8: 20 parallel GETs of one URL establish exactly one session.
func TestInitializationParallel(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.browserRedeem(t, validation(corpUser, pass.BrowserSession))
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do(http.MethodGet, resp.InitializationURL, nil, nil)
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusSeeOther] != 1 || codes[http.StatusGone] != 19 {
		t.Errorf("statuses = %v, want one 303 and nineteen 410", codes)
	}
	if c, _ := e.minted(); c != 1 {
		t.Errorf("%d sessions, want 1", c)
	}
}

// S-RED-14, S-BRW-10, G-30: destination policy.
func TestBrowserDestinations(t *testing.T) {
	tests := []struct {
		name   string
		allow  func(string) bool
		dest   string
		status int
		loc    string
	}{
		{"same origin by default", nil, appURL + "/x?y=1", 200, appURL + "/x?y=1"},
		{"other origin refused by default", nil, "https://evil.test/", 403, ""},
		{"absent: default path", nil, "", 200, appURL + "/"},
		{"allow-list admits another origin", func(d string) bool { return strings.HasPrefix(d, "https://docs.app.test/") }, "https://docs.app.test/a", 200, "https://docs.app.test/a"},
		{"allow-list refuses", func(d string) bool { return false }, appURL + "/x", 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *service.Config) { c.AllowedDestinations = tt.allow })
			vr := validation(corpUser, pass.BrowserSession)
			vr.DestinationURL = tt.dest
			value := e.idp.issue(vr)
			r := e.redeem(pass.BrowserSession, redemption(e.idp, pass.BrowserSession, corpUser, value), nil)
			if r.status != tt.status {
				t.Fatalf("redeem: %d %s, want %d", r.status, r.body, tt.status)
			}
			if r.status != 200 {
				if r.errorCode() != pass.CodeDestinationNotAllowed {
					t.Errorf("code %s", r.errorCode())
				}
				if _, i := e.minted(); i != 0 {
					t.Errorf("init state minted for a refused destination (S-RED-15)")
				}
				return
			}
			var resp pass.BrowserSessionResponse
			r.decode(t, &resp)
			g := e.do(http.MethodGet, resp.InitializationURL, nil, nil)
			if g.status != http.StatusSeeOther || g.header.Get("Location") != tt.loc {
				t.Errorf("init: %d Location %q, want 303 %q", g.status, g.header.Get("Location"), tt.loc)
			}
		})
	}
}

// Sessions end with the delegation (S-AUTHZ-6) and never outlive
// authorization_expires_at.
func TestSessionBoundToDelegation(t *testing.T) {
	e := newEnv(t, nil)
	end := e.clock.Now().Add(2 * time.Minute)
	vr := validation(corpUser, pass.BrowserSession)
	vr.AuthorizationExpiresAt = &end
	resp := e.browserRedeem(t, vr)
	r := e.do(http.MethodGet, resp.InitializationURL, nil, nil)
	c := sessionCookie(t, r)
	if c.MaxAge > 120 || c.MaxAge < 110 {
		t.Errorf("cookie Max-Age = %d, want about 120 (bounded by authorization_expires_at)", c.MaxAge)
	}
	h := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	if r := e.get("/api/tickets", h); r.status != http.StatusOK {
		t.Fatalf("session: %d", r.status)
	}
	e.clock.Advance(2*time.Minute + time.Second)
	if r := e.get("/api/tickets", h); r.status != http.StatusUnauthorized {
		t.Errorf("session after the delegation's end: %d, want 401", r.status)
	}
}

// S-BRW-6: 20 parallel redemptions of one browser pass mint at most one
// initialization URL.
func TestConcurrentBrowserRedemptions(t *testing.T) {
	e := newEnv(t, nil)
	value := e.idp.issue(validation(corpUser, pass.BrowserSession))
	req := redemption(e.idp, pass.BrowserSession, corpUser, value)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.redeem(pass.BrowserSession, req, nil)
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 1 || codes[409] != 19 {
		t.Errorf("statuses = %v, want one 200 and nineteen 409", codes)
	}
	if _, i := e.minted(); i != 1 {
		t.Errorf("%d init tokens, want 1", i)
	}
}
