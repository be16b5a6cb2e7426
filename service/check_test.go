package service_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/discovery/dnstest"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// issueToken redeems a pass and returns the token and the authorization id.
func (e *env) issueToken(t *testing.T, scope ...string) (string, string) {
	t.Helper()
	vr := validation(corpUser, pass.BearerToken, scope...)
	vr.AuthorizationID = "authz-" + randomID()
	value := e.idp.issue(vr)
	r := e.redeem(pass.BearerToken, redemption(e.idp, pass.BearerToken, corpUser, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	return resp.BearerToken, vr.AuthorizationID
}

// S-AUTHZ-1, S-AUTHZ-2, S-AUTHZ-5, S-AUTHZ-6: revocation takes effect
// after the check interval, for every credential of the delegation, and
// stays in effect.
func TestRevocationAfterCheckInterval(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.issueToken(t)
	// A browser session of another delegation is unaffected.
	other, _ := e.issueToken(t)
	e.idp.setAuthz(id, nil) // revoked at the Authority
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("within the interval: %d (no check expected yet)", r.status)
	}
	if n := e.idp.checkCalls.Load(); n != 0 {
		t.Errorf("%d checks within the interval, want 0", n)
	}
	e.clock.Advance(31 * time.Second)
	r := e.get("/api/tickets", bearer(tok))
	if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Fatalf("after the interval: %d %s, want 401 delegation_revoked", r.status, r.body)
	}
	if e.idp.checkCalls.Load() != 1 {
		t.Errorf("%d checks, want 1", e.idp.checkCalls.Load())
	}
	if c := e.idp.lastAssertion.Load(); c == nil {
		t.Error("check sent no assertion")
	}
	// The Authority flips back: still refused (S-AUTHZ-6).
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}})
	e.clock.Advance(31 * time.Second)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusUnauthorized {
		t.Errorf("after the Authority flips back: %d, want 401", r.status)
	}
	if r := e.get("/api/tickets", bearer(other)); r.status != http.StatusOK {
		t.Errorf("another delegation: %d, want 200", r.status)
	}
	d, err := e.store.Delegation(t.Context(), id)
	if err != nil || !d.Invalidated {
		t.Errorf("delegation not invalidated in the store: %+v %v", d, err)
	}
	// The rejection is audited with the delegation's attribution.
	recs := e.logs.records("agentpass request rejected")
	if len(recs) == 0 {
		t.Fatal("no audit record of the rejection")
	}
	last := recs[len(recs)-1]
	for k, v := range map[string]string{"user": corpUser, "agent": "agent-7", "authorization_id": id, "outcome": "rejected", "code": string(pass.CodeDelegationRevoked)} {
		if last[k] != v {
			t.Errorf("audit %s = %v, want %s", k, last[k], v)
		}
	}
}

// S-AUTHZ-7: Authority down → rejected (fail closed), unless a grace is
// configured, and only within it.
func TestAuthorityDown(t *testing.T) {
	t.Run("fail closed", func(t *testing.T) {
		e := newEnv(t, nil)
		tok, _ := e.issueToken(t)
		e.idp.setDown(true)
		e.clock.Advance(31 * time.Second)
		r := e.get("/api/tickets", bearer(tok))
		if r.status != http.StatusServiceUnavailable || r.errorCode() != pass.CodeAuthorityUnavailable {
			t.Fatalf("Authority down: %d %s, want 503 authority_unavailable", r.status, r.body)
		}
		e.idp.setDown(false)
		if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
			t.Errorf("Authority back: %d, want 200 (unreachable does not revoke)", r.status)
		}
	})
	t.Run("stopped host", func(t *testing.T) {
		e := newEnv(t, nil)
		tok, _ := e.issueToken(t)
		e.clock.Advance(31 * time.Second)
		e.net.Stop(idpHost)
		if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusServiceUnavailable {
			t.Errorf("Authority host stopped: %d, want 503", r.status)
		}
	})
	t.Run("grace", func(t *testing.T) {
		e := newEnv(t, func(c *service.Config) { c.UnreachableGrace = time.Minute })
		tok, _ := e.issueToken(t)
		e.idp.setDown(true)
		e.clock.Advance(45 * time.Second)
		if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
			t.Errorf("within the grace: %d, want 200", r.status)
		}
		e.clock.Advance(60 * time.Second)
		if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusServiceUnavailable {
			t.Errorf("after the grace: %d, want 503", r.status)
		}
	})
}

