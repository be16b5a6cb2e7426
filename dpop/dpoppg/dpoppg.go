// Package dpoppg is a dpop.ReplayCache on PostgreSQL, so every replica of a
// Service sees every proof's jti: a proof accepted by one replica is a replay
// at all the others (hardening draft je.harden-holder-binding).
//
// Single use rests on the table's primary key: Seen is one INSERT ... ON
// CONFLICT statement that either claims the (issuer, jti) pair or finds it
// already claimed and unexpired. Expired rows are reclaimed in the same
// statement and pruned in bounded batches by [ReplayCache.Prune].
package dpoppg

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgutil"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// ReplayCache implements dpop.ReplayCache on a PostgreSQL pool. It is safe
// for concurrent use by any number of processes sharing the database.
type ReplayCache struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

var _ dpop.ReplayCache = (*ReplayCache)(nil)

// New returns a cache on pool; now is the clock (nil means time.Now). Call
// Migrate once before use.
func New(pool *pgxpool.Pool, now func() time.Time) *ReplayCache {
	if now == nil {
		now = time.Now
	}
	return &ReplayCache{pool: pool, now: now}
}

// Migrate creates or upgrades the cache's table. It is idempotent and safe
// to run from several replicas at once.
func (c *ReplayCache) Migrate(ctx context.Context) error {
	return pgutil.MigrateFS(ctx, c.pool, "dpop_replay", migrationFS, "migrations")
}

func replayKey(issuer, jti string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s|%s", len(issuer), issuer, jti)
	return h.Sum(nil)
}

// Seen implements dpop.ReplayCache with one atomic statement. On any
// database error it returns the error, and callers reject the proof.
func (c *ReplayCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	now := c.now()
	var claimed int
	err := c.pool.QueryRow(ctx, `
		INSERT INTO agentpass_proof_replay (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
			WHERE agentpass_proof_replay.expires_at <= $3
		RETURNING 1`, replayKey(issuer, jti), exp, now).Scan(&claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil // an unexpired row holds the pair: a replay
	}
	if err != nil {
		return false, fmt.Errorf("dpoppg: %w", err)
	}
	return false, nil
}

// Prune deletes at most limit expired rows and reports how many it deleted,
// so a janitor's work per tick is bounded. (The "= ANY (ARRAY (...))" form
// keeps the plan to one batch; "IN (SELECT ... LIMIT n)" was planned as a
// scan of the whole table.)
func (c *ReplayCache) Prune(ctx context.Context, limit int) (int64, error) {
	tag, err := c.pool.Exec(ctx, `
		DELETE FROM agentpass_proof_replay WHERE key = ANY (ARRAY (
			SELECT key FROM agentpass_proof_replay WHERE expires_at <= $1 LIMIT $2))`, c.now(), limit)
	if err != nil {
		return 0, fmt.Errorf("dpoppg: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}
