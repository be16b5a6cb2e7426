package service_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

func TestMemoryStore(t *testing.T) {
	servicetest.TestStore(t, func(t *testing.T) service.Store { return service.NewMemoryStore() })
}

// The memory store is bounded: a full table refuses new records instead of
// dropping live ones, and expired records make room again.
func TestMemoryStoreBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := service.NewMemoryStore(service.WithLimit(2))
	redeem := func(id string, at time.Time) error {
		return s.Redeem(ctx,
			&service.DelegationRecord{AuthorizationID: id, Scope: pass.Scope{"a"}, CreatedAt: at, CheckedAt: at},
			&service.CredentialRecord{Hash: "h-" + id, Kind: service.KindBearer, CreatedAt: at, ExpiresAt: at.Add(time.Minute)},
			nil)
	}
	for _, id := range []string{"a", "b"} {
		if err := redeem(id, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := redeem("c", now); !errors.Is(err, service.ErrStoreFull) {
		t.Fatalf("third Redeem into a store of 2 = %v, want ErrStoreFull", err)
	}
	if _, _, err := s.Credential(ctx, "h-a", now); err != nil {
		t.Errorf("a live credential was dropped: %v", err)
	}
	// After the first two expire, a write sweeps them.
	if err := redeem("c", now.Add(2*time.Minute)); err != nil {
		t.Fatalf("Redeem after expiry: %v", err)
	}
	if d, c, _ := s.Len(); d != 1 || c != 1 {
		t.Errorf("after sweep: %d delegations, %d credentials; want 1, 1", d, c)
	}
}

// A full table first drops what is dead but kept for a precise answer:
// used initialization tokens (kept initRetention past expiry), and the
// credentials of invalidated delegations. Only live records refuse.
func TestMemoryStoreFullDropsDeadFirst(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := service.NewMemoryStore(service.WithLimit(3))
	init := func(id string) error {
		return s.Redeem(ctx,
			&service.DelegationRecord{AuthorizationID: id, Scope: pass.Scope{"a"}, CreatedAt: now, CheckedAt: now},
			nil, &service.InitRecord{Hash: "i-" + id, ExpiresAt: now.Add(time.Minute)})
	}
	bearer := func(id string) error {
		return s.Redeem(ctx,
			&service.DelegationRecord{AuthorizationID: id, Scope: pass.Scope{"a"}, CreatedAt: now, CheckedAt: now},
			&service.CredentialRecord{Hash: "h-" + id, Kind: service.KindBearer, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil)
	}
	if err := init("used"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeInit(ctx, "i-used", now); err != nil {
		t.Fatal(err)
	}
	if err := bearer("revoked"); err != nil {
		t.Fatal(err)
	}
	if err := s.Invalidate(ctx, "revoked", now, "test"); err != nil {
		t.Fatal(err)
	}
	if err := bearer("live"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"new1", "new2"} {
		if err := bearer(id); err != nil {
			t.Fatalf("%s into a table holding dead records: %v", id, err)
		}
	}
	if err := bearer("over"); !errors.Is(err, service.ErrStoreFull) {
		t.Fatalf("a table of live records: %v, want ErrStoreFull", err)
	}
	if _, _, err := s.Credential(ctx, "h-live", now); err != nil {
		t.Errorf("a live credential was dropped: %v", err)
	}
}

// BenchmarkMemoryStoreLiveBytes reports the heap a MemoryStore keeps per
// live delegation with one bearer credential, shaped as a redemption
// stores them (#19 item 4: bytes per live delegation).
func BenchmarkMemoryStoreLiveBytes(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	const n = 20_000
	var total float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := service.NewMemoryStore()
		for i := range n {
			id := fmt.Sprintf("authz_%022d", i)
			d := &service.DelegationRecord{
				AuthorizationID: id, Authority: "https://idp.corp.example", TrustMode: pass.TrustEnterprise,
				ConfigurationURL: "https://idp.corp.example/.well-known/agentpass-authority",
				User:             "alice@corp.example", Agent: "agent://assistant.example/agents/ops",
				HarnessID: "https://harness.example", Task: pass.Task{ID: "task-" + id, Description: "Triage the open tickets"},
				Scope: pass.Scope{"tickets:read", "tickets:write"}, CurrentScope: pass.Scope{"tickets:read", "tickets:write"},
				CreatedAt: now, CheckedAt: now, ExpiresAt: now.Add(time.Hour),
			}
			c := &service.CredentialRecord{Hash: secret.Hash(id), Kind: service.KindBearer, Scope: d.Scope,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := s.Redeem(ctx, d, c, nil); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got, _, _ := s.Len(); got != n {
			b.Fatalf("%d delegations, want %d", got, n)
		}
		total += float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(total/float64(b.N), "B/delegation")
}
