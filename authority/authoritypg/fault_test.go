package authoritypg_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// TestRestartMidRun restarts PostgreSQL (pg_ctl restart -m fast) while two
// replicas consume 2,000 passes and decide 1,000 requests, two competing
// callers per pass and per request, each caller retrying its operation
// until the database answers (issue 14 item 12, issue 9 item 5). Every
// pass ends consumed exactly once by a caller that was told so (no double
// consumption, no lost pass: a retry of a consumption whose outcome the
// broken connection hid converges on success); every reported success is
// in the database (no false success); every request is decided once, and
// a caller refused as "not pending" either lost to its competitor or
// finds its own decision stored after an unknown outcome.
func TestRestartMidRun(t *testing.T) {
	if os.Getenv(pgtest.EnvRestart) == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", pgtest.EnvRestart)
	}
	pools := pgtest.Replicas(t, 2, true)
	stores := []*authoritypg.Store{authoritypg.New(pools[0]), authoritypg.New(pools[1])}
	if err := stores[0].Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const passes, requests = 2000, 1000
	now := t0.Add(time.Minute)
	seed := func(i int) error {
		if i < passes {
			r := authoritytest.NewRequest(fmt.Sprintf("r%d", i))
			r.Status = pass.StatusApproved
			e := authoritytest.Approval("tickets:read")
			e.PassExpiresAt = t0.Add(time.Hour)
			e.AuthorizationExpiresAt = t0.Add(2 * time.Hour)
			r.Decision, r.PassHash = &e, fmt.Sprintf("h%d", i)
			return stores[i%2].CreateRequest(ctx, r)
		}
		r := authoritytest.NewRequest(fmt.Sprintf("p%d", i-passes))
		r.ExpiresAt = t0.Add(time.Hour)
		return stores[i%2].CreateRequest(ctx, r)
	}
	for i := range passes + requests {
		if err := seed(i); err != nil {
			t.Fatal(err)
		}
	}

	// Unit u < passes is pass u, else request u-passes; op 2k and 2k+1
	// are the two competitors of unit units[k], on different replicas.
	units := rand.Perm(passes + requests)
	caller := func(op int) string { return fmt.Sprintf("%c-%d", "ab"[op%2], units[op/2]) }
	evidence := func(op int) authority.Evidence {
		e := authoritytest.Approval("tickets:read")
		if op%2 == 1 {
			e.Status = pass.StatusDenied
		}
		e.DecidedBy = caller(op)
		return e
	}
	out := pgtest.RunRestart(t, pgtest.Workload{
		Ops: 2 * (passes + requests),
		Do: func(ctx context.Context, _, op int) error {
			s := stores[op%2]
			if u := units[op/2]; u < passes {
				_, err := s.ConsumePass(ctx, fmt.Sprintf("h%d", u), svcA, caller(op), now)
				return err
			}
			_, err := authoritytest.DecideRequest(s, fmt.Sprintf("p%d", units[op/2]-passes), evidence(op), now)
			return err
		},
		Answered: func(err error) bool {
			return err == nil || errors.Is(err, authority.ErrConsumed) || errors.Is(err, authority.ErrNotPending)
		},
	})
	t.Logf("calls without an answer: %d; ops with an unknown outcome before their answer: %d", out.Failures, out.UnknownOps())

	// Verify through the same stores (reconnected pools).
	lostDecisions := 0
	for k, u := range units {
		a, b := 2*k, 2*k+1
		var winner int
		switch {
		case out.Final[a] == nil && out.Final[b] == nil:
			t.Errorf("unit %d: both callers succeeded (double consumption or decision)", u)
			continue
		case out.Final[a] == nil:
			winner = a
		case out.Final[b] == nil:
			winner = b
		default:
			winner = -1
		}
		if u < passes {
			r, err := stores[1].Request(ctx, fmt.Sprintf("msn_r%d", u))
			switch {
			case err != nil:
				t.Errorf("pass %d: %v", u, err)
			case winner < 0:
				t.Errorf("pass %d lost: both callers were refused (%v, %v; outcome unknown: %v, %v); stored as consumed by %q",
					u, out.Final[a], out.Final[b], out.Unknown[a], out.Unknown[b], r.AuthorizationID)
			case r.ConsumedAt.IsZero() || r.AuthorizationID != caller(winner):
				t.Errorf("pass %d: false success: %s was told it consumed it; stored consumed at %v by %q",
					u, caller(winner), r.ConsumedAt, r.AuthorizationID)
			default:
				if _, err := stores[0].Authorization(ctx, caller(winner)); err != nil {
					t.Errorf("pass %d: authorization %s reported created: %v", u, caller(winner), err)
				}
			}
			continue
		}
		r, err := stores[1].Request(ctx, fmt.Sprintf("msn_p%d", u-passes))
		if err != nil || r.Decision == nil {
			t.Errorf("request %d: not decided: %+v, %v", u-passes, r, err)
			continue
		}
		if winner < 0 {
			// Both refused: the decision stored is one whose caller did not
			// learn the outcome (DecideRequest is not idempotent; the
			// caller reads the request to learn it was its own).
			if by := r.Decision.DecidedBy; !(by == caller(a) && out.Unknown[a]) && !(by == caller(b) && out.Unknown[b]) {
				t.Errorf("request %d: both callers refused, decided by %q without an unknown outcome", u-passes, by)
			}
			lostDecisions++
			continue
		}
		if e := evidence(winner); r.Decision.DecidedBy != e.DecidedBy || r.Status != e.Status {
			t.Errorf("request %d: %s was told it decided %s; stored %s by %s", u-passes, e.DecidedBy, e.Status, r.Status, r.Decision.DecidedBy)
		}
	}
	var perRequest int
	if err := pools[0].QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM (
		SELECT count(*) AS n FROM agentpass_authority_authorizations GROUP BY mission_id) c`).Scan(&perRequest); err != nil || perRequest > 1 {
		t.Errorf("authorizations per request: %d, %v; want at most 1", perRequest, err)
	}
	t.Logf("decisions learnt by reading after an unknown outcome: %d", lostDecisions)
}
