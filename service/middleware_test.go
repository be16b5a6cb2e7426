package service_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Requests of one credential share its Delegation until the delegation
// changes in the store; the next request after a narrowing or an
// invalidation sees it at once: S-AUTHZ-8 (a removed scope is refused on
// the next request) and S-AUTHZ-6 (an invalidated delegation's token is
// refused), which #19 item 3's shared Delegations must not delay.
func TestMiddlewareFollowsEveryChange(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	tok := e.bearerToken(t, corpUser, "tickets:read", "admin")
	req := httptest.NewRequest(http.MethodGet, appURL+"/api/admin", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	d1, err := e.svc.Check(req)
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := e.svc.Check(req); err != nil || d2 != d1 {
		t.Errorf("second request: shared %v, err %v", d2 == d1, err)
	}
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("admin before the narrowing = %d %s", r.status, r.body)
	}

	if err := e.store.RecordCheck(ctx, d1.AuthorizationID, e.clock.Now(), pass.Scope{"tickets:read"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusForbidden || r.errorCode() != pass.CodeInsufficientScope {
		t.Errorf("admin after the narrowing = %d %s, want 403 insufficient_scope", r.status, r.body)
	}
	d3, err := e.svc.Check(req)
	if err != nil || d3 == d1 || !slices.Equal(d3.Scope, pass.Scope{"tickets:read"}) {
		t.Fatalf("after the narrowing: %v, shared %v, err %v", d3, d3 == d1, err)
	}
	if !d1.Allows("admin") {
		t.Error("the Delegation handed out before the narrowing changed under its request")
	}

	if err := e.store.Invalidate(ctx, d1.AuthorizationID, e.clock.Now(), "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Check(req); !errors.Is(err, pass.ErrRevoked) {
		t.Errorf("after the invalidation: %v, want ErrRevoked", err)
	}
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusUnauthorized {
		t.Errorf("tickets after the invalidation = %d, want 401", r.status)
	}
}
