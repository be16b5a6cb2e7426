package servicetest_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

func agent(t *testing.T, srv *servicetest.Server, scope ...string) *http.Client {
	t.Helper()
	c, err := srv.Agent(t.Context(), scope...)
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	return c
}

func get(t *testing.T, c *http.Client, url string) (int, map[string]any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v
}

// The kit serves the user's handler behind the real middleware, with the
// scopes the user chose, and its clock moves every party: a token stops
// working when it expires.
func TestServerAgentAndClock(t *testing.T) {
	srv := servicetest.NewServer(t, nil, &servicetest.Options{
		Scopes: []pass.ScopeInfo{{Name: "tickets:read"}, {Name: "tickets:write"}},
	})
	agent := agent(t, srv, "tickets:read")
	code, body := get(t, agent, srv.URL+"/api")
	if code != http.StatusOK || body["user"] != srv.User {
		t.Fatalf("agent call: %d %v", code, body)
	}
	if got := body["scope"].([]any); len(got) != 1 || got[0] != "tickets:read" {
		t.Errorf("scope = %v, want [tickets:read]", got)
	}
	if code, _ := get(t, srv.Client, srv.URL+"/api"); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
	srv.Advance(time.Hour + 1)
	if code, _ := get(t, agent, srv.URL+"/api"); code != http.StatusUnauthorized {
		t.Errorf("after the token's lifetime: %d, want 401", code)
	}
}

// With Manual a person decides from the test: the agent's request waits
// at the Authority until Authority.Decide.
func TestServerManual(t *testing.T) {
	srv := servicetest.NewServer(t, nil, &servicetest.Options{Manual: true})
	ctx := t.Context()
	p, err := srv.Harness.Start(ctx, harness.Request{Service: srv.URL, User: srv.User, Task: pass.Task{Description: "read my tickets"}})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := srv.Authority.Pending(ctx, authority.ListOptions{Now: srv.Now()})
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending at the Authority: %d, %v; want 1", len(pending), err)
	}
	if _, err := srv.Authority.Decide(ctx, p.MissionID, authority.Decision{Outcome: authority.Approve, Scope: pass.Scope{"read"}, DecidedBy: "human:manager@corp.test"}); err != nil {
		t.Fatal(err)
	}
	g, err := srv.Harness.Wait(ctx, p)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	tok, err := srv.Harness.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, tok.HTTPClient(srv.Client), srv.URL+"/"); code != http.StatusOK || body["authority"] != srv.Authority.Identifier() {
		t.Errorf("call: %d %v", code, body)
	}
}

// With a pool every store is on PostgreSQL.
func TestServerPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	srv := servicetest.NewServer(t, nil, &servicetest.Options{Pool: pool})
	if code, _ := get(t, agent(t, srv), srv.URL+"/"); code != http.StatusOK {
		t.Fatalf("agent call: %d", code)
	}
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM agentpass_service_credentials`).Scan(&n); err != nil || n != 1 {
		t.Errorf("credentials in PostgreSQL: %d, %v; want the agent's token", n, err)
	}
}
