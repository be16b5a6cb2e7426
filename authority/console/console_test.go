package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/pass"
)

func (e *env) origin() string { return strings.TrimSuffix(e.base, "/approvals") }

// TestDecisionRecordsIdentity: the decision records the signed-in
// person's verified address, never a typed name, and the reason (G-27);
// people of another domain, or without a verified address, neither see
// the request nor decide it.
func TestDecisionRecordsIdentity(t *testing.T) {
	e := newEnv(t)
	req, done := e.pending("Tidy my notes")

	for _, who := range []string{"outsider", "unverified"} {
		p := e.person()
		_, body := e.signIn(p, who, e.base+"/")
		if strings.Contains(body, req.MissionID) || !strings.Contains(body, "No request is waiting") {
			t.Errorf("%s sees the request", who)
		}
		if status, _, _ := p.get(e.base + "/requests/" + req.MissionID); status != http.StatusNotFound {
			t.Errorf("%s: request page = %d, want 404", who, status)
		}
		_, _, tok := p.get(e.base + "/")
		p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		req2, _ := http.NewRequest(http.MethodPost, e.base+"/decide", strings.NewReader(url.Values{"csrf": {tok}, "id": {req.MissionID},
			"action": {"approve"}, "scope": {"notes:read"}, "shown": {""}}.Encode()))
		req2.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req2.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := p.client.Do(req2)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=notfound") {
			t.Errorf("%s deciding: redirected to %q, want error=notfound", who, loc)
		}
	}
	if r, _ := e.k.Authority.Request(context.Background(), req.MissionID); r.Decision != nil {
		t.Fatalf("decided by someone not allowed: %+v", r.Decision)
	}

	p := e.person()
	_, body := e.signIn(p, "boss", e.base+"/")
	if !strings.Contains(body, req.MissionID) || strings.Contains(body, `name="name"`) {
		t.Fatalf("boss's page lacks the request, or offers a typed name")
	}
	// The kit's harness is unverified: said plainly, with nothing green.
	if !strings.Contains(body, "unverified harness") || strings.Contains(body, "✓ unverified") || strings.Contains(body, `<span class="ok-text">signed`) {
		t.Errorf("the unverified harness is not stated plainly, or gets a check mark")
	}
	_, body, tok := p.get(e.base + "/requests/" + req.MissionID)
	shown := shownRE.FindStringSubmatch(body)
	if shown == nil {
		t.Fatal("no shown hash on the request page")
	}
	status, body := p.post(e.base+"/decide", e.origin(), url.Values{"csrf": {tok}, "id": {req.MissionID}, "action": {"deny"},
		"reason": {"Not before Friday"}, "shown": {shown[1]}, "from": {"detail"}})
	if status != http.StatusOK || !strings.Contains(body, "Denied") {
		t.Fatalf("deny = %d\n%s", status, body)
	}
	if a := e.wait(done); a.err == nil || !strings.Contains(a.err.Error(), "Not before Friday") {
		t.Errorf("Acquire = %v, want a denial with the reason", a.err)
	}
	r, _ := e.k.Authority.Request(context.Background(), req.MissionID)
	if r.Decision == nil || r.Decision.DecidedBy != "human:boss@corp.test" || r.Decision.Reason != "Not before Friday" {
		t.Errorf("evidence %+v, want human:boss@corp.test with the reason", r.Decision)
	}
	// Nor does a notice link tell an outsider about another domain's request.
	out := e.person()
	e.signIn(out, "outsider", e.base+"/")
	for _, q := range []string{"decided", "changed", "staged"} {
		if _, body, _ := out.get(e.base + "/?" + q + "=" + req.MissionID); strings.Contains(body, "alex@corp.test") {
			t.Errorf("?%s= shows another domain's request to an outsider", q)
		}
	}
	if _, body, _ := out.get(e.base + "/history"); strings.Contains(body, req.MissionID) {
		t.Error("the history shows another domain's request to an outsider")
	}
}

var shownRE = regexpMust(`name="shown" value="([^"]*)"`)

