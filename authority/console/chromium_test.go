package console_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/internal/testnet"
	"github.com/agentpass-go/agentpass/pass"
)

// artifactDir is where screenshots go: $AGENTPASS_ARTIFACTS, or
// testdata/artifacts (ignored by git).
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

// chromium opens a headless Chromium tab that reaches the console and the
// provider on their loopback ports and trusts exactly their certificates,
// and returns it with a function saving a screenshot as an artifact.
func (e *env) chromium(exe string) (context.Context, func(name string)) {
	t := e.t
	t.Helper()
	var spki, rules []string
	for _, h := range []string{consoleHost, opHost} {
		conn, err := tls.Dial("tcp", e.k.Net.Addr(h), &tls.Config{ServerName: h, RootCAs: e.k.Net.CertPool()})
		if err != nil {
			t.Fatal(err)
		}
		spki = append(spki, browser.SPKIHash(conn.ConnectionState().PeerCertificates[0]))
		conn.Close()
		ip, _, _ := net.SplitHostPort(e.k.Net.Addr(h))
		rules = append(rules, "MAP "+h+" "+ip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	sess, err := browser.Launch(ctx, browser.Options{ExecPath: exe, InsecureTrustedSPKI: spki,
		Flags: map[string]any{"host-resolver-rules": strings.Join(rules, ", ") + ", MAP * ~NOTFOUND", "window-size": "1440,900"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close() })
	tab, cancelTab := context.WithTimeout(sess.Context(), 80*time.Second)
	t.Cleanup(cancelTab)
	return tab, func(name string) {
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
}

// layout is what checkLayout measures.
type layout struct {
	ScrollWidth, InnerWidth float64
	Overflowing             []string // elements whose right edge passes the viewport
	RevokeVisible           []bool   // each Revoke button: rendered and inside the viewport
}

const measure = `(() => {
	const w = window.innerWidth;
	const over = [...document.querySelectorAll('body *')].filter(el => {
		const r = el.getBoundingClientRect();
		if (r.width === 0 || el.closest('.table-wrap') && !el.matches('.table-wrap')) return false;
		return r.right > w + 1;
	}).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
	const revoke = [...document.querySelectorAll('form.revoke button')].map(b => {
		const r = b.getBoundingClientRect(), s = getComputedStyle(b);
		return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= w && s.visibility === 'visible' && s.display !== 'none';
	});
	return {ScrollWidth: document.documentElement.scrollWidth, InnerWidth: w, Overflowing: over.slice(0, 10), RevokeVisible: revoke};
})()`

// checkLayout asserts, at each width, that nothing overflows the page
// horizontally and, when wantRevoke, that every Revoke button is on screen.
func checkLayout(t *testing.T, tab context.Context, shoot func(string), name string, wantRevoke bool) {
	t.Helper()
	for _, width := range []int64{390, 1440} {
		var l layout
		err := chromedp.Do(tab, chromedp.EmulateViewport(width, 900), chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			var err error
			l, err = chromedp.Run(ctx, chromedp.Evaluate[layout](measure))
			return err
		}))
		if err != nil {
			t.Fatal(err)
		}
		if l.ScrollWidth > l.InnerWidth || len(l.Overflowing) > 0 {
			t.Errorf("%s at %d px: page %v px wide, overflowing %v", name, width, l.ScrollWidth, l.Overflowing)
		}
		if wantRevoke && len(l.RevokeVisible) == 0 {
			t.Errorf("%s at %d px: no Revoke button", name, width)
		}
		for i, v := range l.RevokeVisible {
			if !v {
				t.Errorf("%s at %d px: Revoke button %d is not visible on screen", name, width, i)
			}
		}
		shoot(name + "-" + map[int64]string{390: "390", 1440: "1440"}[width] + ".png")
	}
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1440, 900)); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInChromium: a person signs in through the local OpenID
// provider in real headless Chromium; no destructive scope is ticked for
// them; they approve one request with a scope unticked, deny another with
// a reason, revoke the delegation and search the history. The page never
// overflows at 390 or 1440 px, and Revoke stays on screen (G-27).
func TestConsoleInChromium(t *testing.T) {
	exe := testnet.Chromium(t)
	e := newEnv(t)
	approveReq, approved := e.pending("Tidy my notes")
	denyReq, denied := e.pending("Delete old notes")
	tab, shoot := e.chromium(exe)

	// Sign in at the provider.
	approveForm := `form[data-request="` + approveReq.MissionID + `"]`
	denyForm := `form[data-request="` + denyReq.MissionID + `"]`
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.base+"/"),
		chromedp.WaitVisible(`#op-user`),
		chromedp.SetValue(`#op-user`, "boss"),
		chromedp.Click(`#op-submit`),
		chromedp.WaitVisible(approveForm),
		chromedp.WaitVisible(denyForm),
	); err != nil {
		t.Fatal(err)
	}
	who, err := chromedp.Run(tab, chromedp.Text(`#whoami`))
	if err != nil || !strings.Contains(who, "Boss Person") {
		t.Errorf("header says %q (%v)", who, err)
	}
	shown, err := chromedp.Run(tab, chromedp.Evaluate[map[string]any](`({
		checked: [...document.querySelectorAll('`+approveForm+` input[name=scope]')].map(i => i.value + ":" + i.checked),
		dangerTicked: document.querySelectorAll('input[data-danger=true]:checked').length,
		dangerShown: document.querySelectorAll('input[data-danger=true]').length,
		tier: document.querySelector('#tier-`+approveReq.MissionID+`').textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"checked":      []any{"notes:read:true", "notes:write:true", "notes:delete:false"},
		"dangerTicked": float64(0), "dangerShown": float64(2), // notes:delete on each request
		"tier": "unverified harness",
	}
	if d := cmp.Diff(want, shown); d != "" {
		t.Errorf("the pending requests as shown (-want +got):\n%s", d)
	}
	checkLayout(t, tab, shoot, "console-pending", false)

	// Approve with notes:write unticked.
	if err := chromedp.Do(tab,
		chromedp.Click(approveForm+` input[value="notes:write"]`),
		chromedp.Click(approveForm+` button[value="approve"]`),
		chromedp.WaitVisible(`.notice-ok`),
	); err != nil {
		t.Fatal(err)
	}
	a := e.wait(approved)
	if a.err != nil {
		t.Fatalf("Acquire: %v", a.err)
	}
	tok, err := e.k.Harness.RedeemBearerToken(context.Background(), a.grant, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(pass.Scope{"notes:read"}, tok.Scope); d != "" {
		t.Errorf("granted scope (-want +got):\n%s", d)
	}

	// Deny the other with a reason.
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.base+"/"),
		chromedp.WaitVisible(denyForm),
		chromedp.SetValue(denyForm+` input[name=reason]`, "Not before Friday"),
		chromedp.Click(denyForm+` button[value="deny"]`),
		chromedp.WaitVisible(`.notice-warn`),
	); err != nil {
		t.Fatal(err)
	}
	var de *harness.DeniedError
	if d := e.wait(denied); !errors.As(d.err, &de) || de.Reason != "Not before Friday" {
		t.Errorf("Acquire = %v, want a denial with the reason", d.err)
	}
	for id, want := range map[string]string{approveReq.MissionID: "", denyReq.MissionID: "Not before Friday"} {
		r, _ := e.k.Authority.Request(context.Background(), id)
		if r.Decision == nil || r.Decision.DecidedBy != "human:boss@corp.test" || r.Decision.Reason != want {
			t.Errorf("evidence of %s: %+v, want human:boss@corp.test, reason %q", id, r.Decision, want)
		}
	}

	// The live delegation, with Revoke, Suspend and Narrow on screen.
	auths, err := e.k.Authority.Authorizations(context.Background(), authorityListNow(e))
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations %v %v", auths, err)
	}
	revoke := `form.revoke[data-authorization="` + auths[0].ID + `"]`
	if err := chromedp.Do(tab, chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(revoke), chromedp.WaitVisible(`form.suspend button`)); err != nil {
		t.Fatal(err)
	}
	checkLayout(t, tab, shoot, "console-active", true)
	if err := chromedp.Do(tab,
		chromedp.SetValue(revoke+` input[name=reason]`, "laptop lost"),
		chromedp.Click(revoke+` button`),
		chromedp.WaitNotPresent(revoke),
	); err != nil {
		t.Fatal(err)
	}
	az, err := e.k.Authority.Authorization(context.Background(), auths[0].ID)
	if err != nil || az.StateAt(e.k.Clock.Now()) != pass.DelegationRevoked || az.StateBy != "human:boss@corp.test" || az.StateReason != "laptop lost" {
		t.Errorf("after Revoke: %+v %v", az, err)
	}

	// Search the history.
	if err := chromedp.Do(tab,
		chromedp.Navigate(e.base+"/history"),
		chromedp.WaitVisible(`#history-table`),
		chromedp.SetValue(`input[name=q]`, "friday"),
		chromedp.Click(`form.search button`),
		chromedp.WaitVisible(`input[name=q][value="friday"]`), // the answer's page, not the one searched from
		chromedp.WaitVisible(`#history-table`),
	); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#history-table tbody tr')].map(r => r.dataset.mission)`))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{denyReq.MissionID}, rows); d != "" {
		for _, id := range rows {
			m, _ := e.k.Authority.Mission(context.Background(), id)
			t.Logf("%s: approval %+v ended %+v task %q", id, m.Approval, m.Ended, m.Task.Description)
		}
		t.Errorf("history search for the reason (-want +got):\n%s", d)
	}
	checkLayout(t, tab, shoot, "console-history", false)
}
