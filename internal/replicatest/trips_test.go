package replicatest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/pgtest"
)

// TestRoundTrips holds a validation and a bearer redemption with a holder
// proof to their counted PostgreSQL round trips (issue #19 item 6), so a
// change that adds one fails here. Before #19 a validation took 9 (the
// assertion's replay lookup, BEGIN, SELECT ... FOR UPDATE, INSERT
// authorization, UPDATE mission, INSERT history, COMMIT, the replay
// record, and a second read of the mission for the answer); now 4. Real handlers over loopback TLS,
// real PostgreSQL, warm caches and prepared statements.
func TestRoundTrips(t *testing.T) {
	const (
		wantValidate      = 4 // Authority: assertion jti lookup, consume read, consume write, assertion jti record
		wantRedeemService = 3 // Service: proof jti lookup, proof jti record, Redeem
	)
	d := deploy(t, options{replicas: 1, postgres: true, countTrips: true})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	key, err := dpop.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	values := d.storePasses(t, 4, key)
	reqs := d.redemptions(t, key, values[2:])
	// Warm-up: discovery and JWKS caches, TLS connections, and statements
	// prepared on the pools' connections.
	if err := d.validate(ctx, values[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := d.redeem(ctx, 0, reqs[0]); err != nil {
		t.Fatal(err)
	}

	count := func(name string, c *pgtest.Trips, want int) {
		t.Helper()
		n, stmts := c.Count()
		t.Logf("%s: %d round trips, %d prepares", name, n, c.Prepares())
		for i, s := range stmts {
			t.Logf("  %d. %s", i+1, s)
		}
		if n != want {
			t.Errorf("%s: %d round trips, want %d (#19 item 6):\n%s", name, n, want, slices.Concat(stmts))
		}
	}

	d.authTrips.Reset()
	d.svcTrips.Reset()
	if err := d.validate(ctx, values[1]); err != nil {
		t.Fatal(err)
	}
	count("validation (Authority)", d.authTrips, wantValidate)
	count("validation (Service)", d.svcTrips, 0)

	d.authTrips.Reset()
	d.svcTrips.Reset()
	if _, err := d.redeem(ctx, 0, reqs[1]); err != nil {
		t.Fatal(err)
	}
	count("redemption (Authority)", d.authTrips, wantValidate)
	count("redemption (Service)", d.svcTrips, wantRedeemService)
}
