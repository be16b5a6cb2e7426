// Package dpoppg is a dpop.ReplayCache on PostgreSQL, for deployments with
// several replicas.
//
// # Overview
//
// The in-memory dpop.MemoryReplayCache is per process: a proof accepted by
// one replica could be replayed at another. Give every replica the same
// [ReplayCache] instead, from [New], and a proof or assertion accepted by
// one is a replay at every other.
//
// # Usage
//
//	rc := dpoppg.New(pool, dpoppg.WithLogger(logger))
//	if err := rc.Migrate(ctx); err != nil { ... }
//	go rc.RunJanitor(ctx, 0) // deletes expired rows
//	svc, err := service.New(service.Config{ReplayCache: rc, ...})
//
// # How it works
//
// It is the one replay table of every role. The replicas of a Service
// (harness proofs, DPoP proofs, Authority assertions) and of an Authority
// (status-read proofs, Service assertions) may all share it; each role
// keeps its kinds apart by prefixing the issuer.
//
// Single use rests on the table's primary key: Seen is one INSERT ... ON
// CONFLICT statement that either claims the (issuer, jti) pair or finds it
// already claimed and unexpired. Expired rows are reclaimed in the same
// statement and deleted by [ReplayCache.RunJanitor], batch after batch, so
// the table holds about rate × lifetime rows however high the rate.
//
// Unlike dpop.MemoryReplayCache the table has no per-issuer share: disk,
// not a fixed capacity, is its bound, and one issuer's rows never refuse
// another's. What bounds the rate is the verifiers' order (a pair is
// recorded only after every trust check passed) and the rate limits. For
// that reason the cache is a dpop.UnboundedReplayCache: an Authority on
// this table records a validation's assertion before it consumes the pass,
// with Seen alone (no Contains first), where with the in-memory cache it
// records it after; an authority/authoritypg store on the same pool sends
// that record in the round trip of its own first read, and a
// service/servicepg store on the same pool in the statement of its Redeem.
package dpoppg

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgutil"
)

// Migrations holds the schema as files migrations/NNN_description.sql, to
// be applied in order, for operators who run their own migration tool
// instead of Migrate (which applies them and records them in
// agentpass_schema_migrations under the component "dpop_replay").
//
//go:embed migrations/*.sql
var Migrations embed.FS

const component = "dpop_replay"

// defaultPruneLimit is the batch of Prune when given zero, and the batch
// RunJanitor uses.
const defaultPruneLimit = pgutil.JanitorBatch

// ReplayCache implements dpop.ReplayCache and dpop.ReplayLookup on a
// PostgreSQL pool. It is safe for concurrent use by any number of
// processes sharing the database.
type ReplayCache struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	logger *slog.Logger
	// table tells a store on the same pool (servicepg) that it may record
	// a pair in the same statement as its own write, one round trip fewer.
	*table
}

// table is embedded under an unexported name: its mark method makes the
// cache recognisable inside the module and adds nothing to its API.
type table = pgreplay.Table

var (
	_ dpop.ReplayCache  = (*ReplayCache)(nil)
	_ dpop.ReplayLookup = (*ReplayCache)(nil)
)

// Option configures a ReplayCache.
type Option func(*ReplayCache)

// WithLogger sets where RunJanitor reports failed prunes (default:
// nowhere). Nothing else is logged, and never a jti.
func WithLogger(l *slog.Logger) Option {
	return func(c *ReplayCache) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithClock sets the cache's clock (default time.Now): give it the
// verifiers' clock, since a row is a replay until the clock passes its exp.
func WithClock(now func() time.Time) Option {
	return func(c *ReplayCache) {
		if now != nil {
			c.now = now
		}
	}
}

// New returns a cache on pool. Call Migrate once before use. The pool stays
// the caller's: the cache never closes it.
func New(pool *pgxpool.Pool, opts ...Option) *ReplayCache {
	c := &ReplayCache{pool: pool, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	c.table = pgreplay.NewTable(c, pool, c.now)
	return c
}

// Migrate creates or upgrades the cache's table. It is idempotent and safe
// to run from several replicas at once.
func (c *ReplayCache) Migrate(ctx context.Context) error {
	if err := pgutil.MigrateFS(ctx, c.pool, component, Migrations, "migrations"); err != nil {
		return fmt.Errorf("dpoppg: %w", err)
	}
	return nil
}

// Seen implements dpop.ReplayCache with one atomic statement. On any
// database error it returns the error, and callers reject the proof. A
// pair whose exp is already past is only looked up, not stored.
func (c *ReplayCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	replayed, err := pgreplay.Seen(ctx, c.pool, issuer, jti, exp, c.now())
	if err != nil {
		return false, fmt.Errorf("dpoppg: %w", err)
	}
	return replayed, nil
}

// Unbounded implements dpop.UnboundedReplayCache: the table refuses no pair
// for lack of room.
func (c *ReplayCache) Unbounded() {}

// Contains implements dpop.ReplayLookup with one read.
func (c *ReplayCache) Contains(ctx context.Context, issuer, jti string) (bool, error) {
	held, err := pgreplay.Contains(ctx, c.pool, issuer, jti, c.now())
	if err != nil {
		return false, fmt.Errorf("dpoppg: %w", err)
	}
	return held, nil
}

// Prune deletes at most limit expired rows (zero or less means
// 1,000) and reports how many it deleted, so one statement's
// work is bounded. (The "= ANY (ARRAY (...))" form keeps the plan to one
// batch fetched by the expiry index; "IN (SELECT ... LIMIT n)" was planned
// as a scan of the whole table. The outer expiry test skips a row Seen
// reclaimed meanwhile.)
func (c *ReplayCache) Prune(ctx context.Context, limit int) (int64, error) {
	if limit <= 0 {
		limit = defaultPruneLimit
	}
	tag, err := c.pool.Exec(ctx, `
		DELETE FROM agentpass_proof_replay WHERE expires_at <= $1 AND key = ANY (ARRAY (
			SELECT key FROM agentpass_proof_replay WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2))`, c.now(), limit)
	if err != nil {
		return 0, fmt.Errorf("dpoppg: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RunJanitor deletes expired rows at once and then every interval (zero
// means one minute) until ctx is done, and returns ctx's error. Each tick
// calls Prune batch after batch until the backlog is gone or the tick has
// run for interval, so the table stays at about rate × lifetime rows even
// at thousands of proofs a second. A failing prune, or a tick that did not
// catch up, is logged (WithLogger). Concurrent janitors on several
// replicas are safe, merely redundant.
func (c *ReplayCache) RunJanitor(ctx context.Context, interval time.Duration) error {
	return pgutil.RunJanitor(ctx, interval, c.logger, component, c.Prune)
}
