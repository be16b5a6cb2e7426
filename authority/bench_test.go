package authority_test

import (
	"fmt"
	"reflect"
	"runtime"
	"slices"
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
	// 25 before the caller's copies were packed (their scopes in one
	// array, their keys in another, the answer, copies and decision in one
	// allocation) and the stored authorization shared the stored mission's
	// scopes and key.
	if n > 12 {
		t.Errorf("ConsumePass: %v allocations, want at most 12", n)
	}
}

// TestMemoryStoreConsumeCopies: what ConsumePass returns is the caller's;
// writing to its packed scopes, key or decision, or appending to a scope,
// changes neither the store nor the copy's other scopes.
func TestMemoryStoreConsumeCopies(t *testing.T) {
	s := authority.NewMemoryStore()
	r := authoritytest.NewRequest("req-copies")
	r.Service, r.Status = "https://a.example.com", pass.StatusApproved
	e := authoritytest.Approval("tickets:read", "tickets:write")
	r.Decision = &e
	r.Scope = pass.Scope{"tickets:read", "tickets:write"}
	r.Stages = []pass.Stage{{Name: "one", Scope: pass.Scope{"tickets:read"}}}
	v := secret.Token("ap_")
	r.PassHash = secret.Hash(v)
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	now := authoritytest.T0.Add(time.Minute)
	consume := func() *authority.Consumption {
		t.Helper()
		c, err := s.ConsumePass(ctx, secret.Hash(v), "https://a.example.com", "z1", now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := consume()
	want := consume() // the retry answers the stored state
	az, m := first.Authorization, first.Mission
	az.Scope[0], az.GrantedScope[0], az.Approval.Scope[0], az.Cnf[0] = "x", "x", "x", 'x'
	m.Scope[0], m.AvailableScope[0], m.Decision.Scope[0], m.Stages[0].Scope[0], m.Cnf[0] = "x", "x", "x", "x", 'x'
	az.GrantedScope = append(az.GrantedScope, "y")
	m.AvailableScope = append(m.AvailableScope, "y")
	az.Cnf = append(az.Cnf, 'y')
	if m.Cnf[0] != 'x' {
		t.Errorf("an append to the authorization's key reached the mission's: %s", m.Cnf)
	}
	if az.Scope[0] != "x" || m.Scope[0] != "x" || slices.Contains(m.ProposedScope, "y") || slices.Contains(m.RequestedScope, "y") {
		t.Errorf("an append reached a neighbouring scope: %q %q %q %q", az.Scope, m.Scope, m.ProposedScope, m.RequestedScope)
	}
	if got := consume(); !reflect.DeepEqual(got, want) {
		t.Errorf("a write to the caller's copy changed the store:\n got %+v\nwant %+v", got.Authorization, want.Authorization)
	}
}
