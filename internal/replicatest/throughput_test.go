package replicatest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
)

// BenchmarkThroughput measures validations and redemptions per second end
// to end over loopback HTTPS with many requests in flight, next to the
// bound the signatures themselves set on this machine:
//
//	go test -run '^$' -bench Throughput -benchtime 20000x ./internal/replicatest/
//
// Each sub-benchmark reports ops/s, p50-ms and p99-ms (per operation,
// measured by the caller), allocs/op (whole process, all parties) and
// %bound: the throughput as a percentage of GOMAXPROCS divided by the CPU
// time of every signature and verification one operation needs across the
// parties, ES256 timed in the same run. Validation needs one signature (the
// Service's assertion) and one verification (by the Authority); a
// redemption with a holder proof adds the Service's verification of the
// proof. The Harness's own proof is made before the timer, as a Harness
// makes it on its own machine.
//
// -throughput.inflight sets the requests in flight (a comma-separated list
// gives one sub-benchmark each, for the plot in BENCHMARKS.md) and
// -throughput.store=postgres runs the same on the PostgreSQL stores (the
// cluster of .ci/postgres.sh).
func BenchmarkThroughput(b *testing.B) {
	inflight, err := parseInflight(*throughputInflight)
	if err != nil {
		b.Fatal(err)
	}
	opts := options{replicas: 1}
	switch *throughputStore {
	case "memory":
	case "postgres":
		opts.postgres = true
	default:
		b.Fatalf("-throughput.store=%q: want memory or postgres", *throughputStore)
	}
	switch *throughputAlg {
	case "ES256":
	case "EdDSA":
		opts.alg = "EdDSA"
	default:
		b.Fatalf("-throughput.alg=%q: want ES256 or EdDSA", *throughputAlg)
	}
	// The roles' keys are of -throughput.alg; the Harness's holder key
	// stays ES256.
	sign, verify := sigCost(b, *throughputAlg)
	_, proofVerify := sigCost(b, "ES256")
	bound := func(signs, verifies, proofs int) float64 {
		return float64(runtime.GOMAXPROCS(0)) / (float64(signs)*sign.Seconds() + float64(verifies)*verify.Seconds() + float64(proofs)*proofVerify.Seconds())
	}
	// Each run gets a fresh deployment, warmed (discovery, JWKS, TLS
	// connections of both roles), so that the passes of earlier runs
	// neither fill the stores nor load the garbage collector.
	fresh := func(b *testing.B) (*deployment, *dpop.Key) {
		d := deploy(b, opts)
		key, err := dpop.GenerateKey("")
		if err != nil {
			b.Fatal(err)
		}
		for _, req := range d.redemptions(b, key, d.storePasses(b, 4, key)) {
			if _, err := d.redeem(b.Context(), -1, req); err != nil {
				b.Fatal(err)
			}
		}
		return d, key
	}

	b.Run("validate", func(b *testing.B) {
		for _, n := range inflight {
			b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
				d, key := fresh(b)
				values := d.storePasses(b, b.N, key)
				runInflight(b, n, bound(1, 1, 0), func(i int) error { return d.validate(b.Context(), values[i]) })
			})
		}
	})
	b.Run("redeem", func(b *testing.B) {
		for _, n := range inflight {
			b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
				d, key := fresh(b)
				reqs := d.redemptions(b, key, d.storePasses(b, b.N, key))
				runInflight(b, n, bound(1, 1, 1), func(i int) error {
					_, err := d.redeem(b.Context(), -1, reqs[i])
					return err
				})
			})
		}
	})
}

var (
	throughputInflight = flag.String("throughput.inflight", "32", "requests in flight in BenchmarkThroughput (comma-separated for several runs)")
	throughputStore    = flag.String("throughput.store", "memory", "stores of BenchmarkThroughput: memory or postgres")
	throughputAlg      = flag.String("throughput.alg", "ES256", "algorithm of the Service's and Authority's keys in BenchmarkThroughput: ES256 or EdDSA")
)

func parseInflight(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("-throughput.inflight: %q is not a count in [1, 1024]", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-throughput.inflight: empty")
	}
	return out, nil
}

// runInflight runs op(i) for i in [0, b.N) from n goroutines and reports
// the throughput, its latency percentiles and its share of bound (ops/s).
func runInflight(b *testing.B, n int, bound float64, op func(i int) error) {
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	b.ResetTimer()
	for g := range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				start := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	opsPerSec := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(opsPerSec, "ops/s")
	b.ReportMetric(ms(percentile(all, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 0.99)), "p99-ms")
	b.ReportMetric(100*opsPerSec/bound, "%bound")
	if rss := residentMB(); rss > 0 {
		b.ReportMetric(rss, "rss-MB")
	}
}

// residentMB is the resident set of the process (all parties, the
// benchmark's own pre-made passes included) in MiB, 0 where /proc is not.
func residentMB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%f kB", &kb); err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p * float64(len(sorted)))
	return sorted[min(i, len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sigCost times one signature of alg (ES256 or EdDSA) and one verification of a JWT-sized
// input on this machine, single-threaded, the fastest of five rounds (the
// least disturbed by other load).
func sigCost(tb testing.TB, alg string) (sign, verify time.Duration) {
	input := make([]byte, 330) // the size of a typical assertion's signing input
	var signOnce func() []byte
	var verifyOnce func(sig []byte) bool
	switch alg {
	case "ES256":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		signOnce = func() []byte {
			h := sha256.Sum256(input)
			sig, err := ecdsa.SignASN1(rand.Reader, priv, h[:])
			if err != nil {
				tb.Fatal(err)
			}
			return sig
		}
		verifyOnce = func(sig []byte) bool {
			h := sha256.Sum256(input)
			return ecdsa.VerifyASN1(&priv.PublicKey, h[:], sig)
		}
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		signOnce = func() []byte { return ed25519.Sign(priv, input) }
		verifyOnce = func(sig []byte) bool { return ed25519.Verify(pub, input, sig) }
	default:
		tb.Fatalf("sigCost: unknown alg %q", alg)
	}
	sig := signOnce()
	const rounds, per = 5, 200
	sign, verify = time.Hour, time.Hour
	for range rounds {
		start := time.Now()
		for range per {
			signOnce()
		}
		sign = min(sign, time.Since(start)/per)
		start = time.Now()
		for range per {
			if !verifyOnce(sig) {
				tb.Fatalf("%s verification failed", alg)
			}
		}
		verify = min(verify, time.Since(start)/per)
	}
	return sign, verify
}

// TestThroughputFlags: the benchmark's flags parse as documented and refuse
// what they cannot run.
func TestThroughputFlags(t *testing.T) {
	got, err := parseInflight("1,4,16,32,64")
	if err != nil || !slices.Equal(got, []int{1, 4, 16, 32, 64}) {
		t.Fatalf("parseInflight = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x", "2000", "4,,1", "-1"} {
		if _, err := parseInflight(bad); err == nil {
			t.Errorf("parseInflight(%q) accepted", bad)
		}
	}
	if p := percentile([]time.Duration{1, 2, 3, 4}, 0.99); p != 4 {
		t.Errorf("p99 of 1..4 = %v", p)
	}
}
