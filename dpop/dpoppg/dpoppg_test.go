package dpoppg_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

func newCache(t *testing.T, now func() time.Time) *dpoppg.ReplayCache {
	pool := pgtest.Pool(t)
	c := dpoppg.New(pool, now)
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Migrate(context.Background()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	return c
}

// TestSeen: a pair is accepted once until it expires, then reusable
// (je.harden-holder-binding replay rule).
func TestSeen(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := newCache(t, clock)
	ctx := context.Background()
	exp := now.Add(time.Minute)
	if replayed, err := c.Seen(ctx, "h1", "j1", exp); err != nil || replayed {
		t.Fatalf("first use: %v %v", replayed, err)
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
	now = now.Add(2 * time.Minute)
	if replayed, err := c.Seen(ctx, "h1", "j1", now.Add(time.Minute)); err != nil || replayed {
		t.Fatalf("expired pair not reusable: %v %v", replayed, err)
	}
	// Prune is bounded per call.
	for i := 0; i < 5; i++ {
		_, _ = c.Seen(ctx, "p", fmt.Sprint(i), now.Add(time.Second))
	}
	now = now.Add(time.Hour)
	if n, err := c.Prune(ctx, 3); err != nil || n != 3 {
		t.Fatalf("Prune(3) = %d, %v", n, err)
	}
	if n, err := c.Prune(ctx, 100); err != nil || n < 3 {
		t.Fatalf("Prune(100) = %d, %v", n, err)
	}
}

// TestSeenRace: 100 goroutines on separate pooled connections presenting one
// proof → exactly one acceptance.
func TestSeenRace(t *testing.T) {
	c1 := newCache(t, nil)
	ctx := context.Background()
	var accepted atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replayed, err := c1.Seen(ctx, "h", "same-jti", time.Now().Add(time.Minute))
			if err != nil {
				t.Error(err)
				return
			}
			if !replayed {
				accepted.Add(1)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Fatalf("%d acceptances of one proof, want 1", accepted.Load())
	}
}
