// Package pgreplay is the one definition of the PostgreSQL replay table's
// key and statements, for dpop/dpoppg (the table's owner) and for the
// stores that record a pair in the same statement as their own write.
package pgreplay

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Key is the table's primary key of (issuer, jti): a hash of both, the
// issuer's length first, so that no two pairs share a key however their
// strings are cut.
func Key(issuer, jti string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s|%s", len(issuer), issuer, jti)
	return h.Sum(nil)
}

// Claim is the statement that records key until exp unless an unexpired
// row holds it at now, with its parameters named by the caller (such as
// "$1"), so that it can run alone or as a common table expression. It
// returns one row when it claimed the key and none on a replay. An expired
// row is reclaimed in place.
func Claim(key, exp, now string) string {
	return `INSERT INTO agentpass_proof_replay (key, expires_at) VALUES (` + key + `, ` + exp + `)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
			WHERE agentpass_proof_replay.expires_at <= ` + now + `
		RETURNING 1`
}

// Held is the condition that an unexpired row holds key at now. A pair
// whose exp is already past is only looked up with it, never stored: it
// could not be accepted again anyway.
func Held(key, now string) string {
	return `EXISTS (SELECT 1 FROM agentpass_proof_replay WHERE key = ` + key + ` AND expires_at > ` + now + `)`
}

// Table marks a replay cache on the table: it holds the pool and the
// clock (which judges which rows have expired) of a cache that embeds it,
// so that a store on the same pool can record a pair inside its own
// statement. It has no exported fields or methods, so embedding it (as an
// unexported field) adds nothing to the embedder's API.
type Table struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewTable returns the mark of a cache on pool with clock now.
func NewTable(pool *pgxpool.Pool, now func() time.Time) *Table {
	return &Table{pool: pool, now: now}
}

// table is the method only a Table (or a type embedding one) has.
func (t *Table) table() *Table { return t }

type tabled interface{ table() *Table }

// Of returns the pool and clock of the table a replay cache records into,
// when the cache embeds a Table, as dpoppg's does.
func Of(c any) (pool *pgxpool.Pool, now func() time.Time, ok bool) {
	if tc, ok := c.(tabled); ok {
		if t := tc.table(); t != nil && t.pool != nil && t.now != nil {
			return t.pool, t.now, true
		}
	}
	return nil, nil, false
}
