package authoritypg

import (
	"context"
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

// TestConsumePlans (#19 item 6): the statements of a consumption plan index
// scans even on a new, empty table under a generic plan, which is what a
// connection caches after a few executions. Joins against the requests
// table were planned as sequential scans there, and the cached plan made
// every consumption scan the whole table as it grew (about 2 ms each at a
// few thousand rows, halving validations per second).
func TestConsumePlans(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	if err := New(pool).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dpoppg.New(pool).Migrate(ctx); err != nil { // the replay table the claims write
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		sql    string
		params int
	}{
		"pass_row":   {passRowSQL, 1},
		"ancestors":  {ancestorsSQL, 1},
		"consume":    {consumeSQL[0], consumeParams},
		"consume_1":  {consumeSQL[1], consumeParams + 3},
		"consume_32": {consumeSQL[maxDepth], consumeParams + 3*maxDepth},
		"claim":      {claimConsumeSQL[pgreplay.SeenSQL], consumeParams + 3},
		"lookup":     {claimConsumeSQL[pgreplay.ContainsSQL], consumeParams + 2},
	} {
		if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+tc.sql); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rows, err := conn.Query(ctx, "EXPLAIN EXECUTE "+name+"("+strings.TrimSuffix(strings.Repeat("NULL,", tc.params), ",")+")")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan strings.Builder
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Contains(plan.String(), "Seq Scan on agentpass_authority_requests") || !strings.Contains(plan.String(), "Index Scan") {
			t.Errorf("%s plans a scan of the table:\n%s", name, plan.String())
		}
	}
}
