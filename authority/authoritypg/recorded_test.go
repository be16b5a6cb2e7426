package authoritypg_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

var errReplay = errors.New("test: replayed")

// recordJTI returns a record function that records jti (no Seen when
// empty) in the cache it is given, refusing a replay with errReplay, and
// remembers the cache.
func recordJTI(jti string, got *dpop.ReplayCache) func(dpop.ReplayCache) error {
	return func(c dpop.ReplayCache) error {
		*got = c
		if jti == "" {
			return nil
		}
		seen, err := c.Seen(ctx, "authority:assertion:"+svcA, jti, t0.Add(2*time.Minute))
		if err != nil {
			return err
		}
		if seen {
			return errReplay
		}
		return nil
	}
}

// migrated returns a store with opts and a replay table on pool, migrated.
func migrated(t *testing.T, pool *pgxpool.Pool, opts ...authoritypg.Option) (*authoritypg.Store, *dpoppg.ReplayCache) {
	t.Helper()
	s, rc := authoritypg.New(pool, opts...), dpoppg.New(pool, dpoppg.WithClock(func() time.Time { return t0 }))
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s, rc
}

// TestConsumePassRecordedFolds (#19 item 6, A-VAL-8, G-16): with the dpoppg
// table on the store's own pool, the record and the consumption's read go
// in one batch, so a consumption of a pass the store does not remember
// (WithKnownPasses(0) here) costs two round trips; a replay is refused
// before anything is consumed (one round trip), and the pass then
// consumes with a fresh jti; a record function that fails or records
// nothing behaves as without the fold.
func TestConsumePassRecordedFolds(t *testing.T) {
	base := pgtest.Pool(t)
	migrated(t, base)
	pool, trips := pgtest.CountedPool(t, base)
	s, rc := migrated(t, pool, authoritypg.WithKnownPasses(0))
	var got dpop.ReplayCache
	approved(t, s, "warm", "hw")
	if _, err := s.ConsumePassRecorded(ctx, "hw", svcA, "zw", t0, rc, recordJTI("warm", &got)); err != nil { // prepares
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2", "r3", "r4"} {
		approved(t, s, id, "h"+id)
	}
	if _, err := rc.Seen(ctx, "authority:assertion:"+svcA, "spent", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	errVerify := errors.New("test: bad signature")
	for _, tc := range []struct {
		name, hash, jti string
		record          func(dpop.ReplayCache) error // default recordJTI(jti)
		wantErr         error
		want            []string // the round trips' first words
	}{
		{name: "fresh", hash: "hr1", jti: "j1", want: []string{"batch[INSERT", "WITH"}},
		{name: "replayed", hash: "hr2", jti: "spent", wantErr: errReplay, want: []string{"batch[INSERT"}},
		{name: "replayed pass untouched", hash: "hr2", jti: "j2", want: []string{"batch[INSERT", "WITH"}},
		{name: "unknown pass, recorded", hash: "nope", jti: "j3", wantErr: authority.ErrNotFound, want: []string{"batch[INSERT"}},
		{name: "spent on the unknown pass", hash: "hr3", jti: "j3", wantErr: errReplay, want: []string{"batch[INSERT"}},
		{name: "consumed pass", hash: "hr1", jti: "j4", wantErr: authority.ErrConsumed, want: []string{"batch[INSERT"}},
		{name: "no jti", hash: "hr3", want: []string{"SELECT", "WITH"}},
		{name: "verification failed", hash: "hr4", record: func(dpop.ReplayCache) error { return errVerify }, wantErr: errVerify},
	} {
		t.Run(tc.name, func(t *testing.T) {
			record := tc.record
			if record == nil {
				record = recordJTI(tc.jti, &got)
			}
			trips.Reset()
			c, err := s.ConsumePassRecorded(ctx, tc.hash, svcA, "z-"+tc.name, t0, rc, record)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ConsumePassRecorded: %v, want %v", err, tc.wantErr)
			}
			if err == nil && (c.Authorization == nil || c.Authorization.ID != "z-"+tc.name || c.Mission == nil) {
				t.Errorf("consumption %+v", c)
			}
			n, stmts := trips.Count()
			var words []string
			for _, s := range stmts {
				words = append(words, strings.Fields(s)[0])
			}
			if n != len(tc.want) || fmt.Sprint(words) != fmt.Sprint(tc.want) {
				t.Errorf("%d round trips %q, want %q (#19 item 6)", n, stmts, tc.want)
			}
		})
	}
	// Recorded exactly as dpoppg.Seen records: the same key and table.
	for _, jti := range []string{"j1", "j2", "j3"} {
		if held, err := rc.Contains(ctx, "authority:assertion:"+svcA, jti); err != nil || !held {
			t.Errorf("Contains(%s) = %v, %v; want recorded", jti, held, err)
		}
	}
	// The fourth pass was never touched by the failed verification.
	if _, err := s.ConsumePass(ctx, "hr4", svcA, "z-last", t0); err != nil {
		t.Errorf("the pass of a failed verification: %v", err)
	}
}

