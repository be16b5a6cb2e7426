package service_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// TestHandlerWriteStaysLocal: the middleware reuses what it built for a
// credential's earlier requests, but each request's Delegation is its own:
// a handler that changes its fields (here, widening Scope for a local
// purpose) changes nothing for the credential's later requests, which
// RequireScope still judges by the delegation's grant (independent review
// of #19's middleware work).
func TestHandlerWriteStaysLocal(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.bearerToken(t, corpUser, "tickets:read")
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusForbidden {
		t.Fatalf("admin before = %d, want 403", r.status)
	}
	req := httptest.NewRequest(http.MethodGet, appURL+"/api/tickets", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	d, err := e.svc.Check(req) // what a handler gets from DelegationFrom
	if err != nil {
		t.Fatal(err)
	}
	d.Scope = pass.Scope{"tickets:read", "admin"}
	d.User = "someone-else@corp.test"
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusForbidden {
		t.Errorf("a later request: admin = %d, want 403 (a handler's write leaked)", r.status)
	}
	d2, err := e.svc.Check(req)
	if err != nil {
		t.Fatal(err)
	}
	if d2 == d || d2.User != corpUser || d2.Scope.Has("admin") {
		t.Errorf("the next request's Delegation carries the first one's writes: %+v", d2)
	}
}
