// Package replayns gives each kind of token its own part of a replay cache.
//
// # Overview
//
// A Service records DPoP proofs, harness proofs and assertions; an
// Authority records harness proofs and assertions; both may share one
// PostgreSQL table. Every kind gets its own issuer prefix, so no token of
// one kind can collide with, or take the quota of, another kind, and by
// default each kind gets its own in-memory cache, so a flood of one kind
// cannot fill the others.
//
// # Usage
//
//	caches := replayns.New(cfg.ReplayCache, "authority:", now, map[string]int{
//		"harness-proof:": 300_000, "": 300_000})
//	proofs := caches["harness-proof:"]
package replayns

import (
	"context"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
)

// New returns one cache per kind, keyed like sizes: each prefixes its
// issuers with role + kind. With shared set every kind records into it;
// otherwise each kind gets its own dpop.MemoryReplayCache of the given size
// on the clock now.
func New(shared dpop.ReplayCache, role string, now func() time.Time, sizes map[string]int) map[string]dpop.ReplayCache {
	out := make(map[string]dpop.ReplayCache, len(sizes))
	for kind, size := range sizes {
		c := shared
		if c == nil {
			c = dpop.NewMemoryReplayCache(dpop.WithLimit(size), dpop.WithClock(now))
		}
		out[kind] = Namespace(c, role+kind)
	}
	return out
}

// Namespace prefixes every issuer with ns. The result implements
// dpop.ReplayLookup when c does.
func Namespace(c dpop.ReplayCache, ns string) dpop.ReplayCache {
	p := prefixed{c: c, ns: ns}
	if l, ok := c.(dpop.ReplayLookup); ok {
		return prefixedLookup{p, l}
	}
	return p
}

type prefixed struct {
	c  dpop.ReplayCache
	ns string
}

func (p prefixed) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	return p.c.Seen(ctx, p.ns+issuer, jti, exp)
}

type prefixedLookup struct {
	prefixed
	l dpop.ReplayLookup
}

func (p prefixedLookup) Contains(ctx context.Context, issuer, jti string) (bool, error) {
	return p.l.Contains(ctx, p.ns+issuer, jti)
}

// Underlying returns the cache a namespaced cache records into (c itself
// when it is not namespaced), so tests can tell shared caches from separate
// ones.
func Underlying(c dpop.ReplayCache) dpop.ReplayCache {
	switch p := c.(type) {
	case prefixed:
		return p.c
	case prefixedLookup:
		return p.c
	}
	return c
}
