package replicatest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/assertion"
	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/internal/secret"
	"github.com/agentpass-go/agentpass/pass"
)

// Issue 9 item 7: validation and redemption throughput end to end, with the
// in-memory stores next to PostgreSQL (one replica per role, and two
// replicas per role behind the balancers on one schema).
//
//	eval "$(.ci/postgres.sh start)"
//	go test -run '^$' -bench . -benchmem ./internal/replicatest/

var benchSetups = []struct {
	name string
	opts options
}{
	{"memory", options{replicas: 1}},
	{"postgres", options{replicas: 1, postgres: true}},
	{"postgres-2x2", options{replicas: 2, postgres: true}},
}

var benchCallers = []int{1, 16}

// storePasses stores n approved bearer passes for the Service, bound to
// key, in the Authority's (shared) store, as an approval leaves them, and
// returns their values.
func (d *deployment) storePasses(tb testing.TB, n int, key *dpop.Key) []string {
	tb.Helper()
	now := d.clock.Now()
	life := time.Hour
	if d.authorizationLife > 0 {
		life = d.authorizationLife
	}
	values := make([]string, n)
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(8)
	for i := range values {
		values[i] = secret.Token("ap_")
		r := &authority.Request{
			MissionID: secret.ID("msn_"), IDHash: secret.Hash(secret.ID("req_")), Status: pass.StatusApproved, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			Type: pass.BearerToken, Service: appOrigin, User: user, HarnessID: harnessID, Cnf: key.PublicJSON(),
			AgentID: harnessID, Tier: dpop.TierUnverified, TaskID: fmt.Sprintf("task-%d", i),
			TaskDescription: "Triage my open tickets", AvailableScope: pass.Scope{"tickets:read", "tickets:write"},
			Decision: &authority.Evidence{
				Status: pass.StatusApproved, DecidedBy: "policy:bench", DecidedAt: now, Scope: pass.Scope{"tickets:read"},
				PassExpiresAt: now.Add(min(10*time.Minute, life)), AuthorizationExpiresAt: now.Add(life),
			},
			PassHash: secret.Hash(values[i]),
		}
		g.Go(func() error { return d.authorityStores[0].CreateRequest(ctx, r) })
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	return values
}

// validate is what a Service does to validate a pass: sign an assertion and
// POST the pass to the Authority's validate endpoint.
func (d *deployment) validate(ctx context.Context, value string) error {
	tok, err := assertion.Sign(d.serviceKeys.Current(), appOrigin, authorityID, 0, d.clock.Now())
	if err != nil {
		return err
	}
	var vr pass.ValidationResponse
	_, err = httpx.Do(ctx, d.client, httpx.Call{
		URL: d.validateURL, Bearer: tok,
		Body: pass.ValidationRequest{AgentPass: pass.PassValue{Value: value}},
	}, &vr)
	return err
}

// redemptions builds a bearer redemption, with its harness proof, for each
// pass value.
func (d *deployment) redemptions(tb testing.TB, key *dpop.Key, values []string) []pass.RedemptionRequest {
	tb.Helper()
	endpoint := d.services[0].Configuration().Endpoints.RedeemBearerToken
	out := make([]pass.RedemptionRequest, len(values))
	for i, v := range values {
		proof, err := key.HarnessProof(dpop.ProofParams{
			HarnessID: harnessID, Audience: appOrigin, Method: http.MethodPost, URL: endpoint,
			AgentPass: v, TTL: time.Minute, Now: d.clock.Now(),
		})
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = pass.RedemptionRequest{
			AgentPass: pass.AgentPass{Type: pass.BearerToken, Value: v}, Authority: authorityID,
			User: pass.User{Email: user}, HarnessProof: &pass.JWTContainer{JWT: proof},
		}
	}
	return out
}

// runCallers runs op(i) for i in [0, b.N) from callers goroutines and
// reports ops/s.
func runCallers(b *testing.B, callers int, op func(i int) error) {
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkValidate: the Service -> Authority validate call over loopback
// HTTPS (HTTP/2, kept alive): ES256 assertion signed, Service discovery and
// JWKS from the Authority's caches, assertion verified, the pass consumed
// and the authorization created in the store, answer decoded.
func BenchmarkValidate(b *testing.B) {
	for _, s := range benchSetups {
		b.Run(s.name, func(b *testing.B) {
			d := deploy(b, s.opts)
			key, err := dpop.GenerateKey("")
			if err != nil {
				b.Fatal(err)
			}
			for _, v := range d.storePasses(b, 2*len(d.authorities), key) { // warm every replica's caches
				if err := d.validate(b.Context(), v); err != nil {
					b.Fatal(err)
				}
			}
			for _, callers := range benchCallers {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					values := d.storePasses(b, b.N, key)
					runCallers(b, callers, func(i int) error { return d.validate(b.Context(), values[i]) })
				})
			}
		})
	}
}

// BenchmarkRedeem: a bearer redemption end to end, as a Harness sends it
// (harness proof made beforehand): POST to the Service (through its
// balancer), enterprise discovery from cache, the validate call above, the
// harness proof verified and its jti recorded, the delegation and token
// stored.
func BenchmarkRedeem(b *testing.B) {
	for _, s := range benchSetups {
		b.Run(s.name, func(b *testing.B) {
			d := deploy(b, s.opts)
			key, err := dpop.GenerateKey("")
			if err != nil {
				b.Fatal(err)
			}
			for _, req := range d.redemptions(b, key, d.storePasses(b, 2*len(d.services), key)) { // warm every replica's caches
				if _, err := d.redeem(b.Context(), -1, req); err != nil {
					b.Fatal(err)
				}
			}
			for _, callers := range benchCallers {
				b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
					reqs := d.redemptions(b, key, d.storePasses(b, b.N, key))
					runCallers(b, callers, func(i int) error {
						_, err := d.redeem(b.Context(), -1, reqs[i])
						return err
					})
				})
			}
		})
	}
}
