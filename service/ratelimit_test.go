package service_test

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// clientHeader names the client in these tests: RateLimits.Key reads it,
// as a deployment behind a proxy reads the address the proxy forwards.
const clientHeader = "X-Test-Client"

func withLimits(rl service.RateLimits) func(*service.Config) {
	return func(c *service.Config) {
		rl.Key = func(r *http.Request) string { return r.Header.Get(clientHeader) }
		c.RateLimits = rl
	}
}

// off turns every level of an endpoint's limit off.
var off = service.RateLimit{Client: disabled, Network: disabled, User: disabled, Domain: disabled, Overall: disabled}

var disabled = service.Rate{PerSecond: -1}

// only limits an endpoint at its Client level.
func only(r service.Rate) service.RateLimit {
	l := off
	l.Client = r
	return l
}

func as(who string) http.Header { return http.Header{clientHeader: {who}} }

// wantLimited checks a 429 answer: Retry-After in whole seconds and the
// schema-valid rate_limited error body (S-SCOPE-7, G-18, G-35).
func wantLimited(t *testing.T, r *response, retryAfter string) {
	t.Helper()
	if r.status != http.StatusTooManyRequests || r.errorCode() != pass.CodeRateLimited {
		t.Fatalf("got %d %s, want 429 rate_limited", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After %q, want %q", got, retryAfter)
	}
	validJSON(t, r.body, "error-response.schema.json", "")
	// G-35: the message says nothing about the user or the limit.
	if strings.Contains(string(r.body), "corp.test") {
		t.Errorf("429 body mentions the user: %s", r.body)
	}
}

// G-35, S-SCOPE-7: resolution per client. Over the burst a client gets 429
// before any discovery runs; other clients are unaffected; the bucket
// refills with time.
func TestRateLimitResolve(t *testing.T) {
	e := newEnv(t, withLimits(service.RateLimits{Resolve: only(service.Rate{PerSecond: 0.5, Burst: 2})}))
	endpoint := e.svc.Configuration().Endpoints.ResolveAuthorities
	resolve := func(who, email string) *response {
		return e.postJSON(endpoint, pass.ResolutionRequest{User: pass.User{Email: email}}, as(who))
	}
	for i := range 2 {
		if r := resolve("a", corpUser); r.status != http.StatusOK {
			t.Fatalf("resolution %d: %d %s", i, r.status, r.body)
		}
	}
	// A domain never looked up before: refused without a DNS query.
	wantLimited(t, resolve("a", "sam@fresh.test"), "2")
	if n := e.net.DNS.Queries("_agentpass.fresh.test."); n != 0 {
		t.Errorf("%d DNS queries for the refused resolution, want 0", n)
	}
	if r := resolve("b", "sam@fresh.test"); r.status != http.StatusOK {
		t.Fatalf("another client: %d %s", r.status, r.body)
	}
	if n := e.net.DNS.Queries("_agentpass.fresh.test."); n == 0 {
		t.Error("no DNS query counted for the allowed resolution: the check above proves nothing")
	}
	e.clock.Advance(2 * time.Second)
	if r := resolve("a", corpUser); r.status != http.StatusOK {
		t.Fatalf("after refill: %d %s", r.status, r.body)
	}
}

// G-29, G-35: initialization per client. A refused visit does not use the
// token: the same URL works once the bucket refills.
func TestRateLimitInitialize(t *testing.T) {
	e := newEnv(t, withLimits(service.RateLimits{Initialize: only(service.Rate{PerSecond: 1, Burst: 1})}))
	resp := e.browserRedeem(t, validation(corpUser, pass.BrowserSession, "tickets:read"))
	if r := e.do(http.MethodGet, resp.InitializationURL+"x", as("a"), nil); r.status != http.StatusNotFound {
		t.Fatalf("unknown token: %d %s", r.status, r.body)
	}
	wantLimited(t, e.do(http.MethodGet, resp.InitializationURL, as("a"), nil), "1")
	e.clock.Advance(time.Second)
	if r := e.do(http.MethodGet, resp.InitializationURL, as("a"), nil); r.status != http.StatusSeeOther {
		t.Fatalf("the refused URL after refill: %d %s (was the token used by the refused visit?)", r.status, r.body)
	}
}

// Issue #14 finding 1: redemption is limited by default (a client's burst
// of 200 on a frozen clock); a refused redemption leaves the pass
// unconsumed and calls no Authority.
func TestRateLimitRedeem(t *testing.T) {
	t.Run("default on", func(t *testing.T) {
		e := newEnv(t, nil)
		for i := range 200 {
			r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, "unknown-pass"), nil)
			if r.status == http.StatusTooManyRequests {
				t.Fatalf("redemption %d limited within the default burst", i)
			}
		}
		wantLimited(t, e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, "unknown-pass"), nil), "1")
	})
	t.Run("configured", func(t *testing.T) {
		e := newEnv(t, withLimits(service.RateLimits{Redeem: only(service.Rate{PerSecond: 1, Burst: 1})}))
		v1 := e.idp.issue(validation(corpUser, pass.BearerToken))
		if r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, v1), as("a")); r.status != http.StatusOK {
			t.Fatalf("first redemption: %d %s", r.status, r.body)
		}
		calls := e.idp.validateCalls.Load()
		v2 := e.idp.issue(validation(corpUser, pass.BearerToken))
		wantLimited(t, e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, v2), as("a")), "1")
		if n := e.idp.validateCalls.Load(); n != calls {
			t.Errorf("the refused redemption made %d validate calls", n-calls)
		}
		// The browser endpoint shares the budget.
		wantLimited(t, e.redeem(pass.BrowserSession, redemption(e.idp, pass.BrowserSession, corpUser, v2), as("a")), "1")
		if r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, v2), as("b")); r.status != http.StatusOK {
			t.Fatalf("the refused pass from another client: %d %s", r.status, r.body)
		}
	})
}

