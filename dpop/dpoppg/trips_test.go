package dpoppg_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

// TestRoundTrips holds each replay step to one round trip (#19 item 6):
// Seen claims or finds a pair in one statement, Contains is one read.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	base := pgtest.Pool(t)
	c := &clock{t: t0}
	newCache(t, base, c.Now)
	pool, trips := pgtest.CountedPool(t, base)
	rc := newCache(t, pool, c.Now)
	if _, err := rc.Seen(ctx, "iss", "warm", t0.Add(time.Minute)); err != nil { // prepares the statement
		t.Fatal(err)
	}
	if _, err := rc.Contains(ctx, "iss", "warm"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		op       func() (bool, error)
		wantSeen bool
	}{
		{"Seen, first", func() (bool, error) { return rc.Seen(ctx, "iss", "j1", t0.Add(time.Minute)) }, false},
		{"Seen, replay", func() (bool, error) { return rc.Seen(ctx, "iss", "j1", t0.Add(time.Minute)) }, true},
		{"Contains", func() (bool, error) { return rc.Contains(ctx, "iss", "j1") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trips.Reset()
			seen, err := tc.op()
			if err != nil || seen != tc.wantSeen {
				t.Fatalf("got %v, %v; want %v", seen, err, tc.wantSeen)
			}
			if n, stmts := trips.Count(); n != 1 {
				t.Errorf("%d round trips, want 1 (#19 item 6): %q", n, stmts)
			}
		})
	}
}

// TestGenericPlans (#19 item 6): Seen and Contains run on the server's
// cached generic plans, under the default plan_cache_mode, once a
// connection has run them a few times, instead of being planned for each
// execution.
func TestGenericPlans(t *testing.T) {
	ctx := context.Background()
	base := pgtest.Pool(t)
	c := &clock{t: t0}
	newCache(t, base, c.Now)
	pool := pgtest.OneConnPool(t, base) // every statement on one connection
	rc := dpoppg.New(pool, dpoppg.WithClock(c.Now))
	for i := range 8 {
		jti := fmt.Sprintf("j%d", i)
		if seen, err := rc.Seen(ctx, "iss", jti, t0.Add(time.Minute)); err != nil || seen {
			t.Fatalf("Seen: %v, %v", seen, err)
		}
		if held, err := rc.Contains(ctx, "iss", jti); err != nil || !held {
			t.Fatalf("Contains: %v, %v", held, err)
		}
	}
	replanned, checked := pgtest.Replanned(t, pool)
	if len(replanned) > 0 {
		t.Errorf("planned anew on every execution: %q", replanned)
	}
	if checked < 2 {
		t.Errorf("%d statements ran often enough to be checked, want 2", checked)
	}
}
