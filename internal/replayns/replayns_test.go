package replayns_test

import (
	"context"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/replayns"
)

// One pair recorded under one kind is no replay under another, in a shared
// cache as in separate ones; Contains looks in the kind's own namespace.
func TestKindsApart(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }
	exp := now().Add(time.Minute)
	shared := dpop.NewMemoryReplayCache(dpop.WithLimit(10), dpop.WithClock(now))
	for name, caches := range map[string]map[string]dpop.ReplayCache{
		"shared":   replayns.New(shared, "role:", now, map[string]int{"a:": 10, "b:": 10}),
		"separate": replayns.New(nil, "role:", now, map[string]int{"a:": 10, "b:": 10}),
	} {
		a, b := caches["a:"], caches["b:"]
		if r, err := a.Seen(ctx, "iss", "jti", exp); err != nil || r {
			t.Fatalf("%s: first use = %v, %v", name, r, err)
		}
		if r, _ := a.Seen(ctx, "iss", "jti", exp); !r {
			t.Errorf("%s: the same pair of the same kind is not a replay", name)
		}
		if r, _ := b.Seen(ctx, "iss", "jti", exp); r {
			t.Errorf("%s: the pair of another kind is a replay", name)
		}
		if seen, err := a.(dpop.ReplayLookup).Contains(ctx, "iss", "jti"); err != nil || !seen {
			t.Errorf("%s: Contains = %v, %v", name, seen, err)
		}
		if seen, _ := b.(dpop.ReplayLookup).Contains(ctx, "iss", "other"); seen {
			t.Errorf("%s: Contains found a pair never recorded", name)
		}
		separate := replayns.Underlying(a) != replayns.Underlying(b)
		if separate != (name == "separate") {
			t.Errorf("%s: kinds share one cache = %v", name, !separate)
		}
	}
	if n := shared.Len(); n != 2 {
		t.Errorf("the shared cache holds %d entries, want one per kind", n)
	}
}
