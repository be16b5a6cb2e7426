package authority_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/authority/authoritytest"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// redeem issues and validates a pass; it returns the authorization id.
func (e *env) redeem() string {
	e.t.Helper()
	value, _ := e.approvedPass(e.newHarness())
	r, v := e.validate(e.svc, value)
	if v == nil {
		e.t.Fatalf("validate: %d %s", r.status, r.body)
	}
	return v.AuthorizationID
}

// TestAuthorizationCheck: A-AUTHZ-1..6, G-15, G-16 and the operator API
// (Suspend, Resume, NarrowScope, Revoke) seen at the next check.
func TestAuthorizationCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	id := e.redeem()
	exp := authoritytest.T0.Add((8 * time.Hour)).UTC()

	// A-AUTHZ-3: active → 200 with scope and expiry, repeatedly.
	for range 3 {
		r, c := e.check(e.svc, id)
		if c == nil {
			t.Fatalf("check: %d %s", r.status, r.body)
		}
		validateSchema(t, "authority-authorization-check.schema.json", "response", r.body)
		az, _ := e.auth.Authorization(ctx, id)
		// R2: the check answer carries the mission and still validates.
		want := &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read", "tickets:write", "admin"}, AuthorizationExpiresAt: &exp,
			Mission: &pass.MissionInfo{ID: az.MissionID, State: pass.MissionActive, Version: 2}}
		if d := cmp.Diff(want, c); d != "" {
			t.Errorf("check (-want +got):\n%s", d)
		}
	}
	// A-AUTHZ-1, A-AUTHZ-2.
	wantError(t, e.do(http.MethodPost, e.base+"/authorization-check", pass.AuthorizationCheckRequest{AuthorizationID: id}, nil), 401, pass.CodeInvalidAssertion)
	wantError(t, e.do(http.MethodPost, e.base+"/authorization-check", map[string]any{}, http.Header{"Authorization": {"Bearer " + e.svc.Assertion(authID)}}), 400, pass.CodeInvalidRequest)
	// A-AUTHZ-5, G-16: unknown and foreign ids are both 404.
	wantError(t, toResp(e.check(e.svc, "authz_unknown")), 404, pass.CodeAuthorizationUnknown)
	wantError(t, toResp(e.check(other, id)), 404, pass.CodeAuthorizationUnknown)

	// NarrowScope: narrow only; visible at the next check.
	if _, err := e.auth.NarrowScope(ctx, id, "admin@corp.test", pass.Scope{"tickets:read", "payroll:read"}); !errors.Is(err, authority.ErrScopeWiden) {
		t.Fatalf("widening: %v", err)
	}
	if _, err := e.auth.NarrowScope(ctx, id, "admin@corp.test", pass.Scope{"tickets:read"}); err != nil {
		t.Fatal(err)
	}
	if _, c := e.check(e.svc, id); c == nil || !c.Scope.Equal(pass.Scope{"tickets:read"}) {
		t.Fatalf("after narrowing: %+v", c)
	}
	// Suspend → 404; Resume → 200.
	if _, err := e.auth.Suspend(ctx, id, "admin@corp.test", "investigating"); err != nil {
		t.Fatal(err)
	}
	wantError(t, toResp(e.check(e.svc, id)), 404, pass.CodeAuthorizationUnknown)
	if _, err := e.auth.Resume(ctx, id, "admin@corp.test"); err != nil {
		t.Fatal(err)
	}
	// A-AUTHZ-6: still checkable an hour later.
	e.clock.Advance(time.Hour)
	if r, c := e.check(e.svc, id); c == nil {
		t.Fatalf("check after an hour: %d %s", r.status, r.body)
	}
	// A-AUTHZ-4: revoked → 404, and it stays revoked.
	az, err := e.auth.Revoke(ctx, id, "admin@corp.test", "employee left")
	if err != nil || az.State != pass.MissionRevoked || az.Ended == nil || az.Ended.By != "admin@corp.test" || az.Ended.Cause != pass.CauseOperator {
		t.Fatalf("Revoke: %+v %v", az, err)
	}
	wantError(t, toResp(e.check(e.svc, id)), 404, pass.CodeAuthorizationUnknown)
	if _, err := e.auth.Resume(ctx, id, "admin@corp.test"); !errors.Is(err, authority.ErrTerminal) {
		t.Fatalf("resume revoked: %v", err)
	}
	if list, _ := e.auth.Authorizations(ctx, authority.ListOptions{}); len(list) != 0 {
		t.Errorf("revoked delegation listed as live")
	}

	// A-AUTHZ-5: expired → 404.
	id2 := e.redeem()
	e.clock.Advance((8 * time.Hour))
	wantError(t, toResp(e.check(e.svc, id2)), 404, pass.CodeAuthorizationUnknown)
	wantError(t, toResp(e.closeAuthz(e.svc, id2, pass.CloseComplete)), 404, pass.CodeAuthorizationUnknown)
}

// TestAuthorizationClose: the hardening draft's close endpoint — only the
// redeeming Service, complete or revoke, idempotent, 404 afterwards.
func TestAuthorizationClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, approveAll)
	other := deploy.NewTestService(e.net, otherHost, e.auth.ConfigurationURL(), e.clock.Now)
	id := e.redeem()
	wantError(t, toResp(e.closeAuthz(other, id, pass.CloseRevoke)), 404, pass.CodeAuthorizationUnknown)
	if _, c := e.check(e.svc, id); c == nil {
		t.Fatal("a foreign close changed the delegation")
	}
	e.clock.Advance(time.Minute)
	closedAt := e.clock.Now().UTC()
	r, c := e.closeAuthz(e.svc, id, pass.CloseComplete)
	if c == nil {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	if d := cmp.Diff(&pass.AuthorizationCloseResponse{Status: pass.DelegationCompleted, ClosedAt: closedAt}, c); d != "" {
		t.Errorf("close (-want +got):\n%s", d)
	}
	// Idempotent: closing again (either action) answers how it ended.
	e.clock.Advance(time.Minute)
	for _, act := range []pass.CloseAction{pass.CloseComplete, pass.CloseRevoke} {
		_, again := e.closeAuthz(e.svc, id, act)
		if d := cmp.Diff(c, again); d != "" {
			t.Errorf("close again with %s (-first +again):\n%s", act, d)
		}
	}
	wantError(t, toResp(e.check(e.svc, id)), 404, pass.CodeAuthorizationUnknown)
	wantError(t, toResp(e.closeAuthz(other, id, pass.CloseComplete)), 404, pass.CodeAuthorizationUnknown)

	id2 := e.redeem()
	if _, c := e.closeAuthz(e.svc, id2, pass.CloseRevoke); c == nil || c.Status != pass.DelegationRevoked {
		t.Fatalf("revoke: %+v", c)
	}
	wantError(t, toResp(e.closeAuthz(e.svc, "authz_unknown", pass.CloseRevoke)), 404, pass.CodeAuthorizationUnknown)
	wantError(t, e.do(http.MethodPost, e.base+"/authorization-close",
		map[string]any{"authorization_id": id2, "action": "pause"}, http.Header{"Authorization": {"Bearer " + e.svc.Assertion(authID)}}), 400, pass.CodeInvalidRequest)
}
