package pgtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Trips counts the round trips a pool makes to the server, statement by
// statement, so a test can hold an operation to an exact number: each
// Query, QueryRow or Exec (BEGIN and COMMIT included) is one round trip,
// a batch is one however many statements it carries, and a statement
// prepared on first use on a connection is one more (counted apart, as
// Prepares, since it happens once per connection), except inside a batch:
// pgx prepares a batch's new statements in a round trip of their own that
// no tracer sees, so count a batch only on warm connections (as the
// round-trip tests do, after a warm-up). Health pings are not seen. It is
// safe for concurrent use.
type Trips struct {
	mu       sync.Mutex
	trips    int
	prepares int
	log      []string
}

// CountedPool opens a pool on the schema of pool (as [SharedPool]) whose
// round trips are counted by the returned Trips.
func CountedPool(t testing.TB, pool *pgxpool.Pool) (*pgxpool.Pool, *Trips) {
	t.Helper()
	c := &Trips{}
	cfg := pool.Config()
	cfg.ConnConfig.Tracer = c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: counted pool: %v", err)
	}
	t.Cleanup(p.Close)
	return p, c
}

// Reset forgets everything counted so far.
func (c *Trips) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips, c.prepares, c.log = 0, 0, nil
}

// Count returns the round trips since the last Reset (prepares excluded)
// and, in order, a short label of each: the statement's first words, and
// "batch[...]" around the statements of a batch.
func (c *Trips) Count() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.trips, append([]string(nil), c.log...)
}

// Prepares returns the statements prepared since the last Reset.
func (c *Trips) Prepares() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prepares
}

// label shortens a statement to its first words, for a breakdown.
func label(sql string) string {
	f := strings.Fields(sql)
	if len(f) > 8 {
		f = append(f[:8], "…")
	}
	return strings.Join(f, " ")
}

func (c *Trips) add(what string, trips int) {
	c.mu.Lock()
	c.trips += trips
	c.log = append(c.log, what)
	c.mu.Unlock()
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *Trips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.add(label(d.SQL), 1)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *Trips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (c *Trips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	labels := make([]string, 0, d.Batch.Len())
	for _, q := range d.Batch.QueuedQueries {
		labels = append(labels, label(q.SQL))
	}
	c.add("batch["+strings.Join(labels, "; ")+"]", 1)
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (c *Trips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

// TraceBatchEnd implements pgx.BatchTracer.
func (c *Trips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TracePrepareStart implements pgx.PrepareTracer.
func (c *Trips) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	c.mu.Lock()
	c.prepares++
	c.mu.Unlock()
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (c *Trips) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {}
