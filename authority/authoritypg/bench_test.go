package authoritypg_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritypg"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/pass"
)

// benchChunk bounds the passes seeded at once (the in-memory store holds
// at most the default MemoryStore bound of 100,000 records): a longer run reseeds a
// fresh store, with the timer stopped, every benchChunk consumptions.
const benchChunk = 40_000

// BenchmarkConsumePass measures the single-use consumption of a pass (the
// heart of /validate) on the in-memory store and on PostgreSQL: one caller
// at a time (latency), and 16 concurrent callers (throughput, ops/s). On
// PostgreSQL, "postgres" reads each pass's row before its write, as for a
// pass another replica issued; "postgres-issued" consumes passes the store
// issued itself and remembers (WithKnownPasses), by the write alone.
//
//	go test -run '^$' -bench ConsumePass -benchmem ./authority/authoritypg
func BenchmarkConsumePass(b *testing.B) {
	stores := []struct {
		name string
		new  func(b *testing.B) authority.Store
	}{
		{"memory", func(*testing.B) authority.Store { return authority.NewMemoryStore() }},
		{"postgres", func(b *testing.B) authority.Store { return newStore(b, authoritypg.WithKnownPasses(0)) }},
		{"postgres-issued", func(b *testing.B) authority.Store { return newStore(b, authoritypg.WithKnownPasses(benchChunk)) }},
	}
	for _, st := range stores {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", st.name, workers), func(b *testing.B) {
				b.ReportAllocs()
				var s authority.Store
				for done := 0; done < b.N; {
					k := min(benchChunk, b.N-done)
					b.StopTimer()
					if s == nil || st.name == "memory" {
						s = st.new(b)
					}
					seedPasses(b, s, done, k)
					b.StartTimer()
					var next atomic.Int64
					next.Store(int64(done))
					var wg sync.WaitGroup
					for range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								i := next.Add(1) - 1
								if i >= int64(done+k) {
									return
								}
								if _, err := s.ConsumePass(ctx, fmt.Sprintf("h%d", i), svcA, fmt.Sprintf("z%d", i), t0); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					done += k
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}

// seedPasses stores n approved requests with passes h<from>..h<from+n-1>.
func seedPasses(b *testing.B, s authority.Store, from, n int) {
	b.Helper()
	e := authoritytest.Approval("tickets:read")
	e.PassExpiresAt = t0.Add(time.Hour)
	var wg sync.WaitGroup
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < from+n; i += workers {
				r := authoritytest.NewRequest(fmt.Sprintf("r%d", i))
				r.Status = pass.StatusApproved
				r.Decision = &e
				r.PassHash = fmt.Sprintf("h%d", i)
				if err := s.CreateRequest(ctx, r); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
