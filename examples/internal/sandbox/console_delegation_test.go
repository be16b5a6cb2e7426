package sandbox_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

// tree is an orchestrator's delegation and two sub-agents' below it, each
// redeemed at the to-do Service.
type tree struct {
	root, reader, writer       *harness.Token
	rootID, readerID, writerID string // authorization ids
}

// orchestrate has a person approve an orchestrator's task with sub-agents
// allowed (approve, through the page's form or the admin API), then
// delegates todos:read and todos:write to two sub-agents that redeem.
func (e *env) orchestrate(approve func(missionID string)) *tree {
	e.t.Helper()
	ctx := context.Background()
	req, done := e.pending("Plan my week: update my list with sub-agents")
	approve(req.MissionID)
	a := e.wait(done)
	if a.err != nil {
		e.t.Fatalf("Acquire: %v", a.err)
	}
	tr := &tree{}
	var err error
	if tr.root, err = e.agent.RedeemBearerToken(ctx, a.grant, harness.RedeemOptions{}); err != nil {
		e.t.Fatal(err)
	}
	tr.rootID = e.authzOf(a.grant.MissionID)
	m, err := e.agent.Mission(a.grant)
	if err != nil {
		e.t.Fatal(err)
	}
	spawn := func(suffix string, scope pass.Scope) (*harness.Token, string) {
		g, err := m.DelegateNewKey(ctx, suffix, pass.Task{ID: "week." + suffix, Description: "Part of the week plan"}, scope, 0)
		if err != nil {
			e.t.Fatalf("delegate %s: %v", suffix, err)
		}
		sub, err := harness.New(harness.Config{HarnessID: g.HarnessID, HTTPClient: e.n.Client(), Discovery: e.n.Discovery(),
			InsecureAllowPrivateNetworks: true})
		if err != nil {
			e.t.Fatal(err)
		}
		tok, err := sub.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
		if err != nil {
			e.t.Fatalf("redeem %s: %v", suffix, err)
		}
		return tok, e.authzOf(g.MissionID)
	}
	tr.reader, tr.readerID = spawn("reader", pass.Scope{"todos:read"})
	tr.writer, tr.writerID = spawn("writer", pass.Scope{"todos:write"})
	return tr
}

// authzOf returns the authorization id of a mission's live delegation.
func (e *env) authzOf(missionID string) string {
	e.t.Helper()
	auths, err := e.sb.Enterprise.Authorizations(context.Background(), authority.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range auths {
		if a.MissionID == missionID {
			return a.ID
		}
	}
	e.t.Fatalf("no live authorization of mission %s", missionID)
	return ""
}

// rowRE finds the rows of the active delegations: authorization, parent.
var rowRE = regexp.MustCompile(`<tr class="depth-(\d)" data-authorization="([^"]+)"(?: data-parent="([^"]+)")?>`)

type row struct{ depth, id, parent string }

func rows(body string) []row {
	var out []row
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out = append(out, row{m[1], m[2], m[3]})
	}
	return out
}

// D7 on the approval page: a person allows sub-agents when approving (the
// form's checkbox); the page lists the sub-agents' delegations under their
// parent's, says what a revoke of the parent ends, and once the parent is
// revoked names the sub-agents ended with it and lists none of them; the
// Service refuses every token of the tree at its next check.
func TestDelegationTree(t *testing.T) {
	e := newEnv(t, false)
	b := e.web()
	tr := e.orchestrate(func(id string) {
		_, _, csrf := b.get(e.page())
		resp := b.post(e.page()+"decide", url.Values{"csrf": {csrf}, "id": {id}, "action": {"approve"},
			"scope": {"todos:read", "todos:write"}, "delegate": {"1"}}, nil)
		if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "decided=") {
			t.Fatalf("approve = %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	_, body, csrf := b.get(e.page())
	got := rows(body)
	if len(got) != 3 || got[0] != (row{"0", tr.rootID, ""}) || got[1].parent != tr.rootID || got[2].parent != tr.rootID ||
		got[1].depth != "1" || got[2].depth != "1" {
		t.Fatalf("active delegations %+v, want the orchestrator's %s with its two sub-agents under it", got, tr.rootID)
	}
	for _, want := range []string{"↳ sub-agent of test-agent", "test-agent/reader", "test-agent/writer", "also ends 2 sub-agent delegations"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not say %q", want)
		}
	}

	resp := b.post(e.page()+"revoke", url.Values{"csrf": {csrf}, "id": {tr.rootID}, "reason": {"done planning"}}, nil)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || len(loc.Query()["ended"]) != 2 {
		t.Fatalf("revoke = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, body, _ = b.get(e.page() + "?" + loc.RawQuery)
	if !strings.Contains(body, "Its sub-agents&#39; delegations ended with it: test-agent/reader, test-agent/writer.") &&
		!strings.Contains(body, "Its sub-agents&#39; delegations ended with it: test-agent/writer, test-agent/reader.") {
		t.Errorf("the revoke notice does not name the sub-agents ended with the parent:\n%s", body)
	}
	if n := len(rows(body)); n != 0 {
		t.Errorf("%d delegations still listed after the parent's revoke, want none", n)
	}
	for _, id := range []string{tr.readerID, tr.writerID} {
		a, err := e.sb.Enterprise.Authorization(context.Background(), id)
		if err != nil || a.State != pass.DelegationRevoked {
			t.Errorf("sub-agent delegation %s after the parent's revoke: %+v %v", id, a, err)
		}
	}
	e.clock.Advance(time.Second)
	for name, tok := range map[string]*harness.Token{"orchestrator": tr.root, "reader": tr.reader, "writer": tr.writer} {
		resp, err := tok.HTTPClient(e.n.Client()).Get(e.sb.TodoOrigin + "/api/todos")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the %s's call after the revoke = %d, want 401", name, resp.StatusCode)
		}
	}
}

// The admin API approves with sub-agents allowed (max_depth), and the
// revoke notice names only sub-agents the store shows as revoked.
func TestAdminAPIMaxDepthAndNotice(t *testing.T) {
	e := newEnv(t, false)
	tr := e.orchestrate(func(id string) {
		if status, body := e.api("POST", e.page()+"api/decide", adminToken,
			`{"id":"`+id+`","outcome":"approve","scope":["todos:read","todos:write"],"max_depth":1}`); status != http.StatusOK {
			t.Fatalf("api/decide = %d %s", status, body)
		}
	})
	b := e.web()
	_, body, _ := b.get(e.page() + "?" + url.Values{"revoked": {tr.readerID}, "ended": {tr.writerID}}.Encode())
	if !strings.Contains(body, "Revoked") || strings.Contains(body, "ended with it") {
		t.Errorf("a notice named a live delegation as ended:\n%s", body)
	}
}
