package authority_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// Security review, Medium 1 (#14 finding 2): any party that publishes a
// Service configuration can sign assertions. Assertions spent on made-up
// passes must take no room in the Authority's replay cache, or 17
// subdomains fill it and every honest Service's validation gets 503. The
// cache here is tiny (64 entries) so that the flood needs few requests.
// The same holds for a custom cache that does not say it is unbounded; one
// that does (dpop.UnboundedReplayCache, #19 item 6) is recorded first, so
// every assertion lands in it.
func TestAssertionFloodCannotFillReplayCache(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*dpop.MemoryReplayCache) dpop.ReplayCache
	}{
		{"memory", func(c *dpop.MemoryReplayCache) dpop.ReplayCache { return c }},
		{"custom", func(c *dpop.MemoryReplayCache) dpop.ReplayCache { return customCache{c} }},
		{"unbounded", func(c *dpop.MemoryReplayCache) dpop.ReplayCache { return unboundedCache{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			limit := 64 // tiny: filled, it would refuse the honest Service
			if tc.name == "unbounded" {
				limit = 1 << 16 // room for every record, as a table has
			}
			cache := dpop.NewMemoryReplayCache(dpop.WithLimit(limit), dpop.WithClock(func() time.Time { return e.clock.Now() }))
			e = newEnv(t, approveAll, func(c *authority.Config) { c.ReplayCache = tc.wrap(cache) })
			h := e.newHarness()
			value, _ := e.approvedPass(h)
			refused := 0
			for i := range 17 {
				evil := deploy.NewTestService(e.net, fmt.Sprintf("s%d.evil.test", i), e.auth.ConfigurationURL(), e.clock.Now)
				for range 64 {
					if r, _ := e.validate(evil, "ap_made-up"); r.status == http.StatusNotFound {
						refused++
					}
				}
			}
			if refused != 17*64 {
				t.Errorf("%d of %d made-up passes answered 404", refused, 17*64)
			}
			want := 0
			if tc.name == "unbounded" {
				want = 17 * 64
			}
			if n := cache.Len(); n != want {
				t.Errorf("the replay cache holds %d entries from assertions spent on made-up passes, want %d", n, want)
			}
			r, vr := e.validate(e.svc, value)
			if r.status != http.StatusOK || vr == nil {
				t.Fatalf("honest Service's validation after the flood: %d %s", r.status, r.body)
			}
			if n := cache.Len(); n != want+1 {
				t.Errorf("the honest validation left %d entries, want %d", n, want+1)
			}
		})
	}
}

// customCache is a replay cache of the application's own, with a lookup
// but not marked unbounded.
type customCache struct{ *dpop.MemoryReplayCache }

// unboundedCache says it never refuses for lack of room.
type unboundedCache struct{ *dpop.MemoryReplayCache }

func (unboundedCache) Unbounded() {}

// Security review, Medium 2: an unsigned junk assertion naming a fresh
// issuer must not make the Authority look the issuer up: everything that
// needs no network (aud, times, kid) is checked before discovery.
func TestJunkAssertionCostsNoDiscovery(t *testing.T) {
	e := newEnv(t)
	b := base64.RawURLEncoding.EncodeToString
	for i := range 50 {
		hdr := b([]byte(`{"alg":"ES256","kid":"x","typ":"agentpass-assertion+jwt"}`))
		pl := b([]byte(fmt.Sprintf(`{"iss":"https://r%d.victim.test","aud":%q,"iat":1,"exp":2,"jti":"j"}`, i, authID)))
		tok := hdr + "." + pl + "." + b(make([]byte, 64))
		r := e.do(http.MethodPost, e.base+"/validate",
			pass.ValidationRequest{AgentPass: pass.PassValue{Value: "ap_x"}}, http.Header{"Authorization": {"Bearer " + tok}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("junk assertion %d: %d %s", i, r.status, r.body)
		}
	}
	q := 0
	for i := range 50 {
		q += e.net.DNS.Queries(fmt.Sprintf("_agentpass-service.r%d.victim.test.", i))
	}
	if q != 0 {
		t.Errorf("the Authority sent %d DNS queries for 50 expired, unsigned assertions, want 0", q)
	}
}

// Security review: the Service-facing endpoints are charged to
// RateLimits.Services before the assertion is parsed, so a flood of
// well-formed but unsigned assertions naming fresh issuers from one client
// stops costing DNS queries once the client's burst is spent.
func TestServiceEndpointFloodStopsDiscovery(t *testing.T) {
	const burst = 5
	e := newEnv(t, limits(authority.RateLimits{Services: authority.RateLimit{
		Client: authority.Rate{PerSecond: 1, Burst: burst}, Network: disabled, Overall: disabled}}))
	b := base64.RawURLEncoding.EncodeToString
	now := e.clock.Now().Unix()
	paths := []string{"/validate", "/authorization-check", "/authorization-close"}
	bodies := []any{pass.ValidationRequest{AgentPass: pass.PassValue{Value: "ap_x"}},
		pass.AuthorizationCheckRequest{AuthorizationID: "authz_x"},
		pass.AuthorizationCloseRequest{AuthorizationID: "authz_x", Action: pass.CloseRevoke}}
	const n = 30
	limited := 0
	for i := range n {
		hdr := b([]byte(`{"alg":"ES256","kid":"k1","typ":"agentpass-assertion+jwt"}`))
		pl := b(fmt.Appendf(nil, `{"iss":"https://f%d.victim.test","aud":%q,"iat":%d,"exp":%d,"jti":"j%d"}`, i, authID, now, now+60, i))
		tok := hdr + "." + pl + "." + b(make([]byte, 64))
		r := e.do(http.MethodPost, e.base+paths[i%len(paths)], bodies[i%len(paths)],
			http.Header{"Authorization": {"Bearer " + tok}, clientHeader: {"flooder"}})
		switch r.status {
		case http.StatusTooManyRequests:
			limited++
			wantLimited(t, r, "1")
		case http.StatusUnauthorized, http.StatusBadGateway:
		default:
			t.Fatalf("assertion %d: %d %s", i, r.status, r.body)
		}
	}
	if limited != n-burst {
		t.Errorf("%d of %d requests were rate limited, want %d", limited, n, n-burst)
	}
	q := 0
	for i := range n {
		q += e.net.DNS.Queries(fmt.Sprintf("_agentpass-service.f%d.victim.test.", i))
	}
	if q == 0 || q > burst {
		t.Errorf("the flood sent %d DNS queries, want between 1 and %d (the burst)", q, burst)
	}
	// Another client is not affected.
	r := e.do(http.MethodPost, e.base+"/validate", map[string]string{}, client("honest"))
	wantError(t, r, http.StatusUnauthorized, pass.CodeInvalidAssertion)
}
