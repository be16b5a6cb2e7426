package dpop

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// ReplayCache remembers (issuer, jti) pairs until they expire, so a proof
// is accepted at most once (G-3, je.harden-holder-binding). Implementations
// must be safe for concurrent use and make Seen atomic: of two concurrent
// calls with the same pair, exactly one reports replayed == false. The
// in-memory [MemoryReplayCache] serves one process; a store shared by
// replicas (PostgreSQL) implements the same interface so every replica sees
// every jti.
type ReplayCache interface {
	// Seen records (issuer, jti) until exp and reports whether the pair was
	// already recorded and not yet expired. On error the caller must reject
	// the proof (fail closed).
	Seen(ctx context.Context, issuer, jti string, exp time.Time) (replayed bool, err error)
}

// ErrReplayCacheFull is returned by [MemoryReplayCache.Seen] when the cache
// holds its maximum number of unexpired entries: it refuses new proofs
// rather than forget a jti that could still be replayed. Verifiers pass it
// through (it does not match ErrInvalidProof): a Service should answer 503.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// DefaultReplayCacheSize is the capacity of a MemoryReplayCache created
// with maxEntries <= 0.
const DefaultReplayCacheSize = 100_000

// MemoryReplayCache is a bounded, expiring, in-memory [ReplayCache]. Each
// entry costs about 64 bytes whatever the size of issuer and jti, which are
// stored as a SHA-256 digest. It is safe for concurrent use.
type MemoryReplayCache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[replayKey]time.Time
	byExp   expiryHeap
}

type replayKey [sha256.Size]byte

// NewMemoryReplayCache returns a cache holding at most maxEntries unexpired
// pairs (DefaultReplayCacheSize if maxEntries <= 0). now is the clock; nil
// means time.Now. Give it the same clock as the verifiers that use it: the
// cache forgets a pair once its own clock passes exp, so a cache clock
// running ahead of the verifier's would let replays through.
func NewMemoryReplayCache(maxEntries int, now func() time.Time) *MemoryReplayCache {
	if maxEntries <= 0 {
		maxEntries = DefaultReplayCacheSize
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{max: maxEntries, now: now, entries: make(map[replayKey]time.Time)}
}

// Seen implements ReplayCache. Expired entries are evicted first; when the
// cache is still full it returns ErrReplayCacheFull. A pair whose exp is
// already past is not stored (a verifier rejects such a proof anyway).
func (c *MemoryReplayCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k := makeReplayKey(issuer, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.evictExpired(now)
	if _, ok := c.entries[k]; ok {
		return true, nil
	}
	if !exp.After(now) {
		return false, nil
	}
	if len(c.entries) >= c.max {
		return false, ErrReplayCacheFull
	}
	c.entries[k] = exp
	heap.Push(&c.byExp, expiryItem{key: k, exp: exp})
	return false, nil
}

// Len returns the number of entries, expired or not, currently held.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// evictExpired drops every entry whose exp is not after now. The heap is
// ordered by exp, so all expired entries are at its top.
func (c *MemoryReplayCache) evictExpired(now time.Time) {
	for len(c.byExp) > 0 && !c.byExp[0].exp.After(now) {
		it := heap.Pop(&c.byExp).(expiryItem)
		delete(c.entries, it.key)
	}
}

// makeReplayKey hashes the length-prefixed issuer and jti, so ("a", "bc")
// and ("ab", "c") differ.
func makeReplayKey(issuer, jti string) replayKey {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(issuer)))
	h.Write(n[:])
	h.Write([]byte(issuer))
	h.Write([]byte(jti))
	var k replayKey
	h.Sum(k[:0])
	return k
}

type expiryItem struct {
	key replayKey
	exp time.Time
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
