package service_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentpass-go/agentpass/internal/httpx"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// benchEnv is newEnv with keep-alive connections, as in production.
func benchEnv(b testing.TB) *env {
	e := newNet(b)
	e.client = e.net.Client()
	e.start(nil)
	return e
}

// BenchmarkMiddleware measures the middleware on an authorized request with
// a warm check cache (no call to the Authority), next to the bare handler.
func BenchmarkMiddleware(b *testing.B) {
	e := benchEnv(b)
	tok := e.bearerToken(e.t, corpUser, "tickets:read")
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := e.svc.Middleware(service.RequireScope("tickets:read")(bare))
	run := func(b *testing.B, h http.Handler) {
		req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusNoContent {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare) })
	b.Run("middleware", func(b *testing.B) { run(b, wrapped) })
	// A handler that reads its Delegation gets a copy of its own.
	reading := e.svc.Middleware(service.RequireScope("tickets:read")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := service.DelegationFrom(r.Context()); !ok || d.User != corpUser {
			b.Fatal("no delegation in the context")
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	b.Run("middleware-DelegationFrom", func(b *testing.B) { run(b, reading) })
	b.Run("middleware-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			for pb.Next() {
				w := httptest.NewRecorder()
				wrapped.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	})
}

// BenchmarkRedeem measures a bearer redemption end to end over TLS on
// loopback: the Harness's POST, enterprise discovery (cached), the signed
// validate call to the Authority, the checks, and the minted token.
func BenchmarkRedeem(b *testing.B) {
	e := benchEnv(b)
	url := e.endpoint(pass.BearerToken)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		value := e.idp.issue(validation(corpUser, pass.BearerToken, "tickets:read"))
		req := redemption(e.idp, pass.BearerToken, corpUser, value)
		b.StartTimer()
		var resp pass.BearerTokenResponse
		if _, err := httpx.Do(b.Context(), e.client, httpx.Call{URL: url, Body: req}, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedeemWithProof adds a holder-bound pass and a harness proof
// (made outside the timer).
func BenchmarkRedeemWithProof(b *testing.B) {
	e := benchEnv(b)
	h := newHarness(b)
	url := e.endpoint(pass.BearerToken)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		vr := validation(corpUser, pass.BearerToken, "tickets:read")
		vr.Cnf = h.cnf()
		value := e.idp.issue(vr)
		req := redemption(e.idp, pass.BearerToken, corpUser, value)
		req.HarnessProof = h.proof(e.t, e, url, value)
		b.StartTimer()
		var resp pass.BearerTokenResponse
		if _, err := httpx.Do(b.Context(), e.client, httpx.Call{URL: url, Body: req}, &resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMiddlewareStaged measures the middleware on an authorized
// request of a delegation staged in place (the current stage allows the
// route), next to a plain delegation and to one with a mission but no
// stages, with a warm check cache. Staging must cost at most 100 ns and no
// allocation over the plain middleware (BENCHMARKS.md).
func BenchmarkMiddlewareStaged(b *testing.B) {
	e := benchEnv(b)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := e.svc.Middleware(service.RequireScope("tickets:read")(bare))
	for _, c := range missionTokens(b, e) {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				wrapped.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// missionTokens makes e's enterprise Authority speak stages and redeems a
// bearer token for "tickets:read" of a plain delegation, of one with a
// mission, and of one staged in place whose current stage allows it.
func missionTokens(t testing.TB, e *env) []struct{ name, token string } {
	e.idp.speakStages()
	token := func(m *pass.MissionInfo) string {
		vr := validation(corpUser, pass.BearerToken, "tickets:read")
		vr.AuthorizationID = "authz-" + randomID()
		vr.Mission = m
		r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
		if r.status != http.StatusOK {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		var resp pass.BearerTokenResponse
		r.decode(t, &resp)
		return resp.BearerToken
	}
	return []struct{ name, token string }{
		{"middleware", token(nil)},
		{"mission", token(&pass.MissionInfo{ID: "msn_bench_plain", State: pass.MissionActive, Version: 1})},
		{"staged", token(&pass.MissionInfo{ID: "msn_bench_staged", State: pass.MissionActive, Version: 1, Stage: "discover",
			Stages: stagedPlan, Ceiling: pass.Scope{"tickets:read", "admin"}})},
	}
}

// TestMiddlewareAllocations keeps issue #19 item 3 from regressing: an
// authorized request through Middleware and RequireScope on a warm check
// cache allocates at most maxAllocsOverBare times more than the bare
// handler (the issue allows 4): the request copy for the next handler,
// with the context carrying the delegation in the same allocation. The
// Delegation itself is made once per credential and delegation state, not
// per request. The parallel benchmark runs the same code, so it is
// covered here too.
func TestMiddlewareAllocations(t *testing.T) {
	const maxAllocsOverBare = 1
	e := benchEnv(t)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := e.svc.Middleware(service.RequireScope("tickets:read")(bare))
	allocs := func(h http.Handler, token string) float64 {
		req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		serve := func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusNoContent {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
		serve() // the first request makes the credential's Delegation
		return testing.AllocsPerRun(200, serve)
	}
	tokens := missionTokens(t, e)
	base := allocs(bare, tokens[0].token)
	for _, c := range tokens {
		t.Run(c.name, func(t *testing.T) {
			if over := allocs(wrapped, c.token) - base; over > maxAllocsOverBare {
				t.Errorf("the middleware allocates %v times over the bare handler's %v, want at most %d (#19)", over, base, maxAllocsOverBare)
			}
		})
	}
}

// TestRedeemAllocs (#19 item 2): a bearer redemption with a holder proof,
// the Service's side and the test Authority's answering it, over real TLS,
// stays within the allocations counted once the request and the
// validation answer decoded without reflection, the holder key came from
// the memo and the second precedence run was skipped for an answer naming
// the user as the request did, and the bearer answer decoded without
// reflection at the client (before: 545, 594 under the race detector;
// after: 415 and 456); then bodies read into pooled buffers, canonical
// addresses and minted secrets without copies, one copy of the granted
// scope in the store, the trust set in one allocation (392 and 435).
func TestRedeemAllocs(t *testing.T) {
	e := benchEnv(t)
	h := newHarness(t)
	url := e.endpoint(pass.BearerToken)
	const runs = 50
	reqs := make([]pass.RedemptionRequest, runs+1)
	for i := range reqs {
		vr := validation(corpUser, pass.BearerToken, "tickets:read")
		vr.Cnf = h.cnf()
		value := e.idp.issue(vr)
		reqs[i] = redemption(e.idp, pass.BearerToken, corpUser, value)
		reqs[i].HarnessProof = h.proof(e.t, e, url, value)
	}
	next := 0
	n := testing.AllocsPerRun(runs, func() {
		var resp pass.BearerTokenResponse
		if _, err := httpx.Do(t.Context(), e.client, httpx.Call{URL: url, Body: reqs[next]}, &resp); err != nil || resp.BearerToken == "" {
			t.Fatal(resp, err)
		}
		next++
	})
	t.Logf("redemption: %v allocations", n)
	limit := 395.0
	if raceEnabled {
		limit = 440
	}
	if n > limit {
		t.Errorf("redemption: %v allocations, want at most %v", n, limit)
	}
}
