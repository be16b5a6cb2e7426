// Package pgtest gives tests an isolated PostgreSQL schema on the server
// named by AGENTPASS_TEST_POSTGRES (".ci/postgres.sh start" prints it).
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/internal/secret"
)

// EnvDSN names the variable holding the test server's connection string.
const EnvDSN = "AGENTPASS_TEST_POSTGRES"

// EnvRestart names the variable holding a command that restarts the test
// server (for fault tests).
const EnvRestart = "AGENTPASS_TEST_PG_RESTART"

// DSN returns the test server's connection string, or skips the test with a
// message saying how to get one.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skipf("PostgreSQL tests need %s; run: eval \"$(.ci/postgres.sh start)\" (CI does)", EnvDSN)
	}
	return dsn
}

// Pool returns a pool whose connections use a fresh schema, dropped when the
// test ends, so tests never see each other's rows.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := DSN(t)
	schema := "t_" + strings.ToLower(strings.NewReplacer("-", "_").Replace(secret.New("", 8)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE SCHEMA %q`, schema)); err != nil {
		admin.Close()
		t.Fatalf("pgtest: create schema: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP SCHEMA %q CASCADE`, schema))
		admin.Close()
	})
	return pool
}

// Restart restarts the test server with the command in AGENTPASS_TEST_PG_RESTART,
// or skips the test when it is not set.
func Restart(t testing.TB) {
	t.Helper()
	cmd := os.Getenv(EnvRestart)
	if cmd == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", EnvRestart)
	}
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: restart: %v: %s", err, out)
	}
}
