package service

import (
	"context"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/replayns"
)

// seenOnly is a replay cache without dpop.ReplayLookup.
type seenOnly struct{ dpop.ReplayCache }

// Without Config.ReplayCache each kind of jti has its own cache, so a
// flood of one kind (self-signed DPoP proofs, #14) cannot fill the cache
// of the others; the namespaced caches offer Contains when the cache
// underneath does.
func TestReplayCachesPerKind(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	rc := newReplayCaches(nil, now)
	kinds := map[string]dpop.ReplayCache{"harness": rc.harness, "dpop": rc.dpop, "assertion": rc.assertion}
	under := map[*dpop.MemoryReplayCache]string{}
	for name, c := range kinds {
		if r, err := c.Seen(ctx, "iss", "jti", now().Add(time.Minute)); err != nil || r {
			t.Fatalf("%s: first use = %v, %v", name, r, err)
		}
		l, ok := c.(dpop.ReplayLookup)
		if !ok {
			t.Fatalf("%s: no Contains over a MemoryReplayCache", name)
		}
		if held, err := l.Contains(ctx, "iss", "jti"); err != nil || !held {
			t.Errorf("%s: Contains = %v, %v", name, held, err)
		}
		m := replayns.Underlying(c).(*dpop.MemoryReplayCache)
		if other, dup := under[m]; dup {
			t.Fatalf("%s and %s share a cache", name, other)
		}
		under[m] = name
		if m.Len() != 1 {
			t.Errorf("%s: its cache holds %d entries, want its own 1", name, m.Len())
		}
	}
	// A shared cache without Contains stays without it.
	shared := newReplayCaches(seenOnly{dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(now))}, now)
	if _, ok := shared.dpop.(dpop.ReplayLookup); ok {
		t.Error("Contains offered over a cache that lacks it")
	}
	if r, _ := shared.dpop.Seen(ctx, "iss", "jti", now().Add(time.Minute)); r {
		t.Error("fresh pair a replay")
	}
	if r, _ := shared.harness.Seen(ctx, "iss", "jti", now().Add(time.Minute)); r {
		t.Error("the same pair of another kind is a replay in a shared cache")
	}
}