// S-AUTHZ-8, G-15: a narrower check scope applies at once; a wider one
// never widens beyond the redemption scope; authorization_expires_at from a
// check also bounds.
func TestCheckNarrowsScope(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.issueToken(t, "tickets:read", "admin")
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("admin before: %d", r.status)
	}
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}})
	e.clock.Advance(31 * time.Second)
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusForbidden || r.errorCode() != pass.CodeInsufficientScope {
		t.Errorf("admin after narrowing: %d %s, want 403", r.status, r.body)
	}
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("tickets after narrowing: %d", r.status)
	}
	end := e.clock.Now().Add(40 * time.Second)
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"*"}, AuthorizationExpiresAt: &end})
	e.clock.Advance(31 * time.Second)
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("admin after the Authority restores it: %d, want 200 (within the redemption scope)", r.status)
	}
	r := e.get("/", bearer(tok))
	var got map[string]any
	r.decode(t, &got)
	if s, _ := got["scope"].([]any); len(s) != 2 {
		t.Errorf("scope after a wildcard check = %v, want the redemption scope only", got["scope"])
	}
	e.clock.Advance(10 * time.Second)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusUnauthorized {
		t.Errorf("after the check's authorization_expires_at: %d, want 401", r.status)
	}
}

// Concurrent requests for one authorization share one check.
func TestChecksCollapse(t *testing.T) {
	e := newEnv(t, nil)
	tok, _ := e.issueToken(t)
	e.clock.Advance(31 * time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.get("/api/tickets", bearer(tok))
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 20 {
		t.Errorf("statuses %v, want 20×200", codes)
	}
	// Requests that raced the first check may start one more; never one
	// per request.
	if n := e.idp.checkCalls.Load(); n < 1 || n > 3 {
		t.Errorf("%d checks for 20 concurrent requests", n)
	}
}

// Close (je.authorization-close): the Authority is told, and every
// credential dies at once, without waiting for a check.
func TestClose(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.issueToken(t)
	if err := e.svc.CloseAuthorization(t.Context(), id, pass.CloseComplete, "task done"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a, ok := e.idp.closed.Load(id); !ok || a != pass.CloseComplete {
		t.Errorf("Authority close = %v, %v", a, ok)
	}
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Errorf("after Close: %d %s, want 401 delegation_revoked", r.status, r.body)
	}
	if err := e.svc.CloseAuthorization(t.Context(), "authz-unknown", pass.CloseRevoke, ""); err == nil {
		t.Error("Close of an unknown authorization succeeded")
	}
	if err := e.svc.CloseAuthorization(t.Context(), id, "explode", ""); err == nil {
		t.Error("Close with an invalid action succeeded")
	}
	// A plain v0.1 Authority without the close endpoint: local only.
	e.idp.setConfig(func(c *pass.AuthorityConfiguration) { c.Endpoints.AuthorizationClose = "" })
	e.clock.Advance(2 * time.Minute) // let the discovery cache expire
	tok2, id2 := e.issueToken(t)
	calls := e.idp.closeCalls.Load()
	if err := e.svc.CloseAuthorization(t.Context(), id2, pass.CloseRevoke, ""); err != nil {
		t.Fatalf("Close without the endpoint: %v", err)
	}
	if e.idp.closeCalls.Load() != calls {
		t.Error("close endpoint called although not advertised")
	}
	if r := e.get("/api/tickets", bearer(tok2)); r.status != http.StatusUnauthorized {
		t.Errorf("after local Close: %d, want 401", r.status)
	}
}

// S-AUTHZ-5, G-15: a last-check time in the future (written by a replica
// whose clock runs ahead, since RecordCheck only moves CheckedAt forward,
// or left behind by a clock stepped back) is not a fresh check: the cached
// result must not be used for longer than CheckInterval, and the grace for
// an unreachable Authority must not stretch either.
func TestS_AUTHZ_5_CheckedAtInTheFuture(t *testing.T) {
	t.Run("revoked delegation", func(t *testing.T) {
		e := newEnv(t, nil)
		tok, id := e.issueToken(t)
		e.idp.setAuthz(id, nil) // revoked at the Authority
		e.clock.Advance(-10 * time.Minute)
		r := e.get("/", bearer(tok))
		if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
			t.Errorf("last check 10 min in the future: %d %s, want 401 delegation_revoked", r.status, r.body)
		}
		if n := e.idp.checkCalls.Load(); n != 1 {
			t.Errorf("%d checks, want 1", n)
		}
	})
	t.Run("grace", func(t *testing.T) {
		e := newEnv(t, func(c *service.Config) { c.UnreachableGrace = time.Minute })
		tok, _ := e.issueToken(t)
		e.idp.setDown(true)
		e.clock.Advance(-10 * time.Minute)
		if r := e.get("/", bearer(tok)); r.status != http.StatusServiceUnavailable {
			t.Errorf("Authority down, last check 10 min in the future: %d, want 503", r.status)
		}
	})
}

