package ratelimit

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake clock safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// allowed counts how many of n calls for key are allowed.
func allowed(l *Limiter, key string, n int) int {
	k := 0
	for range n {
		if ok, _ := l.Allow(key); ok {
			k++
		}
	}
	return k
}

// G-2, G-32, G-35: a bucket grants Burst requests at once, then refuses
// with the time until the next token, and refills at PerSecond.
func TestBurstAndRefill(t *testing.T) {
	c := newClock()
	l := New(2, 5, 100, c.Now)
	if got := allowed(l, "a", 5); got != 5 {
		t.Fatalf("burst: %d of 5 allowed", got)
	}
	ok, wait := l.Allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("after the burst: Allow = %v, %v; want false, 500ms", ok, wait)
	}
	c.Advance(250 * time.Millisecond)
	if ok, wait := l.Allow("a"); ok || wait != 250*time.Millisecond {
		t.Fatalf("half a token later: Allow = %v, %v; want false, 250ms", ok, wait)
	}
	c.Advance(250 * time.Millisecond)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a token later: refused")
	}
	// A long idle time refills to Burst, never beyond.
	c.Advance(time.Hour)
	if got := allowed(l, "a", 10); got != 5 {
		t.Fatalf("after an hour: %d of 10 allowed, want 5", got)
	}
	// Other keys have their own buckets.
	if got := allowed(l, "b", 5); got != 5 {
		t.Fatalf("key b: %d of 5 allowed", got)
	}
}

// A clock going backwards neither refills nor breaks a bucket.
func TestClockBackwards(t *testing.T) {
	c := newClock()
	l := New(1, 1, 100, c.Now)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("first call refused")
	}
	c.Advance(-time.Hour)
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("allowed after the clock went back")
	}
	c.Advance(time.Hour + time.Second)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused a second after the original time")
	}
}

func TestBadParameters(t *testing.T) {
	for _, r := range []float64{0, -1, math.Inf(1), math.NaN()} {
		t.Run(fmt.Sprint(r), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v, ...) did not panic", r)
				}
			}()
			New(r, 1, 1, nil)
		})
	}
	l := New(1, 0, 0, nil) // burst and maxKeys raised to their minimum
	if got := allowed(l, "a", 3); got != 1 {
		t.Errorf("burst 0: %d of 3 allowed, want 1", got)
	}
}

// The number of keys stays bounded under 1e5 distinct keys (a flood of
// fresh client addresses), and the most recent keys keep their state.
func TestEvictionBound(t *testing.T) {
	c := newClock()
	const maxKeys = 1000
	l := New(1, 1, maxKeys, c.Now)
	for i := range 100_000 {
		l.Allow(fmt.Sprintf("k%d", i))
		if i%10_000 == 0 && l.Len() > maxKeys {
			t.Fatalf("after %d keys: Len = %d > %d", i+1, l.Len(), maxKeys)
		}
	}
	if n := l.Len(); n > maxKeys || n < maxKeys/2 {
		t.Fatalf("Len = %d, want at most %d (and most of it used)", n, maxKeys)
	}
	// The last key used is still remembered: its bucket is empty.
	if ok, _ := l.Allow("k99999"); ok {
		t.Error("the most recent key was forgotten")
	}
	// The first one was evicted: it comes back with a full bucket.
	if ok, _ := l.Allow("k0"); !ok {
		t.Error("an evicted key was not reset")
	}
}

// A recently used key survives eviction by least-recent use: a client
// cannot reset its own empty bucket by sending fresh keys (one in each use
// of its own key) unless they overflow its shard.
func TestEvictionIsLRU(t *testing.T) {
	c := newClock()
	l := New(1, 1, 2*shards, c.Now) // two keys per shard
	l.Allow("hot")
	for i := range 1000 {
		if ok, _ := l.Allow("hot"); ok {
			t.Fatalf("round %d: hot key allowed: its empty bucket was evicted", i)
		}
		l.Allow(fmt.Sprintf("cold%d", i))
		if l.Len() > 2*shards {
			t.Fatalf("Len = %d > %d", l.Len(), 2*shards)
		}
	}
}

// Under -race: concurrent callers on shared and distinct keys never get
// more than Burst tokens from one frozen-clock bucket.
func TestConcurrent(t *testing.T) {
	c := newClock()
	l := New(1, 100, 64, c.Now)
	var shared atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				if ok, _ := l.Allow("shared"); ok {
					shared.Add(1)
				}
				l.Allow(fmt.Sprintf("g%d-%d", g, i))
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			c.Advance(0)
			_ = l.Len()
		}
	})
	wg.Wait()
	if n := shared.Load(); n != 100 {
		t.Fatalf("shared key: %d allowed, want exactly the burst of 100", n)
	}
	if l.Len() > 64 {
		t.Fatalf("Len = %d > 64", l.Len())
	}
}

func TestClientIP(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
		{"192.0.2.7", "192.0.2.7"},
		{"@", "@"},
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			if got := ClientIP(r); got != tt.want {
				t.Errorf("ClientIP(%q) = %q, want %q", tt.remote, got, tt.want)
			}
		})
	}
}

// A-STAT-5, A-ISS-12, S-SCOPE-7, G-18: 429, Retry-After in whole seconds
// (rounded up), the rate_limited error body.
func TestDeny(t *testing.T) {
	for _, tt := range []struct {
		wait time.Duration
		want string
	}{{time.Nanosecond, "1"}, {time.Second, "1"}, {1500 * time.Millisecond, "2"}, {time.Minute, "60"}} {
		t.Run(tt.wait.String(), func(t *testing.T) {
			w := httptest.NewRecorder()
			Deny(w, tt.wait)
			if w.Code != http.StatusTooManyRequests {
				t.Errorf("status %d, want 429", w.Code)
			}
			if got := w.Header().Get("Retry-After"); got != tt.want {
				t.Errorf("Retry-After %q, want %q", got, tt.want)
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Error.Code != "rate_limited" || body.Error.Message == "" {
				t.Errorf("body %s (%v), want a rate_limited error", w.Body, err)
			}
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(1e9, 1<<30, 10000, nil)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("192.0.2.%d", i)
	}
	b.Run("one-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.Allow("192.0.2.1")
		}
	})
	b.Run("parallel-1000-keys", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				l.Allow(keys[i%len(keys)])
				i++
			}
		})
	})
	b.Run("parallel-fresh-keys-evicting", func(b *testing.B) {
		small := New(1, 1, 1000, nil)
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				small.Allow(strconv.FormatInt(n.Add(1), 10))
			}
		})
	})
}
