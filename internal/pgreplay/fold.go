package pgreplay

import (
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/internal/foldmark"
)

// Table marks a replay cache on the table: it holds the pool and the
// clock (which judges which rows have expired) of a cache that embeds it,
// so that a store on the same pool can record a pair inside its own
// statement. It has no exported fields, and its one exported method
// (foldmark.Mark's Set) is set here, so embedding it (as an unexported
// field) adds nothing to the embedder's API.
type Table struct {
	pool *pgxpool.Pool
	now  func() time.Time
	foldmark.Mark
}

// NewTable returns the mark of cache, a cache on pool with clock now.
func NewTable(cache any, pool *pgxpool.Pool, now func() time.Time) *Table {
	t := &Table{pool: pool, now: now}
	t.Mark.Set(cache)
	return t
}

// table is the method only a Table (or a type embedding one) has.
func (t *Table) table() *Table { return t }

type tabled interface{ table() *Table }

// Of returns the pool and clock of the table a replay cache records into,
// when the cache is one that embeds a Table, as dpoppg's does: the cache
// itself, not a value that embeds it (foldmark.Own), whose own Seen (a
// namespace of its own, say) a store recording in the table directly
// would skip.
func Of(c any) (pool *pgxpool.Pool, now func() time.Time, ok bool) {
	if tc, ok := c.(tabled); ok && foldmark.Own(c) {
		if t := tc.table(); t != nil && t.pool != nil && t.now != nil {
			return t.pool, t.now, true
		}
	}
	return nil, nil, false
}

var param = regexp.MustCompile(`\$([0-9]+)`)

// ClaimCTE turns the statement [Statement] chose, SeenSQL or ContainsSQL,
// into the body of a common table expression that has a row exactly when
// Seen would answer "not replayed" (and, for SeenSQL, records the pair),
// its parameters renumbered to start at $first so that they can follow a
// statement's own. The record is then the same statement with the same
// arguments, whichever way it runs.
func ClaimCTE(sql string, first int) string {
	renumbered := param.ReplaceAllStringFunc(sql, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return "$" + strconv.Itoa(n+first-1)
	})
	if sql == ContainsSQL {
		return `SELECT 1 WHERE NOT (` + renumbered + `)`
	}
	return renumbered
}
