package replicatest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/pass"
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
// makes it on its own machine. cpu-µs/op is the CPU all parties spent per
// operation; the floor sub-benchmark makes the same HTTPS call with bodies
// of the same sizes and nothing behind it, so the CPU of an operation
// splits into its signatures (the bound's share), its HTTPS calls (the
// floor's, once for a validation, twice for a redemption) and the rest.
// The ceiling sub-benchmarks make each operation's signatures and HTTPS
// calls with nothing else (ceiling_test.go): the %bound no implementation
// on the same net/http, crypto/tls and crypto/ecdsa exceeds here.
//
// -throughput.inflight sets the requests in flight (a comma-separated list
// gives one sub-benchmark each, for the plot in BENCHMARKS.md) and
// -throughput.store=postgres runs the same on the PostgreSQL stores (the
// cluster of .ci/postgres.sh); there the Authority's store issued every
// pass and remembers it (a single replica, or the issuing one), and
// -throughput.knownpasses=false measures a replica that did not.
func BenchmarkThroughput(b *testing.B) {
	inflight, err := parseInflight(*throughputInflight)
	if err != nil {
		b.Fatal(err)
	}
	opts := options{replicas: 1}
	switch *throughputStore {
	case "memory":
	case "postgres":
		opts.postgres, opts.pgConns, opts.forgetPasses = true, int32(*throughputPGConns), !*throughputKnown
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
	// neither fill the stores nor load the garbage collector. The parties
	// run on the wall clock and the delegations live briefly, so that over
	// a long run the replay caches and the store reach the steady size of
	// the rate they serve, expiring as much as they record.
	opts.liveClock, opts.authorizationLife, opts.memoryLimit, opts.replayLimit = true, throughputAuthorizationLife, throughputMemoryLimit, throughputReplayLimit
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
				values := make([]string, b.N)
				prepare := func(from, to int) { copy(values[from:to], d.storePasses(b, to-from, key)) }
				runInflight(b, n, bound(1, 1, 0), prepare, func(i int) error { return d.validate(b.Context(), values[i]) })
			})
		}
	})
	// floor: the same loopback HTTPS round trip as a validation, with
	// bodies and an Authorization header of the same sizes, but no
	// signature, no JSON decoding and no store behind it: what net/http
	// and TLS alone cost both sides of each call (validation makes one,
	// a redemption two), to set against cpu-µs/op of the others.
	b.Run("floor", func(b *testing.B) {
		for _, n := range inflight {
			b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
				d, key := fresh(b)
				req, answer, bearer := d.floorExchange(b, key)
				url := d.net.Serve("floor.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16)); err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.Write(answer)
				})) + "/validate"
				runInflight(b, n, 0, func(int, int) {}, func(int) error {
					r, err := http.NewRequestWithContext(b.Context(), http.MethodPost, url, bytes.NewReader(req))
					if err != nil {
						return err
					}
					r.Header.Set("Content-Type", "application/json")
					r.Header.Set("Authorization", "Bearer "+bearer)
					resp, err := d.client.Do(r)
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						return err
					}
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("floor: status %d", resp.StatusCode)
					}
					return nil
				})
			})
		}
	})
	// ceiling: the same signatures and HTTPS calls with nothing else
	// (see ceiling), the most Go's net/http, crypto/tls and the
	// signatures allow an operation on this machine.
	b.Run("ceiling", func(b *testing.B) {
		for _, op := range []string{"validate", "redeem"} {
			b.Run(op, func(b *testing.B) {
				for _, n := range inflight {
					b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
						d, key := fresh(b)
						c := d.newCeiling(b, key, *throughputAlg)
						ctx := b.Context()
						if op == "validate" {
							runInflight(b, n, bound(1, 1, 0), func(int, int) {}, func(int) error { return c.validate(ctx, c.client) })
						} else {
							runInflight(b, n, bound(1, 1, 1), func(int, int) {}, func(int) error { return c.redeem(ctx) })
						}
					})
				}
			})
		}
	})
	b.Run("redeem", func(b *testing.B) {
		for _, n := range inflight {
			b.Run(fmt.Sprintf("inflight=%d", n), func(b *testing.B) {
				d, key := fresh(b)
				reqs := make([]pass.RedemptionRequest, b.N)
				prepare := func(from, to int) { copy(reqs[from:to], d.redemptions(b, key, d.storePasses(b, to-from, key))) }
				runInflight(b, n, bound(1, 1, 1), prepare, func(i int) error {
					_, err := d.redeem(b.Context(), -1, reqs[i])
					// Drop the request: over a long run the pre-made ones
					// would otherwise outweigh everything the parties keep.
					reqs[i] = pass.RedemptionRequest{}
					return err
				})
			})
		}
	})
}

// floorExchange returns a real validation's request body, answer body
// and assertion, for the floor sub-benchmark to send bytes of the same
// sizes.
func (d *deployment) floorExchange(tb testing.TB, key *dpop.Key) (req, answer []byte, bearer string) {
	tb.Helper()
	value := d.storePasses(tb, 1, key)[0]
	vr, err := d.validateAnswer(tb.Context(), value)
	if err != nil {
		tb.Fatal(err)
	}
	if answer, err = json.Marshal(vr); err != nil {
		tb.Fatal(err)
	}
	if req, err = json.Marshal(pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}}); err != nil {
		tb.Fatal(err)
	}
	if bearer, err = assertion.Sign(d.serviceKeys.Current(), appOrigin, authorityID, 0, d.clock.Now()); err != nil {
		tb.Fatal(err)
	}
	return req, answer, bearer
}

