package authoritypg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/pass"
)

// TestRestartMidRun restarts PostgreSQL (pg_ctl restart -m fast) while two
// replicas consume passes and decide requests concurrently (issue 9, item
// 5). Afterwards: no pass was consumed twice, every reported success is in
// the database (no false successes), every request reported decided keeps
// the reported decision, callers saw errors while the server was down, and
// the same Store values work again without being recreated.
func TestRestartMidRun(t *testing.T) {
	if os.Getenv(pgtest.EnvRestart) == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", pgtest.EnvRestart)
	}
	pool := pgtest.ExclusivePool(t)
	s1, s2 := authoritypg.New(pool), authoritypg.New(pgtest.SharedPool(t, pool))
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stores := []*authoritypg.Store{s1, s2}
	const passes, pending, workers = 400, 400, 16
	now := t0.Add(time.Minute)
	for i := range passes {
		approved(t, stores[i%2], fmt.Sprintf("r%d", i), fmt.Sprintf("h%d", i))
	}
	for i := range pending {
		r := authoritytest.NewRequest(fmt.Sprintf("p%d", i))
		r.ExpiresAt = t0.Add(time.Hour)
		if err := stores[i%2].CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu         sync.Mutex
		consumedBy = map[int][]string{}      // pass -> authorization ids reported consumed
		refusedAt  = map[int]bool{}          // pass -> some caller got ErrConsumed
		decidedBy  = map[int][]pass.Status{} // request -> decisions reported made
		winner     = map[int]string{}
		downErrs   atomic.Int64 // errors that are not store sentinels
		okAfter    [2]atomic.Int64
		restarted  atomic.Bool
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	sentinel := func(err error) bool {
		for _, e := range []error{authority.ErrNotFound, authority.ErrConflict, authority.ErrNotPending, authority.ErrExpired,
			authority.ErrConsumed, authority.ErrWrongAudience, authority.ErrState, authority.ErrScopeWiden} {
			if errors.Is(err, e) {
				return true
			}
		}
		return false
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replica := w % 2
			s := stores[replica]
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				var err error
				i := (n*workers + w*7) % passes
				if n%2 == 0 {
					id := fmt.Sprintf("z-%d-%d", w, n)
					_, err = s.ConsumePass(cctx, fmt.Sprintf("h%d", i), svcA, id, now)
					mu.Lock()
					switch {
					case err == nil:
						consumedBy[i] = append(consumedBy[i], id)
					case errors.Is(err, authority.ErrConsumed):
						refusedAt[i] = true
					}
					mu.Unlock()
				} else {
					e := authoritytest.Approval("tickets:read")
					if n%4 == 1 {
						e.Status = pass.StatusDenied
					}
					e.DecidedBy = fmt.Sprintf("w%d-%d", w, n)
					_, err = authoritytest.DecideRequest(s, fmt.Sprintf("p%d", i), e, now)
					if err == nil {
						mu.Lock()
						decidedBy[i] = append(decidedBy[i], e.Status)
						winner[i] = e.DecidedBy
						mu.Unlock()
					}
				}
				cancel()
				switch {
				case err == nil || sentinel(err):
					// The database answered (a sentinel is an answer too:
					// the finite workload runs out of successes, so only
					// counting successes made recovery depend on timing).
					if restarted.Load() {
						okAfter[replica].Add(1)
					}
				default:
					downErrs.Add(1)
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // a run under way
	before := downErrs.Load()
	pgtest.Restart(t)
	restarted.Store(true)
	deadline := time.Now().Add(30 * time.Second)
	for okAfter[0].Load() < 20 || okAfter[1].Load() < 20 {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no recovery within 30s: answers after restart %d, %d", okAfter[0].Load(), okAfter[1].Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if before != 0 {
		t.Errorf("%d errors before the restart", before)
	}
	if downErrs.Load() == 0 {
		t.Error("no caller saw an error: the restart was not observed")
	}
	t.Logf("errors while down: %d; passes consumed: %d; requests decided: %d", downErrs.Load(), len(consumedBy), len(decidedBy))

	// Verify through the same stores (reconnected pools).
	for i, ids := range consumedBy {
		if len(ids) != 1 {
			t.Errorf("pass %d consumed %d times: %v", i, len(ids), ids)
			continue
		}
		r, err := s2.Request(ctx, fmt.Sprintf("msn_r%d", i))
		if err != nil || r.AuthorizationID != ids[0] || r.ConsumedAt.IsZero() {
			t.Errorf("pass %d reported consumed as %s; stored: %+v, %v", i, ids[0], r, err)
		}
		if _, err := s1.Authorization(ctx, ids[0]); err != nil {
			t.Errorf("authorization %s reported created: %v", ids[0], err)
		}
	}
	for i := range refusedAt {
		if r, err := s1.Request(ctx, fmt.Sprintf("msn_r%d", i)); err != nil || r.ConsumedAt.IsZero() {
			t.Errorf("pass %d refused as consumed but is not: %v", i, err)
		}
	}
	var perRequest int
	if err := pool.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM (
		SELECT count(*) AS n FROM agentpass_authority_authorizations GROUP BY mission_id) c`).Scan(&perRequest); err != nil || perRequest > 1 {
		t.Errorf("authorizations per request: %d, %v; want at most 1", perRequest, err)
	}
	for i, ds := range decidedBy {
		if len(ds) != 1 {
			t.Errorf("request p%d decided %d times", i, len(ds))
			continue
		}
		r, err := s2.Request(ctx, fmt.Sprintf("msn_p%d", i))
		if err != nil || r.Status != ds[0] || r.Decision == nil || r.Decision.DecidedBy != winner[i] {
			t.Errorf("request p%d reported %s by %s; stored %+v, %v", i, ds[0], winner[i], r, err)
		}
	}
}