// TestConsumePassRecordedFallbacks (#19 item 6): any cache but the dpoppg
// table on the store's own pool records through its own Seen, then the
// consumption reads and writes as ConsumePass does; a replay is refused
// before anything is consumed.
func TestConsumePassRecordedFallbacks(t *testing.T) {
	base := pgtest.Pool(t)
	migrated(t, base)
	pool, trips := pgtest.CountedPool(t, base)
	s, _ := migrated(t, pool, authoritypg.WithKnownPasses(0))
	other, otherTrips := pgtest.CountedPool(t, base)
	elsewhere := dpoppg.New(other, dpoppg.WithClock(func() time.Time { return t0 }))
	memory := dpop.NewMemoryReplayCache(dpop.WithClock(func() time.Time { return t0 }))
	var got dpop.ReplayCache
	approved(t, s, "warm", "hw")
	if _, err := s.ConsumePassRecorded(ctx, "hw", svcA, "zw", t0, elsewhere, recordJTI("warm", &got)); err != nil { // prepares
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		cache     dpop.ReplayCache
		wantTrips int // on the other pool
	}{
		{"dpoppg on another pool", elsewhere, 1},
		{"memory", memory, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			approved(t, s, tc.name+"1", tc.name+"h1")
			approved(t, s, tc.name+"2", tc.name+"h2")
			trips.Reset()
			otherTrips.Reset()
			if _, err := s.ConsumePassRecorded(ctx, tc.name+"h1", svcA, tc.name+"z1", t0, tc.cache, recordJTI("f1", &got)); err != nil {
				t.Fatal(err)
			}
			if tc.cache == memory && got != memory {
				t.Errorf("record was given %T, want the memory cache itself", got)
			}
			if n, stmts := trips.Count(); n != 2 || !strings.HasPrefix(stmts[0], "SELECT") {
				t.Errorf("store: %d round trips %q, want the read and the write", n, stmts)
			}
			if n, stmts := otherTrips.Count(); n != tc.wantTrips {
				t.Errorf("replay pool: %d round trips %q, want %d", n, stmts, tc.wantTrips)
			}
			trips.Reset()
			if _, err := s.ConsumePassRecorded(ctx, tc.name+"h2", svcA, tc.name+"z2", t0, tc.cache, recordJTI("f1", &got)); !errors.Is(err, errReplay) {
				t.Fatalf("replay: %v, want %v", err, errReplay)
			}
			if n, stmts := trips.Count(); n != 0 {
				t.Errorf("store after a replay: %d round trips %q, want none", n, stmts)
			}
			if _, err := s.ConsumePass(ctx, tc.name+"h2", svcA, tc.name+"z3", t0); err != nil {
				t.Errorf("the replayed record's pass: %v", err)
			}
		})
	}
}

// TestConsumePassRecordedReplicas (#19 item 6, A-VAL-8 across replicas):
// two replicas, each with the table on its own pool, record one jti with
// two different passes at once, over and over; each time exactly one
// consumes its pass, and the other's pass stays unconsumed.
func TestConsumePassRecordedReplicas(t *testing.T) {
	pools := pgtest.Replicas(t, 2, false)
	s1, rc1 := migrated(t, pools[0])
	s2, rc2 := authoritypg.New(pools[1]), dpoppg.New(pools[1], dpoppg.WithClock(func() time.Time { return t0 }))
	stores := []*authoritypg.Store{s1, s2}
	caches := []*dpoppg.ReplayCache{rc1, rc2}
	const rounds = 30
	for i := range rounds {
		approved(t, s1, fmt.Sprint("a", i), fmt.Sprint("ha", i))
		approved(t, s1, fmt.Sprint("b", i), fmt.Sprint("hb", i))
	}
	var consumed, refused atomic.Int32
	for i := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for r, h := range []string{fmt.Sprint("ha", i), fmt.Sprint("hb", i)} {
			wg.Go(func() {
				<-start
				var got dpop.ReplayCache
				_, err := stores[r].ConsumePassRecorded(context.Background(), h, svcA, fmt.Sprint("z", h), t0, caches[r],
					recordJTI(fmt.Sprint("race", i), &got))
				switch {
				case err == nil:
					consumed.Add(1)
				case errors.Is(err, errReplay):
					refused.Add(1)
					// Untouched: a fresh jti consumes it.
					if _, err := stores[r].ConsumePassRecorded(ctx, h, svcA, fmt.Sprint("y", h), t0, caches[r],
						recordJTI(fmt.Sprint("fresh", h), &got)); err != nil {
						t.Errorf("the refused replica's pass: %v", err)
					}
				default:
					t.Errorf("ConsumePassRecorded: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	if consumed.Load() != rounds || refused.Load() != rounds {
		t.Errorf("consumed %d, refused %d; want %d each", consumed.Load(), refused.Load(), rounds)
	}
}
