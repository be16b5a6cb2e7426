package dpop

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/expiryset"
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
	mu  sync.Mutex
	max int
	now func() time.Time
	set *expiryset.Set
}

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
	return &MemoryReplayCache{max: maxEntries, now: now, set: expiryset.New()}
}

// Seen implements ReplayCache. Expired entries are evicted first; when the
// cache is still full it returns ErrReplayCacheFull. A pair whose exp is
// already past is not stored (a verifier rejects such a proof anyway).
func (c *MemoryReplayCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k := expiryset.KeyOf(issuer, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.set.Add(k, exp, c.now(), c.max) {
	case expiryset.Present:
		return true, nil
	case expiryset.Full:
		return false, ErrReplayCacheFull
	}
	return false, nil // Added, or already expired and not stored
}

// Len returns the number of entries, expired or not, currently held.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.set.Len()
}