// Operations are prepared (passes stored, proofs signed) a batch at a time
// with the timer stopped: about a second of work at the rate measured so
// far, within these bounds, so that passes and proofs are fresh when used
// and the pre-made ones never outnumber what the Authority holds.
const (
	minThroughputBatch = 512
	maxThroughputBatch = 16384
)

// throughputAuthorizationLife is how long the benchmark's passes and
// delegations live, and throughputMemoryLimit the bound of its in-memory
// Authority store: the store holds about 2 × rate × life live records (a
// request and an authorization per operation, 70,000 at 7,000 a second)
// and drops ended ones at the bound, so it stays at a steady size however
// long the run; the life is five batches (a batch is about a second of
// work), room for a loaded machine to use a batch before it expires.
const (
	throughputAuthorizationLife = 5 * time.Second
	throughputMemoryLimit       = 150_000
)

// throughputReplayLimit sizes each role's replay cache for a sustained
// run: at 10,000 operations a second, every jti of one kind kept for its
// lifetime plus skew (at most 180 s) fits with room to spare, so the cache
// never nears the fullness at which it refuses a busy issuer.
const throughputReplayLimit = 4_000_000

// replayLifetime is how long the Authority keeps an assertion's jti: the
// assertion's lifetime (the default 60 s) plus the verifier's skew. A run
// shorter than twice this measures a replay cache that is still filling.
const replayLifetime = assertion.DefaultTTL + assertion.DefaultSkew

var (
	throughputInflight = flag.String("throughput.inflight", "32", "requests in flight in BenchmarkThroughput (comma-separated for several runs)")
	throughputStore    = flag.String("throughput.store", "memory", "stores of BenchmarkThroughput: memory or postgres")
	throughputSettle   = flag.Bool("throughput.settle", false, "collect the garbage of each batch's preparation before timing it")
	throughputKnown    = flag.Bool("throughput.knownpasses", true, "with -throughput.store=postgres: the Authority's store remembers the passes it issued (false: every consumption reads its row, as at a replica that did not issue the pass)")
	throughputPGConns  = flag.Int("throughput.pgconns", 0, "MaxConns of each PostgreSQL pool in BenchmarkThroughput (0: the deployment's default)")
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

// runInflight runs op(i) for i in [0, b.N) from n goroutines, batch by
// batch: prepare(from, to) makes the batch's inputs with the timer stopped,
// then the batch runs with n in flight. It reports the throughput, its
// latency percentiles, its share of bound (ops/s; none if bound is 0), cpu-µs/op (the CPU
// time of this process per operation while the batches ran: what an
// operation costs all parties in one process, against the signatures'
// share of it in the bound) and run-s, the wall time
// of the whole run (preparation included, since records expire by the
// wall clock) and replay-lives, run-s over replayLifetime: the figure is
// sustained when that is at least 2.
func runInflight(b *testing.B, n int, bound float64, prepare func(from, to int), op func(i int) error) {
	b.ReportAllocs()
	lat := make([][]time.Duration, n)
	var cpu time.Duration // of this process while batches run, not while they are prepared
	began := time.Now()
	b.ResetTimer()
	batch := minThroughputBatch
	for from := 0; from < b.N; from += batch {
		if from > 0 {
			perSecond := float64(from) / b.Elapsed().Seconds()
			batch = min(max(int(perSecond), minThroughputBatch), maxThroughputBatch)
		}
		to := min(from+batch, b.N)
		b.StopTimer()
		prepare(from, to)
		if *throughputSettle {
			runtime.GC()
		}
		b.StartTimer()
		cpuBefore := processCPU()
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for g := range n {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= to {
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
		cpu += processCPU() - cpuBefore
		if b.Failed() {
			return
		}
	}
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
	if bound > 0 {
		b.ReportMetric(100*opsPerSec/bound, "%bound")
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
	run := time.Since(began)
	b.ReportMetric(run.Seconds(), "run-s")
	b.ReportMetric(run.Seconds()/replayLifetime.Seconds(), "replay-lives")
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
	s := newSigner(tb, alg)
	sig := s.sign(s.input)
	const rounds, per = 5, 200
	sign, verify = time.Hour, time.Hour
	for range rounds {
		start := time.Now()
		for range per {
			s.sign(s.input)
		}
		sign = min(sign, time.Since(start)/per)
		start = time.Now()
		for range per {
			if !s.verify(s.input, sig) {
				tb.Fatalf("%s verification failed", alg)
			}
		}
		verify = min(verify, time.Since(start)/per)
	}
	return sign, verify
}

// signer signs and verifies with one fresh key of its algorithm, the
// operations the bound is made of; input is a typical assertion's
// signing input.
type signer struct {
	input  []byte
	sign   func(msg []byte) []byte
	verify func(msg, sig []byte) bool
}

func newSigner(tb testing.TB, alg string) signer {
	s := signer{input: make([]byte, 330)} // the size of a typical assertion's signing input
	switch alg {
	case "ES256":
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		s.sign = func(msg []byte) []byte {
			h := sha256.Sum256(msg)
			sig, err := ecdsa.SignASN1(rand.Reader, priv, h[:])
			if err != nil {
				panic(err)
			}
			return sig
		}
		s.verify = func(msg, sig []byte) bool {
			h := sha256.Sum256(msg)
			return ecdsa.VerifyASN1(&priv.PublicKey, h[:], sig)
		}
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		s.sign = func(msg []byte) []byte { return ed25519.Sign(priv, msg) }
		s.verify = func(msg, sig []byte) bool { return ed25519.Verify(pub, msg, sig) }
	default:
		tb.Fatalf("newSigner: unknown alg %q", alg)
	}
	return s
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
