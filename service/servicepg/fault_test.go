package servicepg_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// TestRestartMidRun restarts PostgreSQL while two replicas consume 1,500
// initialization tokens and store 1,500 redemptions, two competing
// callers per token and per authorization id, each caller retrying its
// operation until the database answers (issue 14 item 12, issue 9 item
// 5). No token is consumed twice and no authorization id stored twice;
// every reported success is in the database; no redemption is lost (a
// Redeem retried after its answer was lost converges on success). A token
// refused to both callers is allowed only where a caller's first attempt
// had an unknown outcome: ConsumeInit cannot tell a retry from a replay.
func TestRestartMidRun(t *testing.T) {
	if os.Getenv(pgtest.EnvRestart) == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", pgtest.EnvRestart)
	}
	pools := pgtest.Replicas(t, 2, true)
	stores := []*servicepg.Store{servicepg.New(pools[0]), servicepg.New(pools[1])}
	if err := stores[0].Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	const tokens, redemptions = 1500, 1500
	for i := range tokens {
		id := fmt.Sprintf("d%d", i)
		if err := stores[i%2].Redeem(ctx, delegation(id), nil, initToken(id, fmt.Sprintf("i%d", i), base.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	// Unit u < tokens is init token u, else the redemption of
	// authorization id r{u}; op 2k and 2k+1 are the two competitors of
	// unit units[k], on different replicas.
	units := rand.Perm(tokens + redemptions)
	cred := func(op int) string { return fmt.Sprintf("c%c-%d", "ab"[op%2], units[op/2]) }
	out := pgtest.RunRestart(t, pgtest.Workload{
		Ops: 2 * (tokens + redemptions),
		Do: func(ctx context.Context, _, op int) error {
			s := stores[op%2]
			if u := units[op/2]; u < tokens {
				_, err := s.ConsumeInit(ctx, fmt.Sprintf("i%d", u), base)
				return err
			}
			id := fmt.Sprintf("r%d", units[op/2])
			return s.Redeem(ctx, delegation(id), bearer(id, cred(op), base.Add(time.Hour)), nil)
		},
		Answered: func(err error) bool {
			return err == nil || errors.Is(err, service.ErrInitUsed) || errors.Is(err, service.ErrConflict)
		},
	})
	t.Logf("calls without an answer: %d; ops with an unknown outcome before their answer: %d", out.Failures, out.UnknownOps())

	lostTokens := 0
	for k, u := range units {
		a, b := 2*k, 2*k+1
		winner := -1
		switch {
		case out.Final[a] == nil && out.Final[b] == nil:
			t.Errorf("unit %d: both callers succeeded (a token consumed or an id stored twice)", u)
			continue
		case out.Final[a] == nil:
			winner = a
		case out.Final[b] == nil:
			winner = b
		}
		if u < tokens {
			_, err := stores[1].ConsumeInit(ctx, fmt.Sprintf("i%d", u), base)
			switch {
			case !errors.Is(err, service.ErrInitUsed):
				t.Errorf("init token %d: %v after the run, want ErrInitUsed (answers %v, %v)", u, err, out.Final[a], out.Final[b])
			case winner < 0 && !out.Unknown[a] && !out.Unknown[b]:
				t.Errorf("init token %d lost: both callers refused without an unknown outcome", u)
			case winner < 0:
				lostTokens++
			}
			continue
		}
		if winner < 0 {
			t.Errorf("redemption r%d lost: both callers refused (%v, %v; outcome unknown: %v, %v)",
				u, out.Final[a], out.Final[b], out.Unknown[a], out.Unknown[b])
			continue
		}
		loser := a + b - winner
		if _, d, err := stores[0].Credential(ctx, cred(winner), base); err != nil || d.AuthorizationID != fmt.Sprintf("r%d", u) {
			t.Errorf("redemption r%d: false success: %s reported stored; %v, %v", u, cred(winner), d, err)
		}
		if _, _, err := stores[0].Credential(ctx, cred(loser), base); !errors.Is(err, service.ErrNotFound) {
			t.Errorf("redemption r%d: the refused credential %s is stored: %v", u, cred(loser), err)
		}
	}
	t.Logf("init tokens used up by an attempt whose outcome was unknown: %d", lostTokens)
}
