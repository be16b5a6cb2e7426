package authority_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/pass"
)

func TestMemoryStoreConformance(t *testing.T) {
	authoritytest.TestStore(t, func(t *testing.T) authority.Store { return authority.NewMemoryStore() })
}

// TestMemoryStorePrunes: records that can no longer change are dropped after
// the retention period (one hour, or WithRetention), so the store's growth
// is bounded, and kept before it, so late polls get a precise answer.
func TestMemoryStorePrunes(t *testing.T) {
	t0 := authoritytest.T0
	for _, tt := range []struct {
		name      string
		opts      []authority.MemoryOption
		after     time.Duration // when the next write comes, after t0
		wantOldOK bool
	}{
		{name: "default retention passed", after: 2 * time.Hour},
		{name: "default retention not passed", after: 30 * time.Minute, wantOldOK: true},
		{name: "short retention passed", opts: []authority.MemoryOption{authority.WithRetention(5 * time.Minute)}, after: 30 * time.Minute},
		{name: "long retention not passed", opts: []authority.MemoryOption{authority.WithRetention(3 * time.Hour)}, after: 2 * time.Hour, wantOldOK: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := authority.NewMemoryStore(tt.opts...)
			old := authoritytest.NewRequest("old") // expires at t0+10m
			if err := s.CreateRequest(ctx, old); err != nil {
				t.Fatal(err)
			}
			live := authoritytest.NewRequest("live")
			live.CreatedAt = t0.Add(tt.after)
			live.ExpiresAt = live.CreatedAt.Add(10 * time.Minute)
			if err := s.CreateRequest(ctx, live); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Request(ctx, "msn_old"); (err == nil) != tt.wantOldOK {
				t.Fatalf("expired request kept = %v, want %v", err == nil, tt.wantOldOK)
			}
			if r, err := s.Request(ctx, "msn_live"); err != nil || r.Status != pass.StatusPending {
				t.Fatalf("live request: %v", err)
			}
			want := 1
			if tt.wantOldOK {
				want = 2
			}
			if n, _ := s.Len(); n != want {
				t.Fatalf("Len = %d, want %d", n, want)
			}
		})
	}
}

// Issue #14 finding 3: a store full of an attacker's dead records (expired
// pending requests, which the retention would keep another hour, and
// denied ones) never refuses an honest request: they are dropped at once.
// A store full of live records still refuses (the cap holds), and keeps
// refusing without dropping anything live until one ends.
func TestMemoryStoreFullEvictsDeadFirst(t *testing.T) {
	const limit = 2_000
	s := authority.NewMemoryStore(authority.WithLimit(limit))
	t0 := authoritytest.T0
	fill := func(prefix string, at time.Time, n int) {
		t.Helper()
		for i := range n {
			r := authoritytest.NewRequest(fmt.Sprintf("%s%d", prefix, i))
			r.CreatedAt, r.ExpiresAt = at, at.Add(10*time.Minute)
			if err := s.CreateRequest(ctx, r); err != nil {
				t.Fatalf("%s %d: %v", prefix, i, err)
			}
		}
	}
	honest := func(id string, at time.Time) error {
		r := authoritytest.NewRequest(id)
		r.CreatedAt, r.ExpiresAt = at, at.Add(10*time.Minute)
		return s.CreateRequest(ctx, r)
	}
	// Half the store is denied at once, half stays pending.
	fill("denied", t0, limit/2)
	for i := range limit / 2 {
		d := authority.Evidence{Status: pass.StatusDenied, DecidedBy: "rule:test", DecidedAt: t0, Reason: "test"}
		if _, err := authoritytest.DecideRequest(s, fmt.Sprintf("denied%d", i), d, t0); err != nil {
			t.Fatal(err)
		}
	}
	fill("pending", t0, limit/2)
	// Full: the denied half is dead and makes room at once.
	at := t0.Add(time.Second)
	if err := honest("honest1", at); err != nil {
		t.Fatalf("store full of denied requests refused an honest one: %v", err)
	}
	if n, _ := s.Len(); n != limit/2+1 {
		t.Errorf("Len = %d after eviction, want %d", n, limit/2+1)
	}
	// Fill up with live ones: the cap holds for them.
	fill("live", at, limit/2-1)
	if err := honest("refused", at.Add(time.Minute)); !errors.Is(err, authority.ErrStoreFull) {
		t.Fatalf("store full of live requests: %v, want ErrStoreFull", err)
	}
	if _, err := s.Request(ctx, "msn_pending0"); err != nil {
		t.Errorf("a live request was dropped: %v", err)
	}
	// The first pending half expires at t0+10m: well within the retention
	// hour, it makes room for new requests.
	if err := honest("honest2", t0.Add(10*time.Minute)); err != nil {
		t.Fatalf("store full of expired requests refused an honest one: %v", err)
	}
	if _, err := s.Request(ctx, "msn_pending0"); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("expired pending0: %v, want it dropped", err)
	}
	if _, err := s.Request(ctx, "msn_live0"); err != nil {
		t.Errorf("a live request was dropped: %v", err)
	}
}
