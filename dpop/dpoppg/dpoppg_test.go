package dpoppg_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pruneBatch is the documented batch of Prune(ctx, 0).
const pruneBatch = 1000

func newCache(t *testing.T, pool *pgxpool.Pool, now func() time.Time, opts ...dpoppg.Option) *dpoppg.ReplayCache {
	t.Helper()
	c := dpoppg.New(pool, append([]dpoppg.Option{dpoppg.WithClock(now)}, opts...)...)
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	return c
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM agentpass_proof_replay`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// insertRows adds n rows expiring at exp, with keys unique under tag.
func insertRows(t *testing.T, pool *pgxpool.Pool, tag string, n int, exp time.Time) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		INSERT INTO agentpass_proof_replay (key, expires_at)
		SELECT sha256(convert_to($1 || i::text, 'UTF8')), $2 FROM generate_series(1, $3) AS i`, tag+"/", exp, n)
	if err != nil {
		t.Fatal(err)
	}
}

// TestSeen: a pair is accepted once until it expires, then reusable
// (G-3, je.harden-holder-binding replay rule); Contains looks up without
// recording; Prune is bounded per call and Prune(ctx, 0) means the default
// batch.
func TestSeen(t *testing.T) {
	clk := &clock{t: t0}
	pool := pgtest.Pool(t)
	c := newCache(t, pool, clk.Now)
	ctx := context.Background()
	exp := t0.Add(time.Minute)
	if held, err := c.Contains(ctx, "h1", "j1"); err != nil || held {
		t.Fatalf("Contains before use: %v %v", held, err)
	}
	if count(t, pool) != 0 {
		t.Fatal("Contains recorded the pair")
	}
	if replayed, err := c.Seen(ctx, "h1", "j1", exp); err != nil || replayed {
		t.Fatalf("first use: %v %v", replayed, err)
	}
	if held, err := c.Contains(ctx, "h1", "j1"); err != nil || !held {
		t.Fatalf("Contains after use: %v %v", held, err)
	}
	if replayed, err := c.Seen(ctx, "h1", "j1", exp); err != nil || !replayed {
		t.Fatalf("second use not a replay: %v %v", replayed, err)
	}
	if replayed, _ := c.Seen(ctx, "h2", "j1", exp); replayed {
		t.Fatal("same jti from another issuer treated as replay")
	}
	if replayed, _ := c.Seen(ctx, "h1|j", "1", exp); replayed {
		t.Fatal("key collision between (h1|j,1) and (h1,j1)")
	}
	// An already expired pair is looked up, not stored.
	if replayed, err := c.Seen(ctx, "h1", "old", t0); err != nil || replayed {
		t.Fatalf("expired pair: %v %v", replayed, err)
	}
	if n := count(t, pool); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
	clk.Advance(2 * time.Minute)
	if held, _ := c.Contains(ctx, "h1", "j1"); held {
		t.Fatal("Contains of an expired pair")
	}
	if replayed, err := c.Seen(ctx, "h1", "j1", clk.Now().Add(time.Minute)); err != nil || replayed {
		t.Fatalf("expired pair not reusable: %v %v", replayed, err)
	}
	insertRows(t, pool, "p", 1500, clk.Now().Add(time.Second))
	clk.Advance(time.Hour)
	if n, err := c.Prune(ctx, 3); err != nil || n != 3 {
		t.Fatalf("Prune(3) = %d, %v", n, err)
	}
	// Zero is the default batch (it used to delete nothing).
	if n, err := c.Prune(ctx, 0); err != nil || n != pruneBatch {
		t.Fatalf("Prune(0) = %d, %v; want %d", n, err, pruneBatch)
	}
	if n, err := c.Prune(ctx, 0); err != nil || n != 1500+3-3-pruneBatch {
		t.Fatalf("second Prune(0) = %d, %v", n, err)
	}
}

