package pgutil_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/internal/pgutil"
)

// TestMigrateIdempotentAndConcurrent: migrations are versioned, applied once
// even when several replicas start together, and re-running is a no-op.
func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	pool := pgtest.Pool(t)
	fsys := fstest.MapFS{
		"m/001_create.sql": {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY)`)},
		"m/002_seed.sql":   {Data: []byte(`INSERT INTO things VALUES (1)`)},
	}
	ms, err := pgutil.LoadMigrations(fsys, "m")
	if err != nil || len(ms) != 2 {
		t.Fatalf("LoadMigrations: %v %v", ms, err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- pgutil.Migrate(ctx, pool, "test", ms) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := pgutil.Migrate(ctx, pool, "test", ms); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM things`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("seed applied %d times (%v)", n, err)
	}
	bad := fstest.MapFS{"m/001_a.sql": {Data: []byte(`SELECT 1`)}, "m/003_c.sql": {Data: []byte(`SELECT 1`)}}
	if _, err := pgutil.LoadMigrations(bad, "m"); err == nil {
		t.Error("gap in versions accepted")
	}
}
