// Package pgtest gives tests an isolated PostgreSQL schema on the server
// named by AGENTPASS_TEST_POSTGRES (".ci/postgres.sh start" prints it), so
// store tests run against a real database without seeing each other's rows.
//
// # Overview
//
// [Pool] returns a pool on a fresh schema, dropped when the test ends;
// [SharedPool] and [Replicas] add independent pools on the same schema, as
// replicas would have; [ExclusivePool] and [Restart] serve fault tests that
// restart the server. Without AGENTPASS_TEST_POSTGRES a test binary starts
// a throwaway cluster of its own when PostgreSQL is installed; only
// without one do the tests skip.
//
// # Usage
//
//	func TestStore(t *testing.T) {
//		pool := pgtest.Pool(t)
//		store := authoritypg.New(pool)
//		if err := store.Migrate(context.Background()); err != nil {
//			t.Fatal(err)
//		}
//		// ...
//	}
//
// Run them with the server started in the same shell:
//
//	eval "$(bash .ci/postgres.sh start)"
//	go test -race ./authority/authoritypg/
//
// # Restarts
//
// Tests of several packages share one server and `go test ./...` runs the
// packages in parallel processes, so a test that restarts the server must
// have it to itself: [Pool] holds a shared lock on the server (a flock(2)
// on a file named after the DSN, plus an in-process lock) for the test's
// lifetime, and [ExclusivePool] waits for every other holder, in any
// process, and holds them off until its test ends. [Restart] is allowed
// only in a test that holds the exclusive lock.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// DSN returns the test server's connection string: $AGENTPASS_TEST_POSTGRES
// when set, else that of a throwaway cluster the test binary starts once
// for itself when PostgreSQL is installed (removed when the binary exits).
// Otherwise it skips the test with one line saying why and how to enable
// it.
func DSN(t testing.TB) string {
	t.Helper()
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	dsn, err := autoDSN()
	if err != nil {
		t.Skipf("PostgreSQL tests skipped: %s is unset and %v; install PostgreSQL or run: eval \"$(bash .ci/postgres.sh start)\"", EnvDSN, err)
	}
	return dsn
}

// SharedDSN returns the test server's connection string for a test that
// opens its own connections (a whole devnet, say), after taking the shared
// lock, so that no restart test of another package takes the server away
// while it runs.
func SharedDSN(t testing.TB) string {
	t.Helper()
	dsn := DSN(t)
	if !holdsExclusive(t) {
		lockShared(t, dsn)
	}
	return dsn
}

// Pool returns a pool whose connections use a fresh schema, dropped when the
// test ends, so tests never see each other's rows.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := DSN(t)
	if !holdsExclusive(t) {
		lockShared(t, dsn)
	}
	return newSchemaPool(t, dsn)
}

// ExclusivePool is Pool for a test that restarts the server: it first waits
// until no other test, in this process or another, uses the server, and
// keeps them waiting until the test ends. Call it before any Pool or
// SharedPool in the test; its subtests share the exclusivity.
func ExclusivePool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	dsn := DSN(t)
	lockExclusive(t, dsn)
	return newSchemaPool(t, dsn)
}

// SharedPool opens a second, independent pool on the schema of pool (same
// configuration and search_path), as a second replica of a service would:
// its connections, prepared statements and reconnections are its own. It
// is closed when the test ends, before the schema is dropped.
func SharedPool(t testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pgxpool.NewWithConfig(ctx, pool.Config())
	if err != nil {
		t.Fatalf("pgtest: second pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// OneConnPool is SharedPool with a single connection: every statement of
// the test runs on it, so per-connection figures (prepared statements'
// plan counts, statistics, round trips) add up.
func OneConnPool(t testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := pool.Config()
	cfg.MaxConns = 1
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: one-connection pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func newSchemaPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
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
	// The server's default, whatever the cluster says, so that plan
	// tests (Replanned) see what a default server does.
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "auto"
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
// or skips the test when it is not set. The test must hold the server
// exclusively (see ExclusivePool).
func Restart(t testing.TB) {
	t.Helper()
	cmd := os.Getenv(EnvRestart)
	if cmd == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", EnvRestart)
	}
	if !holdsExclusive(t) {
		t.Fatalf("pgtest: Restart needs the server to itself: open the test's pool with ExclusivePool")
	}
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: restart: %v: %s", err, out)
	}
}

// Locking: an in-process RWMutex orders the tests of this binary, a flock
// on a file named after the DSN orders the test binaries.
var (
	procLock  sync.RWMutex
	holderMu  sync.Mutex
	holderFor string // name of the test holding the exclusive lock
)

func lockPath(dsn string) string {
	sum := sha256.Sum256([]byte(dsn))
	return filepath.Join(os.TempDir(), "agentpass-pgtest-"+hex.EncodeToString(sum[:8])+".lock")
}

// holdsExclusive reports whether t or one of its parents holds the
// exclusive lock.
func holdsExclusive(t testing.TB) bool {
	holderMu.Lock()
	defer holderMu.Unlock()
	return holderFor != "" && (t.Name() == holderFor || strings.HasPrefix(t.Name(), holderFor+"/"))
}

func lockShared(t testing.TB, dsn string) {
	t.Helper()
	procLock.RLock()
	unlock, err := flockFile(lockPath(dsn), false)
	if err != nil {
		procLock.RUnlock()
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { unlock(); procLock.RUnlock() })
}

func lockExclusive(t testing.TB, dsn string) {
	t.Helper()
	if holdsExclusive(t) {
		return
	}
	procLock.Lock()
	unlock, err := flockFile(lockPath(dsn), true)
	if err != nil {
		procLock.Unlock()
		t.Fatalf("pgtest: %v", err)
	}
	holderMu.Lock()
	holderFor = t.Name()
	holderMu.Unlock()
	t.Cleanup(func() {
		holderMu.Lock()
		holderFor = ""
		holderMu.Unlock()
		unlock()
		procLock.Unlock()
	})
}
