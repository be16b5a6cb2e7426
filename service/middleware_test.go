package service_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// Requests of one credential reuse what the middleware built for it (each
// gets its own copy) until the delegation changes in the store; the next
// request after a narrowing or an
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
	if d2, err := e.svc.Check(req); err != nil || d2 == d1 || d2.AuthorizationID != d1.AuthorizationID || !slices.Equal(d2.Scope, d1.Scope) {
		t.Errorf("second request: its own copy %v, same delegation %v, err %v", d2 != d1, d2 != nil && d2.AuthorizationID == d1.AuthorizationID, err)
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

// Requests racing with changes of their delegation each see one whole
// state of it, and the first request after the last change sees that
// change (run with -race: the memory store's read path takes no lock).
func TestMiddlewareConcurrentChanges(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	tok := e.bearerToken(t, corpUser, "tickets:read", "admin")
	newReq := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, appURL+"/api/admin", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	d0, err := e.svc.Check(newReq())
	if err != nil {
		t.Fatal(err)
	}
	wide, narrow := pass.Scope{"tickets:read", "admin"}, pass.Scope{"tickets:read"}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			r := newReq()
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				d, err := e.svc.Check(r)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(d.Scope, wide) && !slices.Equal(d.Scope, narrow) {
					errs <- fmt.Errorf("torn scope %v", d.Scope)
					return
				}
			}
		}()
	}
	for i := range 200 {
		scope := wide
		if i%2 == 1 {
			scope = narrow
		}
		if err := e.store.RecordCheck(ctx, d0.AuthorizationID, e.clock.Now(), scope, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if d, err := e.svc.Check(newReq()); err != nil || !slices.Equal(d.Scope, scope) {
			t.Fatalf("change %d: the next request sees %v (%v), want %v", i, d, err, scope)
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// otherStore is a MemoryStore the middleware cannot tell from any other
// Store, so it takes the path of the PostgreSQL store: copies read by hex
// hash, a Delegation per request.
type otherStore struct{ *service.MemoryStore }

// Through a Store other than MemoryStore each request gets a Delegation
// of its own, made with its context in one allocation, and a narrowing is
// seen at once.
func TestMiddlewareOtherStore(t *testing.T) {
	e := newEnv(t, func(c *service.Config) { c.Store = otherStore{c.Store.(*service.MemoryStore)} })
	tok := e.bearerToken(t, corpUser, "tickets:read", "admin")
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("admin = %d %s", r.status, r.body)
	}
	req := httptest.NewRequest(http.MethodGet, appURL+"/api/admin", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	d1, err1 := e.svc.Check(req)
	d2, err2 := e.svc.Check(req)
	if err1 != nil || err2 != nil || d1 == d2 || !slices.Equal(d1.Scope, d2.Scope) {
		t.Fatalf("two requests: %v %v, shared %v", err1, err2, d1 == d2)
	}
	if err := e.store.RecordCheck(t.Context(), d1.AuthorizationID, e.clock.Now(), pass.Scope{"tickets:read"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if r := e.get("/api/admin", bearer(tok)); r.status != http.StatusForbidden {
		t.Errorf("admin after the narrowing = %d, want 403", r.status)
	}
}
