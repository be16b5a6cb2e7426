package dpop

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryReplayCache(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	c := NewMemoryReplayCache(2, clk.Now)
	seen := func(iss, jti string, exp time.Time) bool {
		t.Helper()
		r, err := c.Seen(ctx, iss, jti, exp)
		if err != nil {
			t.Fatalf("Seen(%q, %q): %v", iss, jti, err)
		}
		return r
	}
	if seen("a", "1", t0.Add(time.Minute)) {
		t.Error("first use reported as replay")
	}
	if !seen("a", "1", t0.Add(time.Minute)) {
		t.Error("second use not reported as replay")
	}
	// Keyed on (iss, jti), with no ambiguity between the two.
	if seen("b", "1", t0.Add(2*time.Minute)) {
		t.Error("same jti under another issuer reported as replay")
	}
	// Full of unexpired entries: fail closed.
	if _, err := c.Seen(ctx, "ab", "c", t0.Add(time.Minute)); !errors.Is(err, ErrReplayCacheFull) {
		t.Errorf("full cache: err = %v, want ErrReplayCacheFull", err)
	}
	// After the first entry expires it is evicted and room appears; the
	// unexpired entry is still remembered.
	clk.Advance(time.Minute)
	if seen("ab", "c", t0.Add(3*time.Minute)) {
		t.Error("new pair reported as replay")
	}
	if !seen("b", "1", t0.Add(2*time.Minute)) {
		t.Error("unexpired pair forgotten after eviction")
	}
	if got := c.Len(); got != 2 {
		t.Errorf("Len = %d, want 2", got)
	}
	// An already expired pair is not stored.
	clk.Advance(10 * time.Minute)
	for range 2 {
		if seen("z", "9", t0) {
			t.Error("expired pair reported as replay")
		}
	}
	if got := c.Len(); got != 0 {
		t.Errorf("Len = %d after expiry, want 0", got)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Seen(cctx, "a", "x", t0.Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: err = %v", err)
	}
}

// Seen is an atomic check-and-insert: of many concurrent callers with the
// same pair exactly one wins.
func TestMemoryReplayCacheConcurrent(t *testing.T) {
	c := NewMemoryReplayCache(1000, fixed(t0))
	var fresh atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Seen(context.Background(), "iss", "jti", t0.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if !r {
				fresh.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := fresh.Load(); got != 1 {
		t.Errorf("%d callers saw the pair as fresh, want 1", got)
	}
}

func TestMemoryReplayCacheDefaults(t *testing.T) {
	c := NewMemoryReplayCache(0, nil)
	if c.max != DefaultReplayCacheSize {
		t.Errorf("max = %d", c.max)
	}
	if r, err := c.Seen(context.Background(), "i", "j", time.Now().Add(time.Minute)); r || err != nil {
		t.Errorf("Seen = %v, %v", r, err)
	}
}
