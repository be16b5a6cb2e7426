package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/examples/internal/sandbox"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// TestDevnetPostgres runs the devnet on the PostgreSQL stores (issue 9):
// a read-only task is approved, redeemed and used, and the delegation is
// in the Enterprise Authority's schema. Needs AGENTPASS_TEST_POSTGRES.
func TestDevnetPostgres(t *testing.T) {
	// The shared lock keeps the restart tests of other packages, which
	// run in parallel processes, from restarting the server meanwhile.
	dsn := pgtest.SharedDSN(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "devnet_test_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
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
	d, err := start(ctx, config{dir: t.TempDir(), dnsAddr: "127.0.0.1:0", postgres: dsn, pgSchemaPrefix: prefix}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.manifest.Store != "postgres" {
		t.Errorf("store = %q", d.manifest.Store)
	}
	agent, err := harness.New(harness.Config{HarnessID: "pg-test", HTTPClient: d.net.Client(), Discovery: d.net.Discovery(), InsecureAllowPrivateNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := agent.Acquire(ctx, harness.Request{Service: d.sb.TodoOrigin, User: sandbox.UserEnterprise, Task: pass.Task{Description: "Summarise my to-do list"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := agent.RedeemBearerToken(ctx, g, harness.RedeemOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tok.HTTPClient(d.net.Client()).Get(d.sb.TodoOrigin + "/api/todos")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /api/todos = %d", resp.StatusCode)
	}
	auths, err := d.sb.Enterprise.Authorizations(ctx, authority.ListOptions{})
	if err != nil || len(auths) != 1 {
		t.Fatalf("Enterprise authorizations = %d, %v; want 1", len(auths), err)
	}
	if other, _ := d.sb.EnterpriseStrict.Authorizations(ctx, authority.ListOptions{}); len(other) != 0 {
		t.Errorf("the strict.test Authority lists %d authorizations of corp.test (shared schema?)", len(other))
	}
	// Both roles record in the one replay table: at least the Service's
	// harness proof and the Authority's validate assertion (G-3, G-8).
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var rows int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+prefix+"_replay.agentpass_proof_replay").Scan(&rows); err != nil || rows < 2 {
		t.Errorf("shared replay table: %d rows, %v; want at least 2", rows, err)
	}
}
