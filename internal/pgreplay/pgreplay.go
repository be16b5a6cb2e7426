// Package pgreplay holds the statements of the one PostgreSQL replay table
// (agentpass_proof_replay, created by dpop/dpoppg's migrations) and its key
// derivation, once, for every package that records into it: dpoppg's
// ReplayCache, and the stores that send a record in the round trip of
// their own statements.
package pgreplay

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SeenSQL claims the pair of key $1 until $2, reclaiming a row that expired
// by $3. It returns one row when the pair was free and none when an
// unexpired row holds it: a replay. Single use rests on the primary key.
const SeenSQL = `
		INSERT INTO agentpass_proof_replay (key, expires_at) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at
			WHERE agentpass_proof_replay.expires_at <= $3
		RETURNING 1`

// ContainsSQL answers whether an unexpired row at $2 holds the pair of key
// $1.
const ContainsSQL = `
		SELECT EXISTS (SELECT 1 FROM agentpass_proof_replay WHERE key = $1 AND expires_at > $2)`

// Key is the primary key of the pair (issuer, jti): the issuer's length
// first, so that no issuer and jti can be split another way into the
// same key.
func Key(issuer, jti string) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s|%s", len(issuer), issuer, jti)
	return h.Sum(nil)
}

// Statement returns what records (issuer, jti) until exp at the time now,
// and the function that reads its one row into Seen's answer. A pair whose
// exp is already past is only looked up, not stored: it cannot be
// accepted again anyway, and a row for it would be reclaimable at once.
func Statement(issuer, jti string, exp, now time.Time) (sql string, args []any, read func(pgx.Row) (bool, error)) {
	key := Key(issuer, jti)
	if !exp.After(now) {
		return ContainsSQL, []any{key, now}, readContains
	}
	return SeenSQL, []any{key, exp, now}, readSeen
}

// Querier is what Seen sends its statement through (a pool, a connection,
// a transaction).
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Seen implements dpop.ReplayCache's Seen on q in one statement, at the
// time now.
func Seen(ctx context.Context, q Querier, issuer, jti string, exp, now time.Time) (bool, error) {
	sql, args, read := Statement(issuer, jti, exp, now)
	return read(q.QueryRow(ctx, sql, args...))
}

// Contains implements dpop.ReplayLookup's Contains on q, at the time now.
func Contains(ctx context.Context, q Querier, issuer, jti string, now time.Time) (bool, error) {
	return readContains(q.QueryRow(ctx, ContainsSQL, Key(issuer, jti), now))
}

func readSeen(row pgx.Row) (bool, error) {
	var claimed int
	err := row.Scan(&claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil // an unexpired row holds the pair: a replay
	}
	if err != nil {
		return false, err
	}
	return false, nil
}

func readContains(row pgx.Row) (bool, error) {
	var held bool
	if err := row.Scan(&held); err != nil {
		return false, err
	}
	return held, nil
}
