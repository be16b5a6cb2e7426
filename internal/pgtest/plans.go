package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Replanned returns the statements prepared on pool's idle connections that
// the server kept planning for each execution (custom plans) after the five
// it plans before it compares them with a generic plan, and checked, how
// many prepared statements ran six times or more on one connection, so
// that the comparison was made. A statement on a generic plan costs only
// its execution; one replanned costs its planning each time, which for
// the stores' statements is more than their execution. Pools made here
// run with the server's default plan_cache_mode (auto), whatever the
// cluster's setting, so the answer is what a default server would do.
func Replanned(t testing.TB, pool *pgxpool.Pool) (replanned []string, checked int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := pool.AcquireAllIdle(ctx)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for _, c := range conns {
		rows, err := c.Query(ctx, `SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements`)
		if err != nil {
			t.Fatalf("pgtest: reading the prepared statements: %v", err)
		}
		for rows.Next() {
			var sql string
			var generic, custom int64
			if err := rows.Scan(&sql, &generic, &custom); err != nil {
				t.Fatalf("pgtest: reading the prepared statements: %v", err)
			}
			if generic+custom > 5 {
				checked++
			}
			if custom > 5 {
				replanned = append(replanned, label(sql))
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("pgtest: reading the prepared statements: %v", err)
		}
	}
	return replanned, checked
}
