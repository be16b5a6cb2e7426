package dpop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentpass-go/agentpass/internal/expiryset"
)

// ReplayCache remembers (issuer, jti) pairs until they expire, so a proof
// is accepted at most once. Implementations must be safe for concurrent use
// and make Seen atomic: of two concurrent calls with the same pair, exactly
// one reports replayed == false. The in-memory [MemoryReplayCache] serves
// one process; a store shared by replicas (PostgreSQL, dpop/dpoppg)
// implements the same interface so every replica sees every jti.
type ReplayCache interface {
	// Seen records (issuer, jti) until exp and reports whether the pair was
	// already recorded and not yet expired. On error the caller must reject
	// the proof (fail closed).
	Seen(ctx context.Context, issuer, jti string, exp time.Time) (replayed bool, err error)
}

// ReplayLookup is implemented by replay caches that can tell whether a pair
// is recorded without recording it. It lets a verifier refuse a replayed
// proof before an irreversible step (consuming a pass) and record the pair
// with Seen only after every check passed, so a proof that fails a later
// check leaves nothing behind. Contains is advisory: only Seen is atomic,
// and a pair Contains reported absent may be recorded by the time Seen is
// called. Both [MemoryReplayCache] and dpop/dpoppg implement it.
type ReplayLookup interface {
	// Contains reports whether (issuer, jti) is recorded and unexpired. On
	// error the caller must reject the proof (fail closed).
	Contains(ctx context.Context, issuer, jti string) (bool, error)
}

// UnboundedReplayCache is implemented by replay caches that never refuse a
// pair for lack of room, such as dpop/dpoppg's table (pruned by its
// janitor, limited only by the database). An Authority records a
// Service's assertion in such a cache before it consumes the pass: one
// atomic record instead of a lookup before the consumption and a record
// after it, a round trip fewer on a shared table. With any other cache
// (the in-memory one has a fixed capacity that anyone who publishes a
// Service configuration could otherwise fill with assertions spent on
// failures) an assertion is looked up first and recorded only once its
// validation succeeded. A wrapper that adds a bound to such a cache must
// not implement Unbounded, which embedding the cache would forward.
type UnboundedReplayCache interface {
	ReplayCache
	// Unbounded marks the cache; it does nothing.
	Unbounded()
}

// ErrReplayCacheFull is returned by [MemoryReplayCache.Seen] when it cannot
// record a pair: the cache holds its maximum number of unexpired entries,
// or the pair's issuer holds more than its share while the cache is nearly
// full. The cache refuses new proofs rather than forget a jti that could
// still be replayed. Verifiers pass it through (it does not match
// ErrInvalidProof): a Service should answer 503.
var ErrReplayCacheFull = errors.New("dpop: replay cache full")

// defaultReplayCacheSize is the capacity of a MemoryReplayCache without
// WithLimit: 10,000 verifications a second, each remembered for the longest
// a verifier with default settings keeps a pair (a lifetime of
// DefaultMaxLifetime plus DefaultSkew on each side, 7 minutes).
const defaultReplayCacheSize = 10_000 * 420

// issuerShare and reserveShare set the per-issuer quota: once fewer than
// capacity/reserveShare places are free, an issuer holding
// capacity/issuerShare entries or more is refused. A lone busy issuer may
// so use three quarters of the cache, and filling the last quarter takes
// 16 issuers each at their quota.
const (
	issuerShare  = 64
	reserveShare = 4
)

// MemoryReplayCache is a bounded, expiring, in-memory [ReplayCache] and
// [ReplayLookup]. It is safe for concurrent use.
//
// Expired entries are evicted first, so the bound only ever refuses pairs
// while the cache is full of unexpired ones. No issuer can crowd out the
// others: once three quarters of the capacity are used, an issuer holding
// 1/64 of the capacity or more is refused (ErrReplayCacheFull) while the
// other issuers still have the last quarter, so a quarter of the capacity
// is kept for issuers under their quota.
//
// The quota protects against issuers that must authenticate (a Service's
// assertions at an Authority, a harness whose key the Authority bound).
// It cannot protect against an issuer anyone can mint (a DPoP key
// thumbprint, a self-signed proof): against those, verifiers record a pair
// only after every trust check passed, so an anonymous proof never reaches
// the cache.
type MemoryReplayCache struct {
	mu  sync.Mutex
	lim expiryset.Limits
	now func() time.Time
	set *expiryset.Set
}

var (
	_ ReplayCache  = (*MemoryReplayCache)(nil)
	_ ReplayLookup = (*MemoryReplayCache)(nil)
)

// MemoryOption configures a MemoryReplayCache.
type MemoryOption func(*memoryOptions)

type memoryOptions struct {
	limit int
	now   func() time.Time
}

// WithLimit bounds the cache to n unexpired pairs (n <= 0 keeps the
// default, 4,200,000: 10,000 verifications a second for the 7 minutes a
// default verifier remembers a pair). Size a cache as rate × lifetime: a
// smaller bound refuses honest traffic once the rate is reached (every
// proof then fails with ErrReplayCacheFull); no bound at all lets a flood
// exhaust memory. An entry costs about 130 bytes, so a full default cache
// holds about 550 MB; memory grows with the entries held, not the bound.
func WithLimit(n int) MemoryOption {
	return func(o *memoryOptions) {
		if n > 0 {
			o.limit = n
		}
	}
}

// WithClock sets the cache's clock (nil keeps time.Now). Give it the same
// clock as the verifiers that use it: the cache forgets a pair once its own
// clock passes exp, so a cache clock running ahead of the verifier's would
// let replays through.
func WithClock(now func() time.Time) MemoryOption {
	return func(o *memoryOptions) {
		if now != nil {
			o.now = now
		}
	}
}

// NewMemoryReplayCache returns an empty cache.
func NewMemoryReplayCache(opts ...MemoryOption) *MemoryReplayCache {
	o := memoryOptions{limit: defaultReplayCacheSize, now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	maxEntries, now := o.limit, o.now
	lim := expiryset.Limits{
		Max:      maxEntries,
		PerOwner: max(1, maxEntries/issuerShare),
		Reserve:  maxEntries / reserveShare,
	}
	return &MemoryReplayCache{lim: lim, now: now, set: expiryset.New()}
}

// errIssuerQuota is what Seen returns for an issuer over its share.
var errIssuerQuota = fmt.Errorf("%w: issuer over its share", ErrReplayCacheFull)

// Seen implements ReplayCache. Expired entries are evicted first; a pair
// the cache cannot hold gives ErrReplayCacheFull. A pair whose exp is
// already past is not stored (a verifier rejects such a proof anyway).
func (c *MemoryReplayCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k, owner := expiryset.KeyOf(issuer, jti), expiryset.KeyOf(issuer)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.set.Add(k, owner, exp, c.now(), c.lim) {
	case expiryset.Present:
		return true, nil
	case expiryset.Full:
		return false, ErrReplayCacheFull
	case expiryset.OverQuota:
		return false, errIssuerQuota
	}
	return false, nil // Added, or already expired and not stored
}

// Contains implements ReplayLookup.
func (c *MemoryReplayCache) Contains(ctx context.Context, issuer, jti string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	k := expiryset.KeyOf(issuer, jti)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.set.Contains(k, c.now()), nil
}

// Len returns the number of entries, expired or not, currently held.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.set.Len()
}