// TestSeenRace: two caches on two pools over one database (two replicas,
// or an Authority and a Service sharing the table), 100 goroutines
// presenting one proof → exactly one acceptance (G-3).
func TestSeenRace(t *testing.T) {
	pool := pgtest.Pool(t)
	caches := []*dpoppg.ReplayCache{
		newCache(t, pool, nil),
		newCache(t, pgtest.SharedPool(t, pool), nil),
	}
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	var accepted atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replayed, err := caches[i%2].Seen(ctx, "h", "same-jti", exp)
			if err != nil {
				t.Error(err)
				return
			}
			if !replayed {
				accepted.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("%d acceptances of one proof, want 1", accepted.Load())
	}
	for i, c := range caches {
		if held, err := c.Contains(ctx, "h", "same-jti"); err != nil || !held {
			t.Errorf("cache %d: Contains = %v, %v", i, held, err)
		}
	}
}

// TestJanitorCatchesUp: one janitor tick empties 50,000 expired rows (the
// old janitor deleted 1,000 a minute and never caught up) and keeps the
// live ones.
func TestJanitorCatchesUp(t *testing.T) {
	clk := &clock{t: t0}
	pool := pgtest.Pool(t)
	ticks := pgtest.NewTicks()
	c := newCache(t, pool, clk.Now, dpoppg.WithLogger(ticks.Logger()))
	insertRows(t, pool, "expired", 50_000, t0.Add(-time.Second))
	insertRows(t, pool, "live", 10, t0.Add(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.RunJanitor(ctx, time.Hour) }()
	got := ticks.Wait(t, 0, 1)
	cancel()
	<-done
	if got[0] != 50_000 {
		t.Errorf("first tick deleted %d rows, want 50,000", got[0])
	}
	if n := count(t, pool); n != 10 {
		t.Errorf("%d rows left after one tick, want the 10 live ones", n)
	}
}

// TestJanitorWorkload: 3,000 proofs per step, each kept 3 steps, for 12
// steps (36,000 in all): after each step the janitor catches up and leaves
// exactly the unexpired ones, so the table stays at rate × lifetime.
func TestJanitorWorkload(t *testing.T) {
	const (
		perStep = 3000
		life    = 3
		steps   = 12
		step    = time.Minute
	)
	clk := &clock{t: t0}
	pool := pgtest.Pool(t)
	ticks := pgtest.NewTicks()
	c := newCache(t, pool, clk.Now, dpoppg.WithLogger(ticks.Logger()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.RunJanitor(ctx, 5*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	maxRows := 0
	for i := range steps {
		insertRows(t, pool, fmt.Sprint("step-", i), perStep, clk.Now().Add(life*step))
		clk.Advance(step)
		ticks.WaitCaughtUp(t, ticks.Mark())
		n := count(t, pool)
		if want := perStep * min(i+1, life-1); n != want {
			t.Fatalf("step %d: %d rows, want %d", i, n, want)
		}
		maxRows = max(maxRows, n)
	}
	if maxRows > perStep*life {
		t.Errorf("table grew to %d rows, more than rate × lifetime = %d", maxRows, perStep*life)
	}
}

// TestBothRoles: one table serves an Authority and a Service, whose
// verifiers prefix the issuer with their kind: the same issuer and jti
// under two prefixes are two pairs.
func TestBothRoles(t *testing.T) {
	pool := pgtest.Pool(t)
	var authority, svc dpop.ReplayCache = newCache(t, pool, nil), newCache(t, pgtest.SharedPool(t, pool), nil)
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	if r, err := authority.Seen(ctx, "assertion:https://svc.example", "j", exp); err != nil || r {
		t.Fatalf("authority: %v %v", r, err)
	}
	if r, err := svc.Seen(ctx, "service:assertion:https://svc.example", "j", exp); err != nil || r {
		t.Fatalf("service, other namespace: %v %v", r, err)
	}
	if r, err := svc.Seen(ctx, "assertion:https://svc.example", "j", exp); err != nil || !r {
		t.Fatalf("same pair through another replica: %v %v, want replayed", r, err)
	}
}