// TestAdminAPIAuthenticator: the admin API answers only its token, records
// the token's subject and refuses a typed "by".
func TestAdminAPIAuthenticator(t *testing.T) {
	e := newEnv(t)
	req, done := e.pending("Read my notes")
	call := func(token, body string) (int, string) {
		r, _ := http.NewRequest(http.MethodPost, e.base+"/api/decide", strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := e.k.Net.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = ioCopy(b, resp)
		return resp.StatusCode, b.String()
	}
	body := `{"id":"` + req.MissionID + `","outcome":"approve","scope":["notes:read"]}`
	// Refusals are AgentPass error documents: {"error": {"code", "message"}}.
	code := func(out string) pass.Code {
		var doc pass.ErrorResponse
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Error.Message == "" {
			t.Errorf("refusal %q is not an error document: %v", out, err)
		}
		return doc.Error.Code
	}
	for _, tok := range []string{"", "wrong-token-0123456789", apiToken[:10]} {
		if status, out := call(tok, body); status != http.StatusUnauthorized || code(out) != "unauthorized" {
			t.Errorf("token %q: %d %s, want 401 unauthorized", tok, status, out)
		}
	}
	if status, out := call(apiToken, `{"id":"`+req.MissionID+`","outcome":"approve","by":"someone else"}`); status != http.StatusBadRequest || code(out) != "invalid_request" {
		t.Errorf("a typed by: %d %s, want 400 invalid_request", status, out)
	}
	if status, out := call(apiToken, body); status != http.StatusOK {
		t.Fatalf("decide = %d %s", status, out)
	}
	if a := e.wait(done); a.err != nil {
		t.Fatal(a.err)
	}
	r, _ := e.k.Authority.Request(context.Background(), req.MissionID)
	if r.Decision == nil || r.Decision.DecidedBy != "api:ops" {
		t.Errorf("evidence %+v, want api:ops", r.Decision)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	e := newEnv(t)
	for name, cfg := range map[string]console.Config{
		"no authority":     {BaseURL: e.base, Authenticator: denyAll{}},
		"no authenticator": {Authority: e.k.Authority, BaseURL: e.base},
		"http base":        {Authority: e.k.Authority, BaseURL: "http://c.test/a", Authenticator: denyAll{}},
	} {
		if _, err := console.New(cfg); err == nil || !strings.HasPrefix(err.Error(), "console: ") {
			t.Errorf("%s: New = %v, want a console: error", name, err)
		}
	}
	if _, err := console.NewTokenAuthenticator(console.Token{Secret: "short", Subject: "api:x"}); err == nil {
		t.Error("a 5-byte token was accepted")
	}
	if _, err := console.NewTokenAuthenticator(console.Token{Secret: apiToken}); err == nil {
		t.Error("a token without a subject was accepted")
	}
}

type denyAll struct{}

func (denyAll) Authenticate(*http.Request) (console.Identity, error) {
	return console.Identity{}, console.ErrUnauthenticated
}
func (denyAll) MayDecide(console.Identity, string) bool { return false }

// TestSuspendResumeNarrow: the forms next to Revoke change the live
// delegation's mission, recorded as the signed-in person; a narrowing to
// nothing is refused.
func TestSuspendResumeNarrow(t *testing.T) {
	e := newEnv(t)
	req, done := e.pending("Tidy my notes")
	if _, err := e.k.Authority.Decide(context.Background(), req.MissionID, authorityApprove("notes:read", "notes:write")); err != nil {
		t.Fatal(err)
	}
	a := e.wait(done)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if _, err := e.k.Harness.RedeemBearerToken(context.Background(), a.grant, harnessRedeem()); err != nil {
		t.Fatal(err)
	}
	p := e.person()
	_, body := e.signIn(p, "boss", e.base+"/")
	auths, _ := e.k.Authority.Authorizations(context.Background(), authorityListNow(e))
	if len(auths) != 1 || !strings.Contains(body, `action="/approvals/suspend"`) || !strings.Contains(body, `action="/approvals/narrow"`) {
		t.Fatalf("%d authorizations; the page lacks Suspend or Narrow", len(auths))
	}
	id := auths[0].ID
	_, _, tok := p.get(e.base + "/")
	steps := []struct {
		name, path string
		form       url.Values
		wantState  string
		wantScope  string
		wantNotice string
	}{
		{"suspend", "/suspend", url.Values{"id": {id}, "reason": {"checking"}}, "suspended", "notes:read notes:write", "is now suspended"},
		{"resume", "/resume", url.Values{"id": {id}}, "active", "notes:read notes:write", "is now active"},
		{"narrow to nothing", "/narrow", url.Values{"id": {id}}, "active", "notes:read notes:write", "Keep at least one scope"},
		{"narrow", "/narrow", url.Values{"id": {id}, "scope": {"notes:read"}}, "active", "notes:read", "is now active"},
	}
	for _, s := range steps {
		s.form.Set("csrf", tok)
		status, body := p.post(e.base+s.path, e.origin(), s.form)
		if status != http.StatusOK || !strings.Contains(body, s.wantNotice) {
			t.Errorf("%s: %d, notice %q missing", s.name, status, s.wantNotice)
		}
		az, err := e.k.Authority.Authorization(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(az.StateAt(e.k.Clock.Now())); got != s.wantState || strings.Join(az.Scope, " ") != s.wantScope {
			t.Errorf("%s: state %s scope %v, want %s %s", s.name, got, az.Scope, s.wantState, s.wantScope)
		}
	}
	m, err := e.k.Authority.Mission(context.Background(), req.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for _, ev := range m.History.Events {
		if ev.Type != "requested" && ev.Type != "approved" && ev.Type != "redeemed" {
			by = append(by, ev.Type+" by "+ev.By)
		}
	}
	if len(by) != 3 || !strings.HasSuffix(by[0], "human:boss@corp.test") || !strings.HasSuffix(by[2], "human:boss@corp.test") {
		t.Errorf("history: %v, want three changes by human:boss@corp.test", by)
	}
	// A form without its CSRF token is refused.
	if status, _ := p.post(e.base+"/suspend", e.origin(), url.Values{"id": {id}}); status != http.StatusForbidden {
		t.Errorf("suspend without a form token = %d, want 403", status)
	}
}
