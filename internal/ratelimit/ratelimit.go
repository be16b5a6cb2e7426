// Package ratelimit is a token-bucket rate limiter keyed by a string (a
// client address, an e-mail address), with a bounded number of keys, and
// the 429 answer the role packages send when it refuses a request (gaps
// G-2, G-32 and G-35 of the requirements; A-STAT-5, A-ISS-12, S-SCOPE-7).
//
// # Overview
//
// Each key has a bucket of at most Burst tokens that refills at PerSecond
// tokens a second; a request takes one token or is refused with the time
// until one is available. The buckets live in a fixed number of shards,
// each a map plus a least-recently-used list of bounded length: when a
// shard is full, its least recently used bucket is dropped. A dropped
// bucket comes back full, so under a flood of more distinct keys than
// MaxKeys the limit weakens for the keys dropped (it fails open rather than
// refusing clients it has not seen); memory stays bounded either way.
//
// # Usage
//
//	l := ratelimit.New(10, 50, 10000, time.Now)
//	if ok, wait := l.Allow(ratelimit.ClientIP(r)); !ok {
//		ratelimit.Deny(w, wait)
//		return
//	}
package ratelimit

import (
	"container/list"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
)

// shards is the number of independently locked parts of a Limiter.
const shards = 16

// Limiter is a keyed token-bucket rate limiter holding at most a fixed
// number of keys. It is safe for concurrent use.
type Limiter struct {
	rate   float64 // tokens per second, > 0
	burst  float64 // bucket capacity, >= 1
	now    func() time.Time
	seed   maphash.Seed
	shards [shards]shard
}

type shard struct {
	mu      sync.Mutex
	max     int
	buckets map[string]*list.Element // of *bucket
	lru     list.List                // front = most recently used
}

type bucket struct {
	key    string
	tokens float64
	last   time.Time
}

// New returns a Limiter allowing perSecond requests a second per key with
// bursts of burst requests, remembering at most maxKeys keys. perSecond
// must be positive and finite (New panics otherwise: callers validate
// their configuration first); burst below 1 is taken as 1; maxKeys below
// the shard count (16) is taken as 16. now is the clock; if nil, time.Now.
func New(perSecond float64, burst, maxKeys int, now func() time.Time) *Limiter {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) {
		panic("ratelimit: perSecond must be positive and finite")
	}
	if now == nil {
		now = time.Now
	}
	l := &Limiter{rate: perSecond, burst: float64(max(burst, 1)), now: now, seed: maphash.MakeSeed()}
	maxKeys = max(maxKeys, shards)
	for i := range l.shards {
		l.shards[i].max = maxKeys / shards
		if i < maxKeys%shards {
			l.shards[i].max++
		}
		l.shards[i].buckets = make(map[string]*list.Element)
	}
	return l
}

// Allow takes a token from key's bucket. It reports whether the request may
// proceed and, when it may not, how long until a token is available.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	s := &l.shards[maphash.String(l.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	var b *bucket
	if e, found := s.buckets[key]; found {
		s.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		// A clock that goes back refills nothing (and keeps last).
		if d := now.Sub(b.last); d > 0 {
			b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
			b.last = now
		}
	} else {
		if s.lru.Len() >= s.max {
			old := s.lru.Back()
			s.lru.Remove(old)
			delete(s.buckets, old.Value.(*bucket).key)
		}
		b = &bucket{key: key, tokens: l.burst, last: now}
		s.buckets[key] = s.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / l.rate * float64(time.Second)))
	return false, max(wait, time.Nanosecond)
}

// Len returns the number of keys remembered.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += s.lru.Len()
		s.mu.Unlock()
	}
	return n
}

// ClientIP returns the rate-limiting key of the peer that sent r: the IP
// address of r.RemoteAddr, an IPv6 address reduced to its /64 prefix (one
// host commonly holds a whole /64). Behind a reverse proxy every request
// comes from the proxy: such deployments must derive the key from what the
// proxy forwards instead. An unparseable RemoteAddr is returned as is.
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return r.RemoteAddr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// RetryAfterSeconds is the Retry-After value for a wait: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

// Deny answers 429 with a Retry-After header and the structured error body
// {"error":{"code":"rate_limited",...}} (G-18). The message is generic: it
// names neither the key nor the limit (G-35).
func Deny(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(RetryAfterSeconds(wait)))
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteError(w, nil, pass.NewError(http.StatusTooManyRequests, pass.CodeRateLimited, "too many requests; retry later"))
}
