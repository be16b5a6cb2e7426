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
	e.idp.speakStages()
	token := func(m *pass.MissionInfo) string {
		vr := validation(corpUser, pass.BearerToken, "tickets:read")
		vr.AuthorizationID = "authz-" + randomID()
		vr.Mission = m
		r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, e.idp.issue(vr)), nil)
		if r.status != http.StatusOK {
			b.Fatalf("redeem: %d %s", r.status, r.body)
		}
		var resp pass.BearerTokenResponse
		r.decode(b, &resp)
		return resp.BearerToken
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := e.svc.Middleware(service.RequireScope("tickets:read")(bare))
	for _, c := range []struct {
		name string
		tok  string
	}{
		{"middleware", token(nil)},
		{"mission", token(&pass.MissionInfo{ID: "msn_bench_plain", State: pass.MissionActive, Version: 1})},
		{"staged", token(&pass.MissionInfo{ID: "msn_bench_staged", State: pass.MissionActive, Version: 1, Stage: "discover",
			Stages: stagedPlan, Ceiling: pass.Scope{"tickets:read", "admin"}})},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
			req.Header.Set("Authorization", "Bearer "+c.tok)
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
