package authority_test

import (
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
// the retention period, so the store's growth is bounded.
func TestMemoryStorePrunes(t *testing.T) {
	s := authority.NewMemoryStore()
	t0 := authoritytest.T0
	old := authoritytest.NewRequest("old")
	if err := s.CreateRequest(ctx, old); err != nil {
		t.Fatal(err)
	}
	live := authoritytest.NewRequest("live")
	live.CreatedAt = t0.Add(2 * time.Hour)
	live.ExpiresAt = live.CreatedAt.Add(10 * time.Minute)
	if err := s.CreateRequest(ctx, live); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Request(ctx, "msn_old"); err == nil {
		t.Fatal("expired request not pruned after retention")
	}
	if r, err := s.Request(ctx, "msn_live"); err != nil || r.Status != pass.StatusPending {
		t.Fatalf("live request: %v", err)
	}
	if n, _ := s.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
}
