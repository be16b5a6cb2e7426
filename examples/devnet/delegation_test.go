package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// testClock is the real time plus an offset the test advances, so the
// Service's re-check interval passes without waiting.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// D7 on the devnet: a person approves an orchestrator's task through the
// admin API with sub-agents allowed (max_depth); the orchestrator hands
// narrower scopes to two sub-agents holding their own keys; the approval
// page lists them under it; revoking the orchestrator revokes them, and
// the Service refuses all three at its next check.
func TestDevnetDelegation(t *testing.T) {
	testDelegation(t, config{})
}

// The same on the PostgreSQL stores (the child's slot taken in the
// Authority's transaction, the cascade in the Service's one statement).
// Needs AGENTPASS_TEST_POSTGRES.
func TestDevnetDelegationPostgres(t *testing.T) {
	dsn := pgtest.SharedDSN(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "devnet_deleg_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		pool, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			return
		}
		defer pool.Close()
		for _, s := range []string{"corp", "strict", "federated", "service_authority", "service", "replay"} {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+prefix+"_"+s+" CASCADE")
		}
	})
	testDelegation(t, config{postgres: dsn, pgSchemaPrefix: prefix})
}

func testDelegation(t *testing.T, cfg0 config) {
	clock := &testClock{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg0.dir, cfg0.dnsAddr, cfg0.adminToken, cfg0.now = t.TempDir(), "127.0.0.1:0", "tok-1234", clock.Now
	d, err := start(ctx, cfg0, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	admin := d.manifest.Authorities[0].AdminAPI
	api := func(method, u, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok-1234")
		resp, err := d.net.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	created := make(chan string, 1)
	cfg := harness.Config{HarnessID: "devnet-orchestrator", HTTPClient: d.net.Client(), Discovery: d.net.Discovery(),
		InsecureAllowPrivateNetworks: true, Now: clock.Now, MinPoll: (100 * time.Millisecond),
		Progress: func(p harness.Progress) {
			if p.Event == harness.EventRequestCreated && p.ApprovalURL != "" {
				created <- path.Base(p.ApprovalURL)
			}
		}}
	orch, err := harness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	type acquired struct {
		g   *harness.Grant
		err error
	}
	done := make(chan acquired, 1)
	go func() {
		g, err := orch.Acquire(ctx, harness.Request{Service: d.sb.TodoOrigin, User: sandbox.UserEnterprise,
			Task: pass.Task{Description: "Plan my week: update my list with sub-agents"}})
		done <- acquired{g, err}
	}()
	var missionID string
	select {
	case missionID = <-created:
	case <-ctx.Done():
		t.Fatal("no issuance request")
	}
	if status, body := api("POST", admin+"decide", `{"id":"`+missionID+`","outcome":"approve","scope":["todos:read","todos:write"],"max_depth":1}`); status != 200 {
		t.Fatalf("admin API decide = %d %s", status, body)
	}
	a := <-done
	if a.err != nil {
		t.Fatal(a.err)
	}
	own, err := orch.RedeemBearerToken(ctx, a.g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := orch.Mission(a.g)
	if err != nil {
		t.Fatal(err)
	}
	spawn := func(suffix string, scope pass.Scope) *harness.Token {
		offer, err := m.Offer(suffix, pass.Task{ID: "week." + suffix, Description: "Part of the week plan"})
		if err != nil {
			t.Fatal(err)
		}
		key, err := dpop.GenerateKey("ES256") // the sub-agent's, never the orchestrator's
		if err != nil {
			t.Fatal(err)
		}
		proofs, err := harness.ProveChild(key, offer, "", clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		g, err := m.Delegate(ctx, harness.Child{Offer: offer, Proofs: proofs, Scope: scope})
		if err != nil {
			t.Fatalf("delegate %s: %v", suffix, err)
		}
		g.Key = key
		subCfg := cfg
		subCfg.HarnessID, subCfg.Progress = g.HarnessID, nil
		sub, err := harness.New(subCfg)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := sub.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
		if err != nil {
			t.Fatalf("redeem %s: %v", suffix, err)
		}
		return tok
	}
	tokens := map[string]*harness.Token{"orchestrator": own,
		"reader": spawn("reader", pass.Scope{"todos:read"}), "writer": spawn("writer", pass.Scope{"todos:write"})}
	call := func(tok *harness.Token) int {
		resp, err := tok.HTTPClient(d.net.Client()).Get(d.sb.TodoOrigin + "/api/todos")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call(tokens["reader"]); got != http.StatusOK {
		t.Fatalf("reader GET = %d", got)
	}
	if got := call(tokens["writer"]); got != http.StatusForbidden {
		t.Errorf("writer GET = %d, want 403: its scope is todos:write only", got)
	}

	page := func() string {
		resp, err := d.net.Client().Get(d.manifest.Authorities[0].ApprovalPage)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	auths, err := d.sb.Enterprise.Authorizations(ctx, authority.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rootID string
	for _, az := range auths {
		if az.MissionID == a.g.MissionID {
			rootID = az.ID
		}
	}
	if body := page(); strings.Count(body, `data-parent="`+rootID+`"`) != 2 || !strings.Contains(body, "also ends 2 sub-agent delegations") {
		t.Errorf("the approval page does not show the two sub-agents under the orchestrator %s", rootID)
	}
	if status, body := api("POST", admin+"revoke", `{"id":"`+rootID+`","reason":"done planning"}`); status != 200 {
		t.Fatalf("admin API revoke = %d %s", status, body)
	}
	if body := page(); strings.Contains(body, "data-authorization=") {
		t.Error("the approval page still lists delegations after the orchestrator's revoke")
	}
	clock.Advance(6 * time.Second) // past the devnet Service's 5 s re-check
	for name, tok := range tokens {
		if got := call(tok); got != http.StatusUnauthorized {
			t.Errorf("%s after the orchestrator's revoke = %d, want 401", name, got)
		}
	}
}
