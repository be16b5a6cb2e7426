package dpoppg_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentpass-go/agentpass/internal/pgreplay"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

// TestStatementInBatch (#19 item 6): a store on the cache's pool finds the
// cache's pool and clock (pgreplay.Of) and queues Seen's own statement
// (pgreplay.Statement) in a batch of its own, so its record is the same
// pair Seen claims (a replay either way), on the cache's clock, with the
// "exp already past: only looked up" rule, and the batch is one round trip.
func TestStatementInBatch(t *testing.T) {
	ctx := context.Background()
	base := pgtest.Pool(t)
	clk := &clock{t: t0}
	newCache(t, base, clk.Now)
	pool, trips := pgtest.CountedPool(t, base)
	rc := newCache(t, pool, clk.Now)
	send := func(issuer, jti string, exp time.Time) (bool, error) {
		t.Helper()
		p, now, ok := pgreplay.Of(rc)
		if !ok || p != pool {
			t.Fatalf("pgreplay.Of(cache) = %p, %v; want the cache's pool %p", p, ok, pool)
		}
		var b pgx.Batch
		sql, args, read := pgreplay.Statement(issuer, jti, exp, now())
		b.Queue(sql, args...)
		b.Queue(`SELECT 1`)
		br := pool.SendBatch(ctx, &b)
		defer br.Close()
		return read(br.QueryRow())
	}
	if _, err := send("iss", "warm", t0.Add(time.Minute)); err != nil { // prepares
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		op       func() (bool, error)
		wantSeen bool
		trips    int
	}{
		{"queued, first", func() (bool, error) { return send("iss", "j1", t0.Add(time.Minute)) }, false, 1},
		{"queued, replay", func() (bool, error) { return send("iss", "j1", t0.Add(time.Minute)) }, true, 1},
		{"Seen after queued", func() (bool, error) { return rc.Seen(ctx, "iss", "j1", t0.Add(time.Minute)) }, true, 1},
		{"queued after Seen", func() (bool, error) {
			if _, err := rc.Seen(ctx, "iss", "j2", t0.Add(time.Minute)); err != nil {
				return false, err
			}
			return send("iss", "j2", t0.Add(time.Minute))
		}, true, 2},
		{"queued, exp past: looked up", func() (bool, error) { return send("iss", "old", t0) }, false, 1},
		{"queued, exp past of a held pair", func() (bool, error) { return send("iss", "j1", t0) }, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trips.Reset()
			seen, err := tc.op()
			if err != nil || seen != tc.wantSeen {
				t.Fatalf("got %v, %v; want %v", seen, err, tc.wantSeen)
			}
			if n, stmts := trips.Count(); n != tc.trips {
				t.Errorf("%d round trips, want %d: %q", n, tc.trips, stmts)
			}
		})
	}
	if n := count(t, pool); n != 3 { // warm, j1, j2; not old
		t.Errorf("%d rows, want 3", n)
	}
	// The cache's clock decides what has expired, as for Seen.
	clk.Advance(2 * time.Minute)
	if seen, err := send("iss", "j1", clk.Now().Add(time.Minute)); err != nil || seen {
		t.Errorf("an expired pair, queued again: %v, %v; want it reclaimed", seen, err)
	}

	// Another cache's pool, even on the same database, is not this one.
	if p, _, ok := pgreplay.Of(newCache(t, base, clk.Now)); !ok || p != base || p == pool {
		t.Errorf("pgreplay.Of of a cache on another pool = %p, %v", p, ok)
	}
}

// TestReplayKey pins the key derivation: rows written before it moved to
// internal/pgreplay must still be found.
func TestReplayKey(t *testing.T) {
	// SHA-256 of "3:iss|jti": the issuer's length, the issuer, the jti.
	const want = "b5249cd06e5f9e9c4b8eb7655b4f961185946bac6331295e8637a1cbeea268e4"
	got := hex.EncodeToString(pgreplay.Key("iss", "jti"))
	if got != want {
		t.Errorf("Key(iss, jti) = %s, want %s", got, want)
	}
}
