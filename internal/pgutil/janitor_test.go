package pgutil_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentpass-go/agentpass/internal/pgutil"
)

// table is a fake table of expired rows: prune deletes up to limit of them,
// taking cost of (virtual) time per call.
type table struct {
	mu      sync.Mutex
	backlog int64
	calls   int
	cost    time.Duration
	fail    func(call int) bool
}

func (tb *table) prune(ctx context.Context, limit int) (int64, error) {
	time.Sleep(tb.cost) // virtual time inside the synctest bubble
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.calls++
	if tb.fail != nil && tb.fail(tb.calls) {
		return 0, errors.New("database down")
	}
	n := min(int64(limit), tb.backlog)
	tb.backlog -= n
	return n, nil
}

func (tb *table) state() (backlog int64, calls int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.backlog, tb.calls
}

// records keeps what the janitor logs.
type records struct {
	mu   sync.Mutex
	msgs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }
func (r *records) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

// One tick clears a backlog of 50,500 rows: batches until one comes back
// short (the fixed 1,000 rows a minute of old fell behind for good).
func TestRunJanitorCatchesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := &table{backlog: 50_500, cost: 10 * time.Millisecond}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- pgutil.RunJanitor(ctx, time.Minute, nil, "test", tb.prune) }()
		time.Sleep(time.Second) // 51 batches of 10 ms
		synctest.Wait()
		if backlog, calls := tb.state(); backlog != 0 || calls != 51 {
			t.Fatalf("after the first tick: backlog %d, %d calls; want 0, 51", backlog, calls)
		}
		// Nothing more until the next tick, which finds nothing left.
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, calls := tb.state(); calls != 52 {
			t.Fatalf("after the second tick: %d calls, want 52", calls)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("RunJanitor returned %v, want context.Canceled", err)
		}
	})
}

// A tick stops after its interval even when every batch is full, says so,
// and the next tick starts at once.
func TestRunJanitorBoundedByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := &table{backlog: 1 << 40, cost: time.Second}
		var logs records
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- pgutil.RunJanitor(ctx, 10*time.Second, slog.New(&logs), "test", tb.prune) }()
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		if _, calls := tb.state(); calls != 9 {
			t.Fatalf("calls in the first 10 s of batches of 1 s: %d, want 9", calls)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := logs.got(); len(got) != 1 || got[0] != "pgutil: prune did not catch up within the interval" {
			t.Fatalf("logs after the first tick: %q", got)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if _, calls := tb.state(); calls != 15 {
			t.Fatalf("calls after 15 s: %d, want 15 (no pause between ticks that fell behind)", calls)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("RunJanitor returned %v, want context.Canceled", err)
		}
	})
}

// The janitor prunes at once and on every tick, survives failing prunes,
// and stops with its context.
func TestRunJanitor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tb := &table{backlog: 1 << 40, fail: func(call int) bool { return call%2 == 0 }}
		var logs records
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			done <- pgutil.RunJanitor(ctx, time.Millisecond, slog.New(&logs), "test", func(ctx context.Context, limit int) (int64, error) {
				n, err := tb.prune(ctx, limit)
				return min(n, 1), err // a short batch: one call per tick
			})
		}()
		time.Sleep(4*time.Millisecond + time.Microsecond)
		synctest.Wait()
		if _, calls := tb.state(); calls != 5 {
			t.Fatalf("calls after 4 ticks: %d, want 5", calls)
		}
		failed := 0
		for _, m := range logs.got() {
			if m == "pgutil: prune failed" {
				failed++
			}
		}
		if failed != 2 {
			t.Errorf("%d failures logged, want 2", failed)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("RunJanitor returned %v, want context.Canceled", err)
		}
		_, n := tb.state()
		time.Sleep(time.Second)
		synctest.Wait()
		if _, calls := tb.state(); calls != n {
			t.Fatal("janitor kept pruning after it returned")
		}
	})
}
