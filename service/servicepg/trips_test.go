package servicepg_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop/dpoppg"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// TestRedeemRoundTrips holds the Service store's part of a redemption to
// one round trip (#19 item 6): the delegation and its credential in one
// statement, no transaction. A retry after a lost answer adds one read.
func TestRedeemRoundTrips(t *testing.T) {
	base0 := pgtest.Pool(t)
	if err := servicepg.New(base0).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool, trips := pgtest.CountedPool(t, base0)
	s := servicepg.New(pool)
	if err := s.Redeem(ctx, delegation("warm"), bearer("warm", "hw", base.Add(time.Hour)), nil); err != nil { // prepares the statement
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		id   string
		want int
	}{
		{"redeem", "z1", 1},
		{"retry after a lost answer", "z1", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trips.Reset()
			if err := s.Redeem(ctx, delegation(tc.id), bearer(tc.id, "h-"+tc.id, base.Add(time.Hour)), nil); err != nil {
				t.Fatal(err)
			}
			if n, stmts := trips.Count(); n != tc.want {
				t.Errorf("%d round trips, want %d (#19 item 6): %q", n, tc.want, stmts)
			}
		})
	}
}

// TestGenericPlans (#19 item 6): a redemption's statement and the
// credential lookup of every request run on the server's cached generic
// plans, under the default plan_cache_mode, once a connection has run them
// a few times, instead of being planned for each execution.
func TestGenericPlans(t *testing.T) {
	base0 := pgtest.Pool(t)
	if err := servicepg.New(base0).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.OneConnPool(t, base0) // every statement on one connection
	s := servicepg.New(pool)
	for i := range 8 {
		id, hash := fmt.Sprintf("z%d", i), fmt.Sprintf("h%d", i)
		if err := s.Redeem(ctx, delegation(id), bearer(id, hash, base.Add(time.Hour)), nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Credential(ctx, hash, base); err != nil {
			t.Fatal(err)
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

// TestRedeemRecordedRoundTrips (#19 item 6): the harness proof's replay
// record folded into Redeem's statement costs no round trip of its own, a
// replay none either, and the statement runs on a cached generic plan.
func TestRedeemRecordedRoundTrips(t *testing.T) {
	base0 := pgtest.Pool(t)
	now := func() time.Time { return base }
	recordingReplica(t, base0, now) // migrates both
	pool := pgtest.OneConnPool(t, base0)
	pool, trips := pgtest.CountedPool(t, pool)
	s, rc := servicepg.New(pool), dpoppg.New(pool, dpoppg.WithClock(now))
	exp := base.Add(time.Minute)
	for i := range 8 { // warm: prepared, then the generic plan
		id := fmt.Sprintf("w%d", i)
		if err := s.RedeemRecorded(ctx, rc, delegation(id), bearer(id, "h-"+id, base.Add(time.Hour)), nil, claim("h", id, exp)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, id, jti string
		replay        bool
	}{
		{"redeem", "z1", "j1", false},
		{"replay", "z2", "j1", true},
	} {
		trips.Reset()
		err := s.RedeemRecorded(ctx, rc, delegation(tc.id), bearer(tc.id, "h-"+tc.id, base.Add(time.Hour)), nil, claim("h", tc.jti, exp))
		if tc.replay != errors.Is(err, errReplayed) || !tc.replay && err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n, stmts := trips.Count(); n != 1 {
			t.Errorf("%s: %d round trips, want 1 (#19 item 6): %q", tc.name, n, stmts)
		}
	}
	if replanned, checked := pgtest.Replanned(t, pool); len(replanned) > 0 || checked < 1 {
		t.Errorf("planned anew on every execution: %q (%d checked)", replanned, checked)
	}
}
