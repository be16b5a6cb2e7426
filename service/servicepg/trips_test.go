package servicepg_test

import (
	"testing"
	"time"

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
