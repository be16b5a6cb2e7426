package testnet

import (
	"testing"
	"time"
)

// TestClocks: a clock from NewClock stands still until advanced; one from
// NewLiveClock follows the wall clock, ahead by what it was advanced.
func TestClocks(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("frozen clock moved: %v", c.Now())
	}
	c.Advance(time.Minute)
	if !c.Now().Equal(start.Add(time.Minute)) {
		t.Fatalf("Advance: %v", c.Now())
	}

	live := NewLiveClock()
	before := time.Now()
	if now := live.Now(); now.Before(before) || now.Sub(before) > time.Minute {
		t.Fatalf("live clock at %v, wall clock at %v", now, before)
	}
	live.Advance(time.Hour)
	if ahead := time.Until(live.Now()); ahead < 59*time.Minute || ahead > time.Hour {
		t.Fatalf("live clock ahead by %v after Advance(1h)", ahead)
	}
}
