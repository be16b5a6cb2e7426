package harnesstest_test

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/harnesstest"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

func status(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func acquire(t *testing.T, n *harnesstest.Network, c *harness.Client) *harness.Token {
	t.Helper()
	g, err := c.Acquire(t.Context(), harness.Request{Service: n.URL, User: n.User, Task: pass.Task{Description: "a test"}})
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	tok, err := c.RedeemBearerToken(t.Context(), g, harness.RedeemOptions{})
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	return tok
}

// An agent built on its own configuration (Network.Config) reaches the
// test's handler; the fake clock expires its token.
func TestNetworkConfigAndClock(t *testing.T) {
	var last atomic.Pointer[service.Delegation]
	n := harnesstest.NewNetwork(t, &harnesstest.Options{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := service.DelegationFrom(r.Context())
			last.Store(d)
		}),
	})
	cfg := n.Config()
	cfg.HarnessID = "my-agent"
	c, err := harness.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := acquire(t, n, c)
	if got := status(t, tok.HTTPClient(n.Client), n.URL+"/x"); got != http.StatusOK {
		t.Fatalf("call: %d", got)
	}
	if seen := last.Load(); seen == nil || seen.User != n.User || seen.HarnessID != "my-agent" || !seen.Allows("read", "write") {
		t.Errorf("the handler saw %+v", last.Load())
	}
	n.Advance(time.Hour + 1)
	if got := status(t, tok.HTTPClient(n.Client), n.URL+"/x"); got != http.StatusUnauthorized {
		t.Errorf("after the token's lifetime: %d, want 401", got)
	}
}

// With Manual the test is the person: a denial reaches the agent as one.
func TestNetworkManualDeny(t *testing.T) {
	n := harnesstest.NewNetwork(t, &harnesstest.Options{Manual: true})
	p, err := n.Harness.Start(t.Context(), harness.Request{Service: n.URL, User: n.User, Task: pass.Task{Description: "delete everything"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Authority.Decide(t.Context(), p.MissionID, authority.Decision{Outcome: authority.Deny, Reason: "no"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Harness.Wait(t.Context(), p); !errors.Is(err, harness.ErrDenied) {
		t.Errorf("Wait after a denial: %v, want harness.ErrDenied", err)
	}
}

// With a pool the stores are in PostgreSQL; Options.Harness configures
// the network's Harness.
func TestNetworkPostgres(t *testing.T) {
	pool := pgtest.Pool(t)
	n := harnesstest.NewNetwork(t, &harnesstest.Options{Pool: pool, Harness: func(c *harness.Config) { c.HarnessID = "hooked" }})
	acquire(t, n, n.Harness)
	auths, err := n.Authority.Authorizations(t.Context(), authority.ListOptions{Now: n.Now()})
	if err != nil || len(auths) != 1 || auths[0].HarnessID != "hooked" {
		t.Errorf("authorizations: %+v, %v; want one of harness \"hooked\" (Options.Harness)", auths, err)
	}
	var count int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM agentpass_service_credentials`).Scan(&count); err != nil || count != 1 {
		t.Errorf("credentials in PostgreSQL: %d, %v; want 1", count, err)
	}
}
