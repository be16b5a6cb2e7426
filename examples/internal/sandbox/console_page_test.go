package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

// TestPageShowsPendingRequest: the page lists the request with user,
// harness, tier, task, type and the available scopes as ticked checkboxes,
// and the Harness was given the request's page as links.approval.
func TestPageShowsPendingRequest(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pending("Add 'Water the plants' to my list")
	b := e.web()
	status, body, tok := b.get(e.page())
	if status != http.StatusOK || tok == "" {
		t.Fatalf("GET page = %d (token %q)", status, tok)
	}
	for _, want := range []string{
		"alex@corp.test", "test-agent", "unverified", "Add &#39;Water the plants&#39; to my list", "API token",
		`value="todos:read" data-danger="false" checked`, `value="todos:write" data-danger="false" checked`,
		`value="todos:delete" data-danger="true">`, // destructive: never ticked for the person (G-27)
		`data-request="` + req.MissionID + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if got, want := e.approvalURL(req.MissionID), e.sb.ApprovalPage(e.sb.Enterprise).URL()+"requests/"+req.MissionID; got != want {
		t.Errorf("Progress ApprovalURL = %q, want %q", got, want)
	}
	status, body, _ = b.get(e.approvalURL(req.MissionID))
	if status != http.StatusOK || !strings.Contains(body, `name="from" value="detail"`) || !strings.Contains(body, req.MissionID) {
		t.Errorf("request page = %d", status)
	}
	if _, err := e.sb.Enterprise.Decide(context.Background(), req.MissionID, authority.Decision{Outcome: authority.Cancel}); err != nil {
		t.Fatal(err)
	}
	e.wait(done)
}

// TestCSRF: a form POST from another origin, or without the form token, or
// with a token bound to another cookie, is refused with 403 and decides
// nothing; the same form from the page succeeds.
func TestCSRF(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pending("Add 'Call mum' to my list")
	b := e.web()
	_, _, tok := b.get(e.page())
	decide := e.page() + "decide"
	form := func(token string) url.Values {
		return url.Values{"csrf": {token}, "id": {req.MissionID}, "action": {"approve"}, "scope": {"todos:read"}}
	}
	other := e.web()
	_, _, otherTok := other.get(e.page()) // a token bound to another browser's cookie

	tests := []struct {
		name    string
		form    url.Values
		headers map[string]string
	}{
		{"cross-origin (Sec-Fetch-Site)", form(tok), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.test"}},
		{"cross-origin (Origin only)", form(tok), map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.test"}},
		{"missing token", form(""), nil},
		{"token of another cookie", form(otherTok), nil},
		{"forged token", form(strings.Repeat("A", len(tok))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := b.in(t).post(decide, tt.form, tt.headers)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status = %d, want 403", resp.StatusCode)
			}
			r, err := e.sb.Enterprise.Request(context.Background(), req.MissionID)
			if err != nil || r.Status != pass.StatusPending {
				t.Errorf("request after a refused POST: %v, %v; want still pending", r.Status, err)
			}
		})
	}
	resp := b.post(decide, form(tok), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin POST with the token = %d, want 303", resp.StatusCode)
	}
	if a := e.wait(done); a.err != nil {
		t.Fatalf("Acquire: %v", a.err)
	}
}

// TestDenyWithReason: the approver names themself, denies with a reason;
// the Harness gets a DeniedError with that reason and the evidence records
// the approver.
func TestDenyWithReason(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pending("Delete everything on my list")
	b := e.web()
	_, _, tok := b.get(e.page())
	// No typed name: the form has no field for one (G-27).
	_, body, _ := b.get(e.page())
	if strings.Contains(body, `name="name"`) || !strings.Contains(body, "devnet operator (no login)") {
		t.Errorf("the page offers a typed name, or does not show who is signed in")
	}
	resp := b.post(e.page()+"decide", url.Values{"csrf": {tok}, "id": {req.MissionID}, "action": {"deny"}, "reason": {"Not before Friday"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "decided=") {
		t.Fatalf("deny = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	a := e.wait(done)
	var denied *harness.DeniedError
	if !errors.As(a.err, &denied) || denied.Reason != "Not before Friday" {
		t.Fatalf("Acquire error = %v, want a DeniedError with the reason", a.err)
	}
	r, _ := e.sb.Enterprise.Request(context.Background(), req.MissionID)
	if r.Decision == nil || r.Decision.DecidedBy != sandbox.DevnetOperator || r.Decision.Reason != "Not before Friday" {
		t.Errorf("evidence = %+v, want DecidedBy %s with the reason", r.Decision, sandbox.DevnetOperator)
	}
	_, body, _ = b.get(e.page() + "?decided=" + req.MissionID)
	if !strings.Contains(body, "Denied") {
		t.Errorf("no notice after denying")
	}
	// Deciding again is refused with a notice, not an error page.
	resp = b.post(e.page()+"decide", url.Values{"csrf": {tok}, "id": {req.MissionID}, "action": {"approve"}, "scope": {"todos:read"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=notpending") {
		t.Errorf("second decision redirected to %q, want error=notpending", loc)
	}
}

// TestApproveNeedsAScope: unticking every scope does not approve.
func TestApproveNeedsAScope(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pending("Add 'Buy bread' to my list")
	b := e.web()
	_, _, tok := b.get(e.page())
	resp := b.post(e.page()+"decide", url.Values{"csrf": {tok}, "id": {req.MissionID}, "action": {"approve"}}, nil)
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=noscope") {
		t.Errorf("approve without scope redirected to %q", loc)
	}
	r, _ := e.sb.Enterprise.Request(context.Background(), req.MissionID)
	if r.Status != pass.StatusPending {
		t.Errorf("status = %s, want pending", r.Status)
	}
	_, _ = e.sb.Enterprise.Decide(context.Background(), req.MissionID, authority.Decision{Outcome: authority.Cancel})
	e.wait(done)
}

// TestRevoke: an active authorization is listed and revoked from the page;
// the Service refuses the token at its next check (A-AUTHZ-4).
func TestRevoke(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	g, err := e.agent.Acquire(ctx, harness.Request{Service: e.sb.TodoOrigin, User: "alex@corp.test", Task: pass.Task{Description: "Summarise my to-do list"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auths, _ := e.sb.Enterprise.Authorizations(ctx, authority.ListOptions{})
	if len(auths) != 1 {
		t.Fatalf("%d authorizations, want 1", len(auths))
	}
	b := e.web()
	_, body, csrf := b.get(e.page())
	if !strings.Contains(body, `data-authorization="`+auths[0].ID+`"`) || !strings.Contains(body, "Summarise my to-do list") {
		t.Fatal("the active authorization is not listed")
	}
	resp := b.post(e.page()+"revoke", url.Values{"csrf": {csrf}, "id": {auths[0].ID}, "reason": {"laptop lost"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke = %d", resp.StatusCode)
	}
	a, err := e.sb.Enterprise.Authorization(ctx, auths[0].ID)
	if err != nil || a.State != pass.DelegationRevoked || a.StateReason != "laptop lost" || a.StateBy != sandbox.DevnetOperator {
		t.Fatalf("after revoke: %+v, %v", a, err)
	}
	_, body, _ = b.get(e.page() + "?revoked=" + a.ID)
	if !strings.Contains(body, "Revoked") || strings.Contains(body, `data-authorization="`+a.ID+`"`) {
		t.Error("the page still lists the revoked authorization, or shows no notice")
	}
	// The Service re-checks every 100 ms in this sandbox: past that, its
	// next call checks with the Authority and learns of the revocation.
	e.clock.Advance(time.Second)
	resp, err = tok.HTTPClient(e.n.Client()).Get(e.sb.TodoOrigin + "/api/todos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the Service answers %d after the revocation and its re-check interval, want 401", resp.StatusCode)
	}
}

// TestAdminAPI: the API refuses requests without the token or with a wrong
// one (401), lists pending requests, decides with a narrowed scope that
// the Harness then receives exactly, lists and revokes authorizations.
func TestAdminAPI(t *testing.T) {
	e := newEnv(t, false)
	base := e.page() + "api/"
	for _, tt := range []struct{ name, method, path, token string }{
		{"pending without token", "GET", "pending", ""},
		{"pending with wrong token", "GET", "pending", "wrong"},
		{"decide without token", "POST", "decide", ""},
		{"authorizations with a prefix of the token", "GET", "authorizations", adminToken[:10]},
		{"revoke with wrong token", "POST", "revoke", adminToken + "x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, _ := e.apiIn(t, tt.method, base+tt.path, tt.token, "")
			if status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", status)
			}
		})
	}

	req, done := e.pending("Add 'Pay rent' to my list")
	status, body := e.api("GET", base+"pending", adminToken, "")
	if status != 200 || !strings.Contains(body, req.MissionID) || !strings.Contains(body, `"harness_id":"test-agent"`) {
		t.Fatalf("GET pending = %d %s", status, body)
	}
	status, body = e.api("POST", base+"decide", adminToken, `{"id":"`+req.MissionID+`","outcome":"approve","scope":["todos:write"]}`)
	if status != 200 || !strings.Contains(body, `"status":"approved"`) {
		t.Fatalf("POST decide = %d %s", status, body)
	}
	a := e.wait(done)
	if a.err != nil {
		t.Fatal(a.err)
	}
	tok, err := e.agent.RedeemBearerToken(context.Background(), a.grant, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pass.Scope{"todos:write"}, tok.Scope); diff != "" {
		t.Errorf("token scope (-want +got):\n%s", diff)
	}
	status, body = e.api("POST", base+"decide", adminToken, `{"id":"`+req.MissionID+`","outcome":"deny"}`)
	if status != http.StatusConflict {
		t.Errorf("deciding twice = %d %s, want 409", status, body)
	}
	status, body = e.api("GET", base+"authorizations", adminToken, "")
	auths, _ := e.sb.Enterprise.Authorizations(context.Background(), authority.ListOptions{})
	if status != 200 || len(auths) != 1 || !strings.Contains(body, auths[0].ID) {
		t.Fatalf("GET authorizations = %d %s", status, body)
	}
	// Suspend by authorization id, resume by mission id: the Service
	// refuses the token while suspended and accepts it again after.
	status, body = e.api("POST", base+"suspend", adminToken, `{"id":"`+auths[0].ID+`","reason":"look"}`)
	if status != 200 || !strings.Contains(body, `"state":"suspended"`) || !strings.Contains(body, req.MissionID) {
		t.Fatalf("POST suspend = %d %s", status, body)
	}
	if status, _ = e.api("POST", base+"suspend", adminToken, `{"id":"`+req.MissionID+`"}`); status != http.StatusConflict {
		t.Errorf("suspending twice = %d, want 409", status)
	}
	e.clock.Advance(time.Second) // past the Service's CheckInterval
	if _, err := callAPI(e, tok); !errors.Is(err, harness.ErrTokenRejected) && !errors.Is(err, harness.ErrForbidden) {
		t.Errorf("API call while suspended: %v, want a refusal", err)
	}
	status, body = e.api("POST", base+"resume", adminToken, `{"id":"`+req.MissionID+`"}`)
	if status != 200 || !strings.Contains(body, `"state":"active"`) {
		t.Fatalf("POST resume = %d %s", status, body)
	}
	if status, _ = e.api("POST", base+"resume", adminToken, `{"id":"`+req.MissionID+`"}`); status != http.StatusConflict {
		t.Errorf("resuming an active mission = %d, want 409", status)
	}
	if status, _ = e.api("POST", base+"suspend", adminToken, `{"id":"msn_unknown"}`); status != http.StatusNotFound {
		t.Errorf("suspending an unknown mission = %d, want 404", status)
	}
	status, _ = e.api("POST", base+"revoke", adminToken, `{"id":"`+auths[0].ID+`","reason":"test"}`)
	if status != 200 {
		t.Fatalf("POST revoke = %d", status)
	}
	if status, _ = e.api("POST", base+"revoke", adminToken, `{"id":"`+auths[0].ID+`"}`); status != http.StatusConflict {
		t.Errorf("revoking twice = %d, want 409", status)
	}
	if status, _ = e.api("POST", base+"decide", adminToken, `{"id":"nope","outcome":"maybe"}`); status != http.StatusBadRequest {
		t.Errorf("bad outcome = %d, want 400", status)
	}
	if status, _ = e.api("POST", base+"decide", adminToken, `{"id":"nope","outcome":"deny"}`); status != http.StatusNotFound {
		t.Errorf("unknown id = %d, want 404", status)
	}
}

// callAPI calls the todo Service's API with tok and returns the answer as
// an error from harness.CheckResponse.
func callAPI(e *env, tok *harness.Token) (int, error) {
	resp, err := tok.HTTPClient(e.n.Client()).Get(e.sb.TodoOrigin + "/api/todos")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, harness.CheckResponse(resp)
}

// TestPageShowsMission: a request's page shows its mission record (state,
// version, the history with its hash chain verified), and follows the
// lifecycle: approved, redeemed, suspended.
func TestPageShowsMission(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pending("Add 'Call mum' to my list")
	b := e.web()
	_, body, _ := b.get(e.approvalURL(req.MissionID))
	for _, want := range []string{`data-mission="` + req.MissionID + `"`, `id="mission-state">pending<`, `id="mission-version">1<`, "✓ verified", `data-type="requested"`} {
		if !strings.Contains(body, want) {
			t.Errorf("pending request's page lacks %q", want)
		}
	}
	if _, err := e.sb.Enterprise.Decide(context.Background(), req.MissionID, authority.Decision{Outcome: authority.Approve, DecidedBy: "human:Robin"}); err != nil {
		t.Fatal(err)
	}
	a := e.wait(done)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if _, err := e.agent.RedeemBearerToken(context.Background(), a.grant, harness.RedeemOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sb.Enterprise.Suspend(context.Background(), req.MissionID, "human:Robin", "look"); err != nil {
		t.Fatal(err)
	}
	_, body, _ = b.get(e.approvalURL(req.MissionID))
	for _, want := range []string{`id="mission-state">suspended<`, `id="mission-version">3<`, "✓ verified",
		`data-type="approved"`, `data-type="redeemed"`, `data-type="suspended"`, "human:Robin"} {
		if !strings.Contains(body, want) {
			t.Errorf("suspended mission's page lacks %q", want)
		}
	}
}

// TestPageShowsAbandonedAndCanceled: a request its agent gave up (Cancel,
// which sends mission_complete with outcome abandoned) reads "abandoned by
// the agent" on its page, and one an operator canceled reads "canceled", so
// a person never takes the agent's retreat for someone's decision (#15).
func TestPageShowsAbandonedAndCanceled(t *testing.T) {
	e := newEnv(t, false)
	ctx := context.Background()
	start := func(task string) *harness.Pending {
		t.Helper()
		p, err := e.agent.Start(ctx, harness.Request{Service: e.sb.TodoOrigin, User: sandbox.UserEnterprise, Task: pass.Task{Description: task}})
		if err != nil {
			t.Fatal(err)
		}
		if p.MissionID == "" || p.ApprovalURL == "" {
			t.Fatalf("Pending without a mission id or approval URL: %+v", p)
		}
		return p
	}
	b := e.web()

	abandoned := start("Add 'Buy stamps' to my list")
	if err := e.agent.Cancel(ctx, abandoned); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	_, body, _ := b.get(abandoned.ApprovalURL)
	badge := `id="status-` + abandoned.MissionID + `">`
	for _, want := range []string{badge + "abandoned by the agent<", "abandoned by harness:test-agent", `id="mission-state">revoked<`} {
		if !strings.Contains(body, want) {
			t.Errorf("abandoned request's page lacks %q", want)
		}
	}

	canceled := start("Add 'Post the letter' to my list")
	if status, out := e.api("POST", e.page()+"api/decide", adminToken, `{"id":"`+canceled.MissionID+`","outcome":"cancel"}`); status != 200 {
		t.Fatalf("POST api/decide cancel = %d %s", status, out)
	}
	_, body, _ = b.get(canceled.ApprovalURL)
	badge = `id="status-` + canceled.MissionID + `">`
	if !strings.Contains(body, badge+"canceled<") || !strings.Contains(body, "canceled by api:devnet-admin") || strings.Contains(body, "abandoned") {
		t.Errorf("operator-canceled request's page does not read canceled by api:devnet-admin:\n%s", body)
	}
	if _, err := e.agent.Wait(ctx, canceled); err == nil {
		t.Error("Wait on a canceled request succeeded")
	}

	// Neither waits in the listing any more.
	_, body, _ = b.get(e.page())
	for _, p := range []*harness.Pending{abandoned, canceled} {
		if strings.Contains(body, `id="request-`+p.MissionID+`"`) {
			t.Errorf("the listing still shows %s as waiting", p.MissionID)
		}
	}
}
