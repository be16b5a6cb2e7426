package testnet

import (
	"sync"
	"sync/atomic"
	"time"
)

// Clock is a settable clock for every party of a network (pass `Now` as
// their Config.Now). It is safe for concurrent use.
type Clock struct {
	live   bool
	offset atomic.Int64 // live: nanoseconds ahead of the wall clock

	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at start. Start at the real time when
// the parties check the network's certificates (valid from an hour ago
// for a week).
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// NewLiveClock returns a clock that runs with the wall clock (Advance still
// moves it ahead), for benchmarks whose caches and records must expire
// while they run, as they would in production.
func NewLiveClock() *Clock { return &Clock{live: true} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	if c.live {
		return time.Now().Add(time.Duration(c.offset.Load()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	if c.live {
		c.offset.Add(int64(d))
		return
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