// G-14, G-15: an authorization check that narrows the delegation to
// nothing (scope []) leaves no authority to act: requests are refused, as
// an empty scope is refused at redemption, even on routes that check no
// particular scope. The delegation is not invalidated: a later check may
// restore scope within the redemption scope.
func TestG15_EmptyScopeAfterCheck(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.issueToken(t)
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{}})
	e.clock.Advance(31 * time.Second)
	if r := e.get("/", bearer(tok)); r.status != http.StatusForbidden || r.errorCode() != pass.CodeScopeEmpty {
		t.Errorf("after a check with an empty scope: %d %s, want 403 scope_empty", r.status, r.body)
	}
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read"}})
	e.clock.Advance(31 * time.Second)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("after the Authority restores the scope: %d %s, want 200", r.status, r.body)
	}
}

// issueFederated redeems a bearer token for user through the Federated
// Authority fed.test (the user's domain must have no enterprise record).
func (e *env) issueFederated(t *testing.T, user string) (string, string) {
	t.Helper()
	vr := validation(user, pass.BearerToken)
	vr.AuthorizationID = "authz-" + randomID()
	value := e.fed.issue(vr)
	r := e.redeem(pass.BearerToken, redemption(e.fed, pass.BearerToken, user, value), nil)
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	var resp pass.BearerTokenResponse
	r.decode(t, &resp)
	return resp.BearerToken, vr.AuthorizationID
}

// TestPrecedenceRecheckedAtEveryCheck: S-RED-7 holds for the whole life of
// a delegation, not only at redemption. A domain that later publishes
// "none" (X-DNS-7), or adopts an Enterprise Authority (S-RES-12), ends the
// federated delegations of its users at the next check, although the
// Federated Authority still vouches for them.
func TestPrecedenceRecheckedAtEveryCheck(t *testing.T) {
	for _, tc := range []struct {
		name, record string
	}{
		{"domain publishes none", "none"},
		{"domain adopts an Enterprise Authority", ""}, // filled with idp's configuration URL
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			user := "kim@solo.test"
			tok, id := e.issueFederated(t, user)
			if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
				t.Fatalf("before: %d %s", r.status, r.body)
			}
			record := tc.record
			if record == "" {
				record = e.idp.configURL
			}
			e.net.PublishEnterprise("solo.test", record)
			e.clock.Advance(10 * time.Minute) // past the check interval and the negative DNS cache
			r := e.get("/api/tickets", bearer(tok))
			if r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
				t.Fatalf("after the domain changed: %d %s, want 401 delegation_revoked", r.status, r.body)
			}
			d, err := e.store.Delegation(t.Context(), id)
			if err != nil || !d.Invalidated || !strings.HasPrefix(d.InvalidReason, "precedence: ") {
				t.Fatalf("delegation: %+v %v", d, err)
			}
		})
	}
}

// TestPrecedenceRecheckDNSFailure: when the precedence re-check cannot
// reach DNS, the request is refused (fail closed, G-10) but the delegation
// survives, exactly as when the Authority is unreachable (G-15).
func TestPrecedenceRecheckDNSFailure(t *testing.T) {
	e := newEnv(t, nil)
	tok, id := e.issueToken(t)
	e.clock.Advance(10 * time.Minute)
	e.net.DNS.SetFault("_agentpass.corp.test", dnstest.FaultServFail)
	r := e.get("/api/tickets", bearer(tok))
	if r.status != http.StatusServiceUnavailable || r.errorCode() != pass.CodeAuthorityUnavailable {
		t.Fatalf("DNS down: %d %s, want 503 authority_unavailable", r.status, r.body)
	}
	if d, err := e.store.Delegation(t.Context(), id); err != nil || d.Invalidated {
		t.Fatalf("a DNS failure invalidated the delegation: %+v %v", d, err)
	}
	e.net.DNS.SetFault("_agentpass.corp.test", dnstest.FaultNone)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("DNS back: %d %s", r.status, r.body)
	}
}
