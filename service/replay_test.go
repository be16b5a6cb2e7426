package service_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// recordingCache is a shared replay cache that remembers the issuers it
// was given, or refuses every pair when full is set.
type recordingCache struct {
	*dpop.MemoryReplayCache
	mu      sync.Mutex
	issuers []string
	full    bool
}

func (c *recordingCache) Seen(ctx context.Context, issuer, jti string, exp time.Time) (bool, error) {
	c.mu.Lock()
	c.issuers = append(c.issuers, issuer)
	full := c.full
	c.mu.Unlock()
	if full {
		return false, dpop.ErrReplayCacheFull
	}
	return c.MemoryReplayCache.Seen(ctx, issuer, jti, exp)
}

func (c *recordingCache) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.issuers)
}

// TestSharedReplayCache: with Config.ReplayCache set, the Service records
// harness proofs and Authority assertions there (G-3, G-8), each under its
// kind's prefix, so one cache shared with an Authority or other replicas
// never confuses kinds; a second Service on the same cache (a replica)
// refuses an assertion the first accepted.
func TestSharedReplayCache(t *testing.T) {
	e := newEnv(t, nil)
	shared := &recordingCache{MemoryReplayCache: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(e.clock.Now))}
	e.start(func(c *service.Config) { c.ReplayCache = shared })

	h := newHarness(t)
	vr := validation(corpUser, pass.BearerToken)
	vr.Cnf = h.cnf()
	vr.Harness = &pass.HarnessRef{ID: h.id}
	value := e.idp.issue(vr)
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	body := pass.AvailableScopesRequest{User: pass.User{Email: corpUser}, Agent: pass.Agent{ID: "agent-7"}}
	tok := e.idp.sign(t, appURL, e.clock.Now())
	if r := e.scopesCall(tok, body); r.status != http.StatusOK {
		t.Fatalf("available scopes: %d %s", r.status, r.body)
	}
	want := []string{"service:harness-proof:" + h.id, "service:assertion:" + e.idp.origin}
	if got := shared.seen(); !slices.Equal(got, want) {
		t.Errorf("issuers recorded in the shared cache = %q, want %q", got, want)
	}

	// A replica on the same cache: the assertion is a replay there.
	e.start(func(c *service.Config) { c.ReplayCache = shared })
	if r := e.scopesCall(tok, body); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidAssertion {
		t.Fatalf("assertion replayed at another replica: %d %s, want 401 invalid_assertion", r.status, r.body)
	}
}

// TestReplayCacheFull: a cache that cannot record fails closed: the
// available-scopes call and the redemption are refused with 503, never
// accepted unrecorded.
func TestReplayCacheFull(t *testing.T) {
	e := newEnv(t, nil)
	shared := &recordingCache{MemoryReplayCache: dpop.NewMemoryReplayCache(dpop.WithLimit(100), dpop.WithClock(e.clock.Now)), full: true}
	e.start(func(c *service.Config) { c.ReplayCache = shared })
	body := pass.AvailableScopesRequest{User: pass.User{Email: corpUser}, Agent: pass.Agent{ID: "agent-7"}}
	if r := e.scopesCall(e.idp.sign(t, appURL, e.clock.Now()), body); r.status != http.StatusServiceUnavailable || r.errorCode() != pass.CodeTemporarilyUnavailable {
		t.Errorf("available scopes with a full cache: %d %s, want 503", r.status, r.body)
	}
	h := newHarness(t)
	vr := validation(corpUser, pass.BearerToken)
	vr.Cnf = h.cnf()
	vr.Harness = &pass.HarnessRef{ID: h.id}
	value := e.idp.issue(vr)
	req := redemption(e.idp, pass.BearerToken, corpUser, value)
	req.HarnessProof = h.proof(t, e, e.endpoint(pass.BearerToken), value)
	if r := e.redeem(pass.BearerToken, req, nil); r.status != http.StatusServiceUnavailable || r.errorCode() != pass.CodeTemporarilyUnavailable || strings.Contains(string(r.body), value) {
		t.Errorf("redeem with a full cache: %d %s, want 503 temporarily_unavailable", r.status, r.body)
	}
}

// TestStoreFullIsNotRateLimited: a full store answers 503
// temporarily_unavailable (the caller did nothing wrong), never 429's
// rate_limited (issue #12 item 4).
func TestStoreFullIsNotRateLimited(t *testing.T) {
	e := newEnv(t, nil)
	e.start(func(c *service.Config) { c.Store = service.NewMemoryStore(service.WithLimit(1)) })
	for i, want := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		value := e.idp.issue(validation(corpUser, pass.BearerToken))
		r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
		if r.status != want {
			t.Fatalf("redemption %d: %d %s, want %d", i, r.status, r.body, want)
		}
		if want == http.StatusServiceUnavailable && r.errorCode() != pass.CodeTemporarilyUnavailable {
			t.Errorf("full store: %s, want temporarily_unavailable", r.body)
		}
	}
}
