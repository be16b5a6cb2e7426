package pgtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Replicas returns n pools on one fresh schema, each with connections of
// its own, as n replicas of a service would have. The first is opened with
// ExclusivePool when exclusive is set (a test that restarts the server).
func Replicas(t testing.TB, n int, exclusive bool) []*pgxpool.Pool {
	t.Helper()
	var first *pgxpool.Pool
	if exclusive {
		first = ExclusivePool(t)
	} else {
		first = Pool(t)
	}
	pools := []*pgxpool.Pool{first}
	for len(pools) < n {
		pools = append(pools, SharedPool(t, first))
	}
	return pools
}

// Workload is a set of operations run by concurrent callers across a
// restart of the server (see [RunRestart]).
type Workload struct {
	// Ops is the number of operations. Each is retried by its caller
	// until the database answers it, as a client of a store would.
	Ops int
	// Workers is the number of concurrent callers; zero means 16.
	Workers int
	// Do performs operation op as caller worker (0 <= worker < Workers).
	// Every call of one op must be the same request (same ids), so that a
	// retry can be told from a competitor.
	Do func(ctx context.Context, worker, op int) error
	// Answered reports whether err is the database's answer (nil, or a
	// store sentinel such as ErrConsumed) rather than a failed call whose
	// outcome is unknown. Unanswered calls are retried.
	Answered func(err error) bool
}

// Outcome is what the callers of a [Workload] saw.
type Outcome struct {
	// Final holds the answer each op ended with.
	Final []error
	// Unknown marks the ops that had at least one call without an answer
	// (the connection broke, the call timed out) before their answer: the
	// ops whose first attempt may or may not have taken effect.
	Unknown []bool
	// Failures counts the calls without an answer.
	Failures int
}

// UnknownOps returns how many ops had an unknown outcome before their answer.
func (o *Outcome) UnknownOps() int {
	n := 0
	for _, u := range o.Unknown {
		if u {
			n++
		}
	}
	return n
}

// RunRestart runs w and restarts the server (see [Restart]) while
// operations are in flight: the restart starts once a tenth of the ops
// were answered, and the second half of the ops is held back until a
// caller has seen the server go away (or the restart is over), so the
// workload cannot run out before the outage. RunRestart returns when every
// op has been answered; it fails the test unless some call failed during
// the restart, no call failed before it, and every caller saw the database
// answer after the restart. The test must hold the server exclusively.
func RunRestart(t testing.TB, w Workload) *Outcome {
	t.Helper()
	if w.Workers == 0 {
		w.Workers = 16
	}
	if w.Ops < 2*w.Workers {
		t.Fatalf("pgtest: RunRestart needs at least %d ops for %d workers", 2*w.Workers, w.Workers)
	}
	out := &Outcome{Final: make([]error, w.Ops), Unknown: make([]bool, w.Ops)}
	var (
		next, answered  atomic.Int64
		failures        atomic.Int64
		failedBefore    atomic.Int64
		restarting      atomic.Bool
		triggerOnce     sync.Once
		downOnce        sync.Once
		trigger         = make(chan struct{}) // a tenth answered: restart now
		down            = make(chan struct{}) // a caller saw a failure after the restart began
		restarted       = make(chan struct{}) // Restart returned
		answeredAfter   = make([]bool, w.Workers)
		wg              sync.WaitGroup
		triggerAt, gate = int64(max(w.Ops/10, 1)), w.Ops / 2
		released        = make(chan struct{}) // down or restarted
		releaseOnce     sync.Once
		release         = func() { releaseOnce.Do(func() { close(released) }) }
		ctx, cancelAll  = context.WithCancel(context.Background())
		backoff         = 5 * time.Millisecond
		perCall         = 10 * time.Second
		deadlineOverall = 3 * time.Minute
		overall         = time.AfterFunc(deadlineOverall, cancelAll)
	)
	defer overall.Stop()
	defer cancelAll()
	for worker := range w.Workers {
		wg.Go(func() {
			for {
				op := int(next.Add(1) - 1)
				if op >= w.Ops {
					return
				}
				if op >= gate {
					select {
					case <-released:
					case <-ctx.Done():
						return
					}
				}
				for {
					cctx, cancel := context.WithTimeout(ctx, perCall)
					err := w.Do(cctx, worker, op)
					cancel()
					if w.Answered(err) {
						out.Final[op] = err
						select {
						case <-restarted:
							answeredAfter[worker] = true
						default:
						}
						if answered.Add(1) == triggerAt {
							triggerOnce.Do(func() { close(trigger) })
						}
						break
					}
					out.Unknown[op] = true
					failures.Add(1)
					if !restarting.Load() {
						failedBefore.Add(1)
					} else {
						downOnce.Do(func() { close(down) })
					}
					if ctx.Err() != nil {
						return
					}
					timer := time.NewTimer(backoff) // a caller's retry backoff
					select {
					case <-timer.C:
					case <-ctx.Done():
						timer.Stop()
						return
					}
				}
			}
		})
	}
	select {
	case <-trigger:
	case <-ctx.Done():
	}
	restarting.Store(true)
	go func() {
		select {
		case <-down:
			release()
		case <-restarted:
		}
	}()
	Restart(t)
	close(restarted)
	release()
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("pgtest: workload not answered within %v (%d of %d ops)", deadlineOverall, answered.Load(), w.Ops)
	}
	out.Failures = int(failures.Load())
	if n := failedBefore.Load(); n != 0 {
		t.Errorf("pgtest: %d calls failed before the restart", n)
	}
	if out.Failures == 0 {
		t.Error("pgtest: no call failed: the restart was not observed")
	}
	for worker, ok := range answeredAfter {
		if !ok {
			t.Errorf("pgtest: caller %d never saw the database answer after the restart", worker)
		}
	}
	return out
}
