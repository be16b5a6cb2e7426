package pgtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Ticks records the ticks of a janitor (pgutil.RunJanitor) from its log,
// so a test can wait for ticks instead of sleeping. Pass Logger to the
// store's WithLogger.
type Ticks struct {
	mu      sync.Mutex
	rows    []int64 // rows deleted by each finished tick; -1 for a failed one
	behind  []bool  // whether the tick ran out of time before the backlog was gone
	changed chan struct{}
}

// NewTicks returns an empty recorder.
func NewTicks() *Ticks { return &Ticks{changed: make(chan struct{})} }

// Logger returns the logger to give the janitor.
func (k *Ticks) Logger() *slog.Logger { return slog.New(ticksHandler{k}) }

// Mark returns how many ticks have finished so far.
func (k *Ticks) Mark() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.rows)
}

// Wait waits until n ticks have finished after mark and returns the rows
// each of them deleted; it fails the test after 30 s. The second of two
// ticks finishing after mark started after mark was taken.
func (k *Ticks) Wait(t testing.TB, mark, n int) []int64 {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		if len(k.rows) >= mark+n {
			got := append([]int64(nil), k.rows[mark:mark+n]...)
			k.mu.Unlock()
			return got
		}
		ch := k.changed
		k.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("janitor: %d ticks after mark %d not finished within 30 s", n, mark)
		}
	}
}

// WaitCaughtUp waits for a tick that started after mark was taken and
// deleted the whole backlog, and fails the test after 30 s.
func (k *Ticks) WaitCaughtUp(t testing.TB, mark int) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		for i := mark + 1; i < len(k.rows); i++ {
			if k.rows[i] >= 0 && !k.behind[i] {
				k.mu.Unlock()
				return
			}
		}
		ch := k.changed
		k.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("janitor: no tick after mark %d caught up within 30 s", mark)
		}
	}
}

func (k *Ticks) add(rows int64, behind bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.rows = append(k.rows, rows)
	k.behind = append(k.behind, behind)
	close(k.changed)
	k.changed = make(chan struct{})
}

type ticksHandler struct{ k *Ticks }

func (h ticksHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h ticksHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h ticksHandler) WithGroup(string) slog.Handler            { return h }
func (h ticksHandler) Handle(_ context.Context, r slog.Record) error {
	rows := int64(-1)
	if r.Level < slog.LevelWarn || r.Message != "pgutil: prune failed" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "rows" {
				rows = a.Value.Int64()
				return false
			}
			return true
		})
	}
	h.k.add(rows, r.Message == "pgutil: prune did not catch up within the interval")
	return nil
}