// A negative PerSecond turns a level off; the defaults are on (every test
// client is 127.0.0.1): on a frozen clock the resolution burst is 100.
func TestRateLimitDefaultsAndOff(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		e := newEnv(t, nil)
		for i := range 100 {
			if r := e.resolve(corpUser); r.status != http.StatusOK {
				t.Fatalf("resolution %d: %d %s", i, r.status, r.body)
			}
		}
		wantLimited(t, e.resolve(corpUser), "1")
	})
	t.Run("off", func(t *testing.T) {
		e := newEnv(t, func(c *service.Config) { c.RateLimits = service.RateLimits{Resolve: off, Initialize: off} })
		for i := range 150 {
			if r := e.resolve(corpUser); r.status != http.StatusOK {
				t.Fatalf("resolution %d: %d %s", i, r.status, r.body)
			}
		}
	})
}

func TestRateLimitConfig(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	for name, rl := range map[string]service.RateLimits{
		"NaN rate":           {Resolve: service.RateLimit{Client: service.Rate{PerSecond: math.NaN()}}},
		"infinite rate":      {Redeem: service.RateLimit{Overall: service.Rate{PerSecond: math.Inf(1)}}},
		"negative burst":     {Initialize: service.RateLimit{Network: service.Rate{Burst: -2}}},
		"redeem has no user": {Redeem: service.RateLimit{User: service.Rate{PerSecond: 5}}},
		"negative MaxKeys":   {MaxKeys: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := service.New(service.Config{Origin: appURL, Keys: keys, Scopes: testScopes, Discovery: newEnvlessDiscovery(t), RateLimits: rl})
			if err == nil || !strings.Contains(err.Error(), "RateLimits") {
				t.Errorf("New = %v, want a RateLimits error", err)
			}
		})
	}
}

// Available scopes are limited (by default per client, network and
// overall); a refused call has no effect: its assertion was not even
// checked, so it is accepted, not a replay, once the bucket refills.
func TestRateLimitAvailableScopes(t *testing.T) {
	e := newEnv(t, withLimits(service.RateLimits{AvailableScopes: only(service.Rate{PerSecond: 1, Burst: 1})}))
	body := pass.AvailableScopesRequest{User: pass.User{Email: corpUser}, Agent: pass.Agent{ID: "agent-7"}}
	if r := e.scopesCall(e.idp.sign(t, appURL, e.clock.Now()), body); r.status != http.StatusOK {
		t.Fatalf("first call: %d %s", r.status, r.body)
	}
	tok := e.idp.sign(t, appURL, e.clock.Now())
	wantLimited(t, e.scopesCall(tok, body), "1")
	e.clock.Advance(time.Second)
	if r := e.scopesCall(tok, body); r.status != http.StatusOK {
		t.Fatalf("the refused call's assertion after refill: %d %s (was it used by the refused call?)", r.status, r.body)
	}
}
