package sandbox_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority/console"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

// todoPlan reads first and adds items later, behind a person.
var todoPlan = []pass.Stage{
	{Name: "look", Scope: pass.Scope{"todos:read"}},
	{Name: "add", Scope: pass.Scope{"todos:read", "todos:write"}, Gate: pass.GateHuman},
}

// stagedMission runs a staged request to approval (through the admin API)
// and returns the agent's mission handle.
func (e *env) stagedMission(task string) (*harness.Mission, string) {
	e.t.Helper()
	req, done := e.pendingStaged(task, todoPlan)
	if status, body := e.api("POST", e.page()+"api/decide", adminToken, `{"id":"`+req.MissionID+`","outcome":"approve"}`); status != 200 {
		e.t.Fatalf("POST decide = %d %s", status, body)
	}
	a := e.wait(done)
	if a.err != nil {
		e.t.Fatal(a.err)
	}
	m, err := e.agent.Mission(a.grant)
	if err != nil {
		e.t.Fatal(err)
	}
	return m, req.MissionID
}

// requestStage starts RequestStage in the background and waits until the
// admin API lists the move.
func (e *env) requestStage(m *harness.Mission, to string) <-chan error {
	e.t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := m.RequestStage(context.Background(), to, "the user asked me to add an item")
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, body := e.api("GET", e.page()+"api/pending", adminToken, "")
		var out struct{ Transitions []console.APITransition }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			e.t.Fatal(err)
		}
		for _, tr := range out.Transitions {
			if tr.MissionID == m.ID() {
				if tr.To != to || tr.Gate != pass.GateHuman || tr.From != "look" || tr.Reason == "" {
					e.t.Errorf("listed move %+v", tr)
				}
				return done
			}
		}
		select {
		case err := <-done:
			e.t.Fatalf("RequestStage ended before the move was listed: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.t.Fatal("the stage move was never listed")
	return nil
}

// The request page shows the plan with its gates; a waiting stage move is
// listed with approve and deny; the admin API's decide-stage decides it.
func TestStageMovesAdminAPI(t *testing.T) {
	e := newEnv(t, false)
	req, done := e.pendingStaged("Add 'Call mum' to my list", todoPlan)
	b := e.web()
	_, body, _ := b.get(e.approvalURL(req.MissionID))
	for _, want := range []string{`data-stage="look" data-gate="auto"`, `data-stage="add" data-gate="human"`} {
		if !strings.Contains(body, want) {
			t.Errorf("request page lacks %s", want)
		}
	}
	if status, body := e.api("POST", e.page()+"api/decide", adminToken, `{"id":"`+req.MissionID+`","outcome":"approve"}`); status != 200 {
		t.Fatalf("POST decide = %d %s", status, body)
	}
	a := e.wait(done)
	if a.err != nil {
		t.Fatal(a.err)
	}
	m, err := e.agent.Mission(a.grant)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID()

	moved := e.requestStage(m, "add")
	_, body, _ = b.get(e.page())
	if !strings.Contains(body, `id="move-`+id+`"`) || !strings.Contains(body, "Stage moves waiting for you") {
		t.Errorf("index does not list the move:\n%s", body)
	}
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"bad outcome", `{"id":"` + id + `","outcome":"maybe"}`, http.StatusBadRequest},
		{"unknown field", `{"id":"` + id + `","outcome":"approve","scope":["x"]}`, http.StatusBadRequest},
		{"unknown mission", `{"id":"msn_nope","outcome":"approve"}`, http.StatusNotFound},
	} {
		if status, body := e.api("POST", e.page()+"api/decide-stage", adminToken, tc.body); status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.status)
		}
	}
	if status, _ := e.api("POST", e.page()+"api/decide-stage", "", `{"id":"`+id+`","outcome":"approve"}`); status != http.StatusUnauthorized {
		t.Errorf("decide-stage without the token: %d", status)
	}
	status, body := e.api("POST", e.page()+"api/decide-stage", adminToken, `{"id":"`+id+`","outcome":"approve"}`)
	if status != 200 || !strings.Contains(body, `"stage":"add"`) {
		t.Fatalf("POST decide-stage = %d %s", status, body)
	}
	if err := <-moved; err != nil {
		t.Fatalf("RequestStage: %v", err)
	}
	if status, body := e.api("POST", e.page()+"api/decide-stage", adminToken, `{"id":"`+id+`","outcome":"approve"}`); status != http.StatusConflict {
		t.Errorf("second decide-stage = %d %s, want 409", status, body)
	}

	// Back, then a move denied through the page's form.
	if _, err := m.RequestStage(context.Background(), "look", "done adding"); err != nil {
		t.Fatal(err)
	}
	moved = e.requestStage(m, "add")
	_, _, csrf := b.get(e.page())
	resp := b.post(e.page()+"decide-stage", url.Values{"csrf": {csrf}, "id": {id}, "action": {"deny"}, "reason": {"not now"}}, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "staged=") {
		t.Fatalf("POST decide-stage form = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if err := <-moved; err == nil || !strings.Contains(err.Error(), string(pass.CodeTransitionDenied)) {
		t.Fatalf("denied RequestStage = %v", err)
	}
	rec, err := e.sb.Enterprise.Mission(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if last := rec.History.Events[len(rec.History.Events)-1]; last.Type != "stage_denied" || !strings.HasPrefix(last.By, "human:") {
		t.Errorf("last history entry %s by %s", last.Type, last.By)
	}
}
