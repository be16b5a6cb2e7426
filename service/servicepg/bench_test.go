package servicepg_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/service"
)

var benchStores = []struct {
	name string
	new  func(b *testing.B) service.Store
}{
	{"memory", func(*testing.B) service.Store { return service.NewMemoryStore() }},
	{"postgres", func(b *testing.B) service.Store { return newStore(b) }},
}

// benchChunk bounds the records one in-memory store receives (it holds at
// most service.DefaultMemoryStoreLimit): a longer run switches to a fresh
// store, with the timer stopped, every benchChunk operations.
const benchChunk = 40_000

// run calls op(s, i) for i in [0, b.N) from callers goroutines, with a
// fresh memory store every benchChunk operations (prepare, untimed, runs on
// each new chunk), and reports ops/s.
func run(b *testing.B, st struct {
	name string
	new  func(b *testing.B) service.Store
}, callers int, prepare func(s service.Store, from, n int), op func(s service.Store, i int) error) {
	b.ReportAllocs()
	var s service.Store
	for done := 0; done < b.N; {
		k := min(benchChunk, b.N-done)
		b.StopTimer()
		if s == nil || st.name == "memory" {
			s = st.new(b)
		}
		if prepare != nil {
			prepare(s, done, k)
		}
		b.StartTimer()
		var next atomic.Int64
		next.Store(int64(done))
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(done+k) {
						return
					}
					if err := op(s, int(i)); err != nil {
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
}

// BenchmarkRedeem measures storing a redemption (delegation + bearer token,
// atomically), one caller at a time and with 16 concurrent callers.
//
//	go test -run '^$' -bench 'Redeem|Credential' -benchmem ./service/servicepg
func BenchmarkRedeem(b *testing.B) {
	for _, st := range benchStores {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", st.name, callers), func(b *testing.B) {
				run(b, st, callers, nil, func(s service.Store, i int) error {
					id := fmt.Sprintf("a%d", i)
					return s.Redeem(ctx, delegation(id), bearer(id, "c"+id, base.Add(time.Hour)), nil)
				})
			})
		}
	}
}

// BenchmarkCredential measures the per-request lookup of a credential with
// its delegation (one JOIN on PostgreSQL) among 1,000 live credentials.
func BenchmarkCredential(b *testing.B) {
	const live = 1000
	for _, st := range benchStores {
		for _, callers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/callers=%d", st.name, callers), func(b *testing.B) {
				seeded := map[service.Store]bool{}
				prepare := func(s service.Store, _, _ int) {
					if seeded[s] {
						return
					}
					seeded[s] = true
					for i := range live {
						id := fmt.Sprintf("a%d", i)
						if err := s.Redeem(ctx, delegation(id), bearer(id, "c"+id, base.Add(time.Hour)), nil); err != nil {
							b.Fatal(err)
						}
					}
				}
				run(b, st, callers, prepare, func(s service.Store, i int) error {
					_, _, err := s.Credential(ctx, fmt.Sprintf("ca%d", i%live), base)
					return err
				})
			})
		}
	}
}
