package servicepg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/pgtest"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicepg"
)

// TestRestartMidRun restarts PostgreSQL while two replicas consume
// initialization tokens and redeem passes concurrently (issue 9, item 5):
// no token is consumed twice, every reported success is stored, callers
// get errors while the server is down, and the same stores recover.
func TestRestartMidRun(t *testing.T) {
	if os.Getenv(pgtest.EnvRestart) == "" {
		t.Skipf("fault tests need %s; run: eval \"$(.ci/postgres.sh start)\"", pgtest.EnvRestart)
	}
	pool := pgtest.ExclusivePool(t)
	s1, s2 := servicepg.New(pool), servicepg.New(pgtest.SharedPool(t, pool))
	if err := s1.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	stores := []*servicepg.Store{s1, s2}
	const tokens, workers = 400, 16
	for i := range tokens {
		id := fmt.Sprintf("d%d", i)
		if err := stores[i%2].Redeem(ctx, delegation(id), nil, initToken(id, fmt.Sprintf("i%d", i), base.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu        sync.Mutex
		consumed  = map[int]int{}
		redeemed  []string
		downErrs  atomic.Int64
		okAfter   [2]atomic.Int64
		restarted atomic.Bool
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
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
				if n%2 == 0 {
					i := (n*workers + w*7) % tokens
					_, err = s.ConsumeInit(cctx, fmt.Sprintf("i%d", i), base)
					if err == nil {
						mu.Lock()
						consumed[i]++
						mu.Unlock()
					}
				} else {
					id := fmt.Sprintf("r-%d-%d", w, n)
					err = s.Redeem(cctx, delegation(id), bearer(id, "c"+id, base.Add(time.Hour)), nil)
					if err == nil {
						mu.Lock()
						redeemed = append(redeemed, id)
						mu.Unlock()
					}
				}
				cancel()
				switch {
				case err == nil:
					if restarted.Load() {
						okAfter[replica].Add(1)
					}
				case errors.Is(err, service.ErrInitUsed):
				default:
					downErrs.Add(1)
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	before := downErrs.Load()
	pgtest.Restart(t)
	restarted.Store(true)
	deadline := time.Now().Add(30 * time.Second)
	for okAfter[0].Load() < 20 || okAfter[1].Load() < 20 {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no recovery within 30s: successes after restart %d, %d", okAfter[0].Load(), okAfter[1].Load())
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
	t.Logf("errors while down: %d; tokens consumed: %d; redemptions: %d", downErrs.Load(), len(consumed), len(redeemed))
	for i, k := range consumed {
		if k != 1 {
			t.Errorf("init token %d consumed %d times", i, k)
		}
		if _, err := s2.ConsumeInit(ctx, fmt.Sprintf("i%d", i), base); !errors.Is(err, service.ErrInitUsed) {
			t.Errorf("init token %d reported consumed; now: %v", i, err)
		}
	}
	for _, id := range redeemed {
		if _, _, err := s1.Credential(ctx, "c"+id, base); err != nil {
			t.Errorf("redemption %s reported stored: %v", id, err)
		}
	}
}
