package authority_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// storePasses stores n approved requests for service and returns their
// pass values.
func storePasses(tb testing.TB, s authority.Store, service string, n int) []string {
	values := make([]string, n)
	for i := range values {
		values[i] = secret.Token("ap_")
		r := authoritytest.NewRequest(fmt.Sprintf("req-%d", i))
		r.Service = service
		r.Status = pass.StatusApproved
		e := authoritytest.Approval("tickets:read")
		r.Decision = &e
		r.PassHash = secret.Hash(values[i])
		if err := s.CreateRequest(ctx, r); err != nil {
			tb.Fatal(err)
		}
	}
	return values
}

// BenchmarkValidateHTTPS: one validation end to end over loopback HTTPS —
// Service assertion signed, TLS request, Service discovery and JWKS (cached
// after the first call), assertion verification, atomic consume, response.
func BenchmarkValidateHTTPS(b *testing.B) {
	store := authority.NewMemoryStore()
	e := newEnv(b, func(c *authority.Config) { c.Store = store; c.RateLimits.Services = deploy.Unlimited() })
	values := storePasses(b, store, e.svc.Origin, b.N)
	body := func(v string) pass.ValidationRequest {
		return pass.ValidationRequest{AgentPass: pass.PassValue{Value: v}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		status, raw, err := e.svc.Post(e.net.Client(), e.base+"/validate", authID, body(values[i]))
		if err != nil || status != 200 {
			b.Fatalf("validate: %d %s %v", status, raw, err)
		}
	}
}

// BenchmarkValidateHTTPSParallel is BenchmarkValidateHTTPS from many
// goroutines.
func BenchmarkValidateHTTPSParallel(b *testing.B) {
	store := authority.NewMemoryStore()
	e := newEnv(b, func(c *authority.Config) { c.Store = store; c.RateLimits.Services = deploy.Unlimited() })
	values := storePasses(b, store, e.svc.Origin, b.N)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			status, raw, err := e.svc.Post(e.net.Client(), e.base+"/validate", authID, pass.ValidationRequest{AgentPass: pass.PassValue{Value: values[i]}})
			if err != nil || status != 200 {
				b.Errorf("validate: %d %s %v", status, raw, err)
				return
			}
		}
	})
}

// BenchmarkMemoryStoreConsume: the store's atomic consume-and-authorize.
func BenchmarkMemoryStoreConsume(b *testing.B) {
	const batch = 40_000 // stay below the default MemoryStore bound
	now := authoritytest.T0.Add(time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		s := authority.NewMemoryStore()
		values := storePasses(b, s, "https://a.example.com", n)
		hashes, ids := make([]string, n), make([]string, n)
		for i, v := range values {
			hashes[i], ids[i] = secret.Hash(v), fmt.Sprintf("z%d", i)
		}
		b.StartTimer()
		for i := range n {
			if _, err := s.ConsumePass(ctx, hashes[i], "https://a.example.com", ids[i], now); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
}

// BenchmarkMemoryStoreLiveBytes reports the heap a MemoryStore keeps per
// live (approved, unconsumed) pass (#19 item 4: bytes per live pass).
func BenchmarkMemoryStoreLiveBytes(b *testing.B) {
	const n = 20_000
	var total float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := authority.NewMemoryStore()
		storePasses(b, s, "https://a.example.com", n) // the values are dropped: not the store's
		runtime.GC()
		runtime.ReadMemStats(&after)
		total += float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(s)
	}
	b.ReportMetric(total/float64(b.N), "B/pass")
}

// TestMemoryStoreConsumeAllocs (#19): consuming a pass copies the stored
// request shallowly and seals its history entry without reflection: the
// new record, its history entry, the authorization and the caller's copies
// of it and of the mission (which the validate handler answers from instead
// of reading the mission again), and nothing per scope or key (93
// allocations before, plus the handler's second read).
func TestMemoryStoreConsumeAllocs(t *testing.T) {
	const runs = 50
	s := authority.NewMemoryStore()
	values := storePasses(t, s, "https://a.example.com", runs+1)
	hashes, ids := make([]string, len(values)), make([]string, len(values))
	for i, v := range values {
		hashes[i], ids[i] = secret.Hash(v), fmt.Sprintf("z%d", i)
	}
	now := authoritytest.T0.Add(time.Minute)
	i := 0
	n := testing.AllocsPerRun(runs, func() {
		if _, err := s.ConsumePass(ctx, hashes[i], "https://a.example.com", ids[i], now); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if n > 25 {
		t.Errorf("ConsumePass: %v allocations, want at most 25", n)
	}
}
