package dpop

import (
	"context"
	"errors"
	"fmt"
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
	c := NewMemoryReplayCache(WithLimit(2), WithClock(clk.Now))
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
	c := NewMemoryReplayCache(WithLimit(1000), WithClock(fixed(t0)))
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
	c := NewMemoryReplayCache()
	if c.lim.Max != defaultReplayCacheSize {
		t.Errorf("max = %d", c.lim.Max)
	}
	if r, err := c.Seen(context.Background(), "i", "j", time.Now().Add(time.Minute)); r || err != nil {
		t.Errorf("Seen = %v, %v", r, err)
	}
}

// Issuer A flooding the cache cannot make issuer B's fresh jti fail
// (G-3: a shared replay store must not become a way to refuse others'
// proofs). A is refused once it holds its share and the cache is nearly
// full; B, under its share, still gets in; only a full cache refuses B.
func TestMemoryReplayCacheIssuerQuota(t *testing.T) {
	ctx := context.Background()
	c := NewMemoryReplayCache(WithLimit(1024), WithClock(fixed(t0))) // share 16, reserve 256
	exp := t0.Add(time.Minute)
	var accepted int
	for i := range 2000 {
		_, err := c.Seen(ctx, "dpop:attacker", fmt.Sprint("flood-", i), exp)
		if err == nil {
			accepted++
			continue
		}
		if !errors.Is(err, ErrReplayCacheFull) {
			t.Fatalf("flood %d: %v, want ErrReplayCacheFull", i, err)
		}
	}
	if accepted != 1024-256 {
		t.Errorf("flooding issuer got %d entries, want %d (capacity minus the reserve)", accepted, 1024-256)
	}
	for i := range 16 {
		if replayed, err := c.Seen(ctx, "dpop:honest", fmt.Sprint("fresh-", i), exp); err != nil || replayed {
			t.Fatalf("honest issuer's fresh jti %d during the flood: %v, %v", i, replayed, err)
		}
	}
	// Past its own share, the honest issuer is refused too, like A.
	if _, err := c.Seen(ctx, "dpop:honest", "fresh-16", exp); !errors.Is(err, ErrReplayCacheFull) {
		t.Errorf("issuer past its share under pressure: %v, want ErrReplayCacheFull", err)
	}
	// Its pairs are still remembered: refusal never turns into forgetting.
	if replayed, err := c.Seen(ctx, "dpop:honest", "fresh-0", exp); err != nil || !replayed {
		t.Errorf("recorded pair after refusals: %v, %v; want replayed", replayed, err)
	}
}

// Expired entries are evicted before anything is refused, earliest first,
// and an unexpired pair is never forgotten to make room.
func TestMemoryReplayCacheEvictsExpiredFirst(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	c := NewMemoryReplayCache(WithLimit(4), WithClock(clk.Now))
	for i, ttl := range []time.Duration{10, 20, 30, 40} {
		if _, err := c.Seen(ctx, fmt.Sprint("iss-", i), "j", t0.Add(ttl*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Seen(ctx, "late", "j", t0.Add(time.Minute)); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("full of unexpired entries: %v, want ErrReplayCacheFull", err)
	}
	clk.Advance(25 * time.Second) // iss-0 and iss-1 expired
	for _, iss := range []string{"late", "later"} {
		if replayed, err := c.Seen(ctx, iss, "j", t0.Add(time.Minute)); err != nil || replayed {
			t.Fatalf("%s after expiry of two: %v, %v", iss, replayed, err)
		}
	}
	for _, iss := range []string{"iss-2", "iss-3", "late", "later"} {
		if ok, err := c.Contains(ctx, iss, "j"); err != nil || !ok {
			t.Errorf("unexpired %s forgotten: %v, %v", iss, ok, err)
		}
	}
	if ok, _ := c.Contains(ctx, "iss-0", "j"); ok {
		t.Error("expired pair still reported present")
	}
	if c.Len() != 4 {
		t.Errorf("Len = %d, want 4", c.Len())
	}
}

// Contains looks up without recording: a lookup-before, record-after
// verifier leaves nothing behind for a proof it then refuses.
func TestMemoryReplayCacheContains(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: t0}
	c := NewMemoryReplayCache(WithLimit(10), WithClock(clk.Now))
	var lookup ReplayLookup = c
	if ok, err := lookup.Contains(ctx, "h", "j"); err != nil || ok {
		t.Fatalf("Contains before Seen = %v, %v", ok, err)
	}
	if c.Len() != 0 {
		t.Fatal("Contains recorded the pair")
	}
	if _, err := c.Seen(ctx, "h", "j", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ok, err := lookup.Contains(ctx, "h", "j"); err != nil || !ok {
		t.Fatalf("Contains after Seen = %v, %v", ok, err)
	}
	if ok, _ := lookup.Contains(ctx, "h", "other"); ok {
		t.Error("Contains of another jti")
	}
	clk.Advance(time.Minute)
	if ok, _ := lookup.Contains(ctx, "h", "j"); ok {
		t.Error("Contains of an expired pair")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Contains(cctx, "h", "j"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

// The default bound serves 10,000 verifications a second from one issuer
// for five minutes (the sizing rule: rate × lifetime), yet is a bound.
func TestMemoryReplayCacheDefaultSizing(t *testing.T) {
	c := NewMemoryReplayCache()
	if lone := c.lim.Max - c.lim.Reserve; lone < 10_000*300 {
		t.Errorf("a lone issuer may hold %d entries, fewer than 10,000/s × 300 s", lone)
	}
	if c.lim.Max <= 0 || c.lim.PerOwner <= 0 || c.lim.PerOwner*16 > c.lim.Reserve*4 {
		t.Errorf("limits %+v: unbounded, or the reserve holds fewer than 4 issuers' shares", c.lim)
	}
}
