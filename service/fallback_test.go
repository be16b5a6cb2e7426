package service_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// The middleware claims only the tokens it issued, by their prefix: the
// application's own API keys reach Config.Fallback on the same route,
// while an unknown, expired or revoked agent token is refused and never
// handed on.
func TestMiddlewareFallback(t *testing.T) {
	var fellBack []string
	e := newEnv(t, func(c *service.Config) {
		c.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := service.DelegationFrom(r.Context()); ok {
				t.Error("fallback request carries a delegation")
			}
			fellBack = append(fellBack, r.Header.Get("Authorization"))
			if r.Header.Get("Authorization") != "Bearer app-key-1" {
				http.Error(w, "app: unauthorized", http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusTeapot)
		})
	})
	tok, id := e.issueToken(t)
	expired, _ := e.issueToken(t)

	// Ours, valid: the agent gets in.
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Fatalf("agent token: %d %s", r.status, r.body)
	}
	// Not ours: the application decides.
	if r := e.get("/api/tickets", bearer("app-key-1")); r.status != http.StatusTeapot {
		t.Errorf("app key: %d, want the fallback's 418", r.status)
	}
	if r := e.get("/api/tickets", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}); r.status != http.StatusUnauthorized || r.errorCode() != "" {
		t.Errorf("basic auth: %d %s, want the fallback's own 401", r.status, r.body)
	}
	if r := e.get("/api/tickets", nil); r.status != http.StatusUnauthorized || r.errorCode() != "" {
		t.Errorf("no credential: %d %s, want the fallback's own 401", r.status, r.body)
	}
	req, _ := http.NewRequest("GET", appURL+"/api/tickets", nil)
	req.Header.Set("Authorization", "Bearer app-key-1")
	if _, err := e.svc.Check(req); !errors.Is(err, service.ErrNoCredential) {
		t.Errorf("Check(app key) = %v, want ErrNoCredential", err)
	}

	// Ours but unknown, expired or revoked: refused, never handed on.
	n := len(fellBack)
	e.idp.setAuthz(id, nil)
	e.clock.Advance(service.DefaultCheckInterval + 1)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeDelegationRevoked {
		t.Errorf("revoked: %d %s, want 401 delegation_revoked", r.status, r.body)
	}
	if r := e.get("/api/tickets", bearer(service.TokenPrefix+"unknown")); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidToken {
		t.Errorf("unknown: %d %s, want 401 invalid_token", r.status, r.body)
	}
	e.clock.Advance(service.DefaultTokenTTL)
	if r := e.get("/api/tickets", http.Header{"Authorization": {"DPoP " + expired}}); r.status != http.StatusUnauthorized || r.errorCode() != pass.CodeInvalidToken {
		t.Errorf("expired: %d %s, want 401 invalid_token", r.status, r.body)
	}
	if len(fellBack) != n {
		t.Errorf("agent tokens handed to the fallback: %q", fellBack[n:])
	}
	req.Header.Set("Authorization", "Bearer "+service.TokenPrefix+"unknown")
	if _, err := e.svc.Check(req); errors.Is(err, service.ErrNoCredential) || !errors.Is(err, pass.ErrUnauthenticated) {
		t.Errorf("Check(unknown apt_ token) = %v, want an unauthenticated *pass.Error", err)
	}
}
