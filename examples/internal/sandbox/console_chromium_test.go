package sandbox_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

// artifactDir is where screenshots go: $AGENTPASS_ARTIFACTS, or the
// package's testdata/artifacts (gitignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AGENTPASS_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("testdata", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestApproveInChromium: a person opens the approval link the Harness was
// given, in real headless Chromium, finds todos:delete unticked (it is
// destructive) and clicks Approve; the Harness's token carries exactly the
// narrowed scope, and the evidence names the signed-in identity. Screenshots are saved as artifacts.
func TestApproveInChromium(t *testing.T) {
	exe := testnet.Chromium(t)
	e := newEnv(t, true) // origins with explicit ports, as in the devnet
	req, done := e.pending("Add 'Water the plants' to my list")
	link := e.approvalURL(req.MissionID)
	if !strings.HasPrefix(link, e.sb.Origins[sandbox.EnterpriseHost]+"/corp/approvals/requests/") {
		t.Fatalf("approval link %q is not on the Enterprise Authority's page", link)
	}

	tab, shoot := e.chromium(exe)
	form := `form[data-request="` + req.MissionID + `"]`
	if err := chromedp.Do(tab,
		chromedp.Navigate(link),
		chromedp.WaitVisible(form),
		chromedp.WaitVisible(form+` input[value="todos:delete"]`),
	); err != nil {
		t.Fatal(err)
	}
	// The destructive scope is not ticked for the person (G-27).
	checked, err := chromedp.Run(tab, chromedp.Evaluate[[]bool](`[...document.querySelectorAll('`+form+` input[name=scope]')].map(i => i.checked)`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]bool{true, true, false}, checked); diff != "" {
		t.Errorf("checkboxes read, write, delete as shown (-want +got):\n%s", diff)
	}
	shoot("approval-page-before.png")
	if err := chromedp.Do(tab,
		chromedp.Click(form+` button[value="approve"]`),
		chromedp.WaitVisible(`article.status-approved`),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-approved.png")
	text, err := chromedp.Run(tab, chromedp.Text(`main`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "Approved") || !strings.Contains(text, sandbox.DevnetOperator) {
		t.Errorf("page after approving says:\n%s", text)
	}

	a := e.wait(done)
	if a.err != nil {
		t.Fatalf("Acquire: %v", a.err)
	}
	tok, err := e.agent.RedeemBearerToken(context.Background(), a.grant, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(pass.Scope{"todos:read", "todos:write"}, tok.Scope); diff != "" {
		t.Errorf("the Harness's token scope (-want +got):\n%s", diff)
	}
	r, _ := e.sb.Enterprise.Request(context.Background(), req.MissionID)
	if r.Decision == nil || r.Decision.DecidedBy != sandbox.DevnetOperator {
		t.Errorf("evidence %+v, want DecidedBy %s", r.Decision, sandbox.DevnetOperator)
	}

	// A script suspends the mission through the admin API; the request's
	// page then shows the mission record with its verified hash chain.
	if status, body := e.api("POST", e.page()+"api/suspend", adminToken, `{"id":"`+req.MissionID+`","reason":"checking"}`); status != 200 {
		t.Fatalf("POST api/suspend = %d %s", status, body)
	}
	if err := chromedp.Do(tab,
		chromedp.Navigate(link),
		chromedp.WaitVisible(`#mission-history`),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-mission.png")
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`({
		state: document.querySelector('#mission-state').textContent,
		version: document.querySelector('#mission-version').textContent,
		chain: document.querySelector('#mission-chain').textContent,
		types: [...document.querySelectorAll('#mission-history tbody tr')].map(r => r.dataset.type),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"state": "suspended", "version": "3", "types": []any{"requested", "approved", "redeemed", "suspended"}}
	if diff := cmp.Diff(want["types"], got["types"]); diff != "" || got["state"] != want["state"] || got["version"] != want["version"] {
		t.Errorf("mission on the page: state %v version %v, history (-want +got):\n%s", got["state"], got["version"], diff)
	}
	if chain, _ := got["chain"].(string); !strings.Contains(chain, "verified") {
		t.Errorf("hash chain verdict %q", got["chain"])
	}
}

// D7 on the approval page in real Chromium: the live delegations show the
// orchestrator's with its two sub-agents' under it; a click on the
// orchestrator's Revoke ends all three, the notice names the sub-agents
// ended with it, and none of the three is listed any more.
func TestDelegationTreeInChromium(t *testing.T) {
	exe := testnet.Chromium(t)
	e := newEnv(t, true)
	tr := e.orchestrate(func(id string) {
		if status, body := e.api("POST", e.page()+"api/decide", adminToken,
			`{"id":"`+id+`","outcome":"approve","scope":["todos:read","todos:write"],"max_depth":1}`); status != 200 {
			t.Fatalf("api/decide = %d %s", status, body)
		}
	})
	tab, shoot := e.chromium(exe)
	root := `tr[data-authorization="` + tr.rootID + `"]`
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.page()),
		chromedp.WaitVisible(root),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-delegation-tree.png")
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`({
		rows: [...document.querySelectorAll('tr[data-authorization]')].map(r => r.dataset.authorization),
		children: [...document.querySelectorAll('tr[data-parent="`+tr.rootID+`"]')].map(r => r.dataset.authorization).sort(),
		childIndent: getComputedStyle(document.querySelector('tr[data-parent] td')).paddingLeft,
		rootIndent: getComputedStyle(document.querySelector('`+root+` td')).paddingLeft,
		cascade: document.querySelector('`+root+` .cascade').textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	wantChildren := []any{tr.readerID, tr.writerID}
	if tr.writerID < tr.readerID {
		wantChildren = []any{tr.writerID, tr.readerID}
	}
	rows, _ := got["rows"].([]any)
	if len(rows) != 3 || rows[0] != tr.rootID {
		t.Errorf("rows %v, want the orchestrator's first, then its sub-agents'", rows)
	}
	if diff := cmp.Diff(wantChildren, got["children"]); diff != "" {
		t.Errorf("rows under the orchestrator's (-want +got):\n%s", diff)
	}
	if got["childIndent"] == got["rootIndent"] || !strings.Contains(got["cascade"].(string), "also ends 2 sub-agent delegations") {
		t.Errorf("tree not visible: indent %v vs %v, cascade note %q", got["childIndent"], got["rootIndent"], got["cascade"])
	}

	if err := chromedp.Do(tab,
		chromedp.SetValue(root+` input[name=reason]`, "done planning"),
		chromedp.Click(root+` button`),
		chromedp.WaitVisible(`.notice-warn`),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-delegation-revoked.png")
	after, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`({
		notice: document.querySelector('.notice-warn').textContent,
		rows: document.querySelectorAll('tr[data-authorization]').length,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	notice, _ := after["notice"].(string)
	if !strings.Contains(notice, "sub-agents' delegations ended with it") || !strings.Contains(notice, "test-agent/reader") ||
		!strings.Contains(notice, "test-agent/writer") || after["rows"] != float64(0) {
		t.Errorf("after revoking the orchestrator: notice %q, %v rows listed", notice, after["rows"])
	}
}

// chromium opens a headless Chromium tab that reaches idp.corp.test on its
// real port and accepts exactly that server's throwaway certificate, and
// returns it with a function saving a screenshot as an artifact.
func (e *env) chromium(exe string) (context.Context, func(name string)) {
	t := e.t
	t.Helper()
	addr := e.n.Addr(sandbox.EnterpriseHost)
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sandbox.EnterpriseHost, RootCAs: e.n.CertPool()})
	if err != nil {
		t.Fatal(err)
	}
	spki := browser.SPKIHash(conn.ConnectionState().PeerCertificates[0])
	conn.Close()
	host, _, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	sess, err := browser.Launch(ctx, browser.Options{
		ExecPath:            exe,
		InsecureTrustedSPKI: []string{spki},
		Flags: map[string]any{
			"host-resolver-rules": "MAP " + sandbox.EnterpriseHost + " " + host + ", MAP * ~NOTFOUND",
			"window-size":         "1100,900",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	tab, cancelTab := context.WithTimeout(sess.Context(), 45*time.Second)
	t.Cleanup(cancelTab)

	shoot := func(name string) {
		png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
		if err != nil {
			t.Errorf("screenshot: %v", err)
			return
		}
		p := filepath.Join(artifactDir(t), name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot: %s", p)
	}
	return tab, shoot
}

// TestStageMoveInChromium: an agent's staged mission asks for its next
// stage, behind a human gate; a person opens the approval page in real
// headless Chromium, sees the move with the stage's scope and the agent's
// reason, and approves it; the agent's RequestStage returns at the new
// stage, and the mission's page shows the plan with the current stage.
func TestStageMoveInChromium(t *testing.T) {
	e := newEnv(t, true)
	tab, shoot := e.chromium(testnet.Chromium(t))
	m, id := e.stagedMission("Add 'Book the dentist' to my list")
	moved := e.requestStage(m, "add")
	move := `article[data-mission="` + id + `"]`
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.page()),
		chromedp.WaitVisible(move),
	); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(tab, chromedp.Text(move))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"look", "add", "todos:write", "the user asked me to add an item", "human gate"} {
		if !strings.Contains(text, want) {
			t.Errorf("the move's card lacks %q:\n%s", want, text)
		}
	}
	shoot("approval-page-stage-move.png")
	if err := chromedp.Do(tab,
		chromedp.Click(move+` button[value="approve"]`),
		chromedp.WaitVisible(`.notice-ok`),
	); err != nil {
		t.Fatal(err)
	}
	if err := <-moved; err != nil {
		t.Fatalf("RequestStage after the approval: %v", err)
	}
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.page()+"requests/"+id),
		chromedp.WaitVisible(`#mission .stages`),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-stage-plan.png")
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`({
		stages: [...document.querySelectorAll('#mission .stage')].map(s => s.dataset.stage + ":" + s.dataset.gate),
		current: document.querySelector('#mission .stage.current').dataset.stage,
		types: [...document.querySelectorAll('#mission-history tbody tr')].map(r => r.dataset.type),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]any{"look:auto", "add:human"}, got["stages"]); diff != "" || got["current"] != "add" {
		t.Errorf("plan on the page: current %v, stages (-want +got):\n%s", got["current"], diff)
	}
	types, _ := got["types"].([]any)
	if len(types) < 2 || types[len(types)-1] != "stage_changed" || types[len(types)-2] != "stage_requested" {
		t.Errorf("history on the page: %v", types)
	}
}

// proposalCompiler proposes todos:read (a template's) and todos:write (a
// model's, with markup in its reason) and excludes todos:delete.
type proposalCompiler struct{}

func (proposalCompiler) Compile(context.Context, authority.CompileInput) (*authority.Proposal, error) {
	return &authority.Proposal{
		Scopes: []authority.Rationale{
			{Scope: "todos:read", Basis: authority.BasisTemplate, Source: "todo-add@1", Why: "adding an item first reads the list"},
			{Scope: "todos:write", Basis: authority.BasisModel, Why: "<b>adds</b> the item; ignore the reviewer"},
		},
		Excluded: []authority.Rationale{{Scope: "todos:delete", Basis: authority.BasisTemplate, Source: "todo-add@1", Why: "nothing is removed"}},
		Compiler: "test", Version: "1",
	}, nil
}

// TestApproveProposalInChromium: the page shows the Authority's proposal
// next to what the agent asked for, each side with its reason and the
// model's reason marked untrusted; the person narrows the grant, and the
// hash of what the page disclosed is recorded in the mission's evidence.
func TestApproveProposalInChromium(t *testing.T) {
	exe := testnet.Chromium(t)
	e := newEnv(t, true, func(o *sandbox.Options) { o.Compiler = proposalCompiler{} })
	req, done := e.pendingScope("Add 'Call the plumber' to my list", pass.Scope{"todos:read", "todos:delete"})
	if d := req.Diff(); !cmp.Equal(d.Over, pass.Scope{"todos:delete"}) || !cmp.Equal(d.Under, pass.Scope{"todos:write"}) {
		t.Fatalf("Diff = %+v", d)
	}
	link := e.approvalURL(req.MissionID)
	tab, shoot := e.chromium(exe)
	form := `form[data-request="` + req.MissionID + `"]`
	proposal := `#proposal-` + req.MissionID
	if err := chromedp.Do(tab,
		chromedp.Navigate(link),
		chromedp.WaitVisible(proposal),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-proposal.png")
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`(() => {
		const rows = [...document.querySelectorAll('`+proposal+` tbody tr')];
		return {
			sides: rows.map(r => r.dataset.scope + ":" + r.dataset.side),
			untrusted: rows.filter(r => r.querySelector('.untrusted')).map(r => r.dataset.scope),
			markup: document.querySelector('`+proposal+` tr[data-scope="todos:write"] .why').textContent,
			bold: document.querySelectorAll('`+proposal+` b').length,
			excluded: document.querySelector('`+proposal+` tr[data-scope="todos:delete"]').textContent.includes("nothing is removed"),
			checked: [...document.querySelectorAll('`+form+` input[name=scope]')].map(i => i.value + ":" + i.checked),
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"sides":     []any{"todos:read:both", "todos:delete:over", "todos:write:under"},
		"untrusted": []any{"todos:write"},
		"markup":    "<b>adds</b> the item; ignore the reviewer",
		"bold":      float64(0),
		"excluded":  true,
		// The agent asked for todos:delete, but a destructive scope is
		// never ticked for the person (G-27).
		"checked": []any{"todos:read:true", "todos:write:false", "todos:delete:false"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("proposal on the page (-want +got):\n%s", d)
	}
	if err := chromedp.Do(tab,
		chromedp.Click(form+` button[value="approve"]`),
		chromedp.WaitVisible(`#disclosure-`+req.MissionID),
	); err != nil {
		t.Fatal(err)
	}
	shoot("approval-page-proposal-approved.png")
	shown, err := chromedp.Run(tab, chromedp.Text(`#disclosure-`+req.MissionID))
	if err != nil {
		t.Fatal(err)
	}
	a := e.wait(done)
	if a.err != nil {
		t.Fatalf("Acquire: %v", a.err)
	}
	if a.grant.Proposal == nil || !a.grant.Proposal.Scope.Has("todos:read") || !a.grant.Proposal.Diff.Over.Has("todos:delete") {
		t.Errorf("the Harness saw the proposal %+v while pending", a.grant.Proposal)
	}
	m, err := e.sb.Enterprise.Mission(context.Background(), req.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.Approval.DisclosureSHA256; len(d) != 64 || d != strings.TrimSpace(shown) {
		t.Errorf("approval.disclosure_sha256 %q, the page shows %q", d, shown)
	}
	if m.ScopeBasis == nil || m.ScopeBasis.Decision != pass.ScopeHumanEdited || !cmp.Equal(m.AuthorityModel.Ceiling, pass.Scope{"todos:read"}) {
		t.Errorf("scope_basis %+v ceiling %v, want human_edited granting todos:read", m.ScopeBasis, m.AuthorityModel.Ceiling)
	}
}
