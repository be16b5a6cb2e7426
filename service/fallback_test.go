package service_test

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
	"github.com/agentpass-go/agentpass/service/servicetest"
)

// The middleware claims only the tokens it issued, by their prefix: the
// application's own API keys reach Config.Fallback on the same route,
// while an unknown, expired or revoked agent token is refused and never
// handed on. Runs on the public test kit, as an application would.
func TestMiddlewareFallback(t *testing.T) {
	fallback := make(chan string, 16)
	srv := servicetest.NewServer(t, nil, &servicetest.Options{Config: func(c *service.Config) {
		c.Fallback = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, ok := service.DelegationFrom(r.Context()); ok {
				t.Error("fallback request carries a delegation")
			}
			fallback <- r.Header.Get("Authorization")
			if r.Header.Get("Authorization") != "Bearer app-key-1" {
				http.Error(w, "app: unauthorized", http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusTeapot)
		})
	}})
	call := func(c *http.Client, auth string) (int, pass.Code) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var e pass.ErrorResponse
		if pass.Decode(body, &e) == nil {
			return resp.StatusCode, e.Error.Code
		}
		return resp.StatusCode, ""
	}

	agent, err := srv.Agent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := call(agent, ""); code != http.StatusOK {
		t.Fatalf("agent token: %d", code)
	}
	// Not ours: the application decides.
	for auth, want := range map[string]int{
		"Bearer app-key-1":         http.StatusTeapot,
		"Bearer app-key-2":         http.StatusUnauthorized,
		"Basic dXNlcjpwYXNz":       http.StatusUnauthorized,
		"":                         http.StatusUnauthorized,
		"Bearer " + "APT_notours1": http.StatusUnauthorized,
	} {
		if code, wire := call(srv.Client, auth); code != want || wire != "" {
			t.Errorf("%q: %d %q, want the fallback's %d", auth, code, wire, want)
		}
		if got := <-fallback; got != auth {
			t.Errorf("fallback saw %q, want %q", got, auth)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api", nil)
	req.Header.Set("Authorization", "Bearer app-key-1")
	if _, err := srv.Service.Check(req); !errors.Is(err, service.ErrNoCredential) {
		t.Errorf("Check(app key) = %v, want ErrNoCredential", err)
	}

	// Ours but unknown, revoked or expired: refused, never handed on.
	if code, wire := call(srv.Client, "Bearer "+service.TokenPrefix+"unknown"); code != http.StatusUnauthorized || wire != pass.CodeInvalidToken {
		t.Errorf("unknown: %d %q, want 401 invalid_token", code, wire)
	}
	req.Header.Set("Authorization", "Bearer "+service.TokenPrefix+"unknown")
	if _, err := srv.Service.Check(req); errors.Is(err, service.ErrNoCredential) || !errors.Is(err, pass.ErrUnauthenticated) {
		t.Errorf("Check(unknown apt_ token) = %v, want an unauthenticated *pass.Error", err)
	}
	auths, err := srv.Authority.Authorizations(t.Context(), authority.ListOptions{Now: srv.Now()})
	if err != nil || len(auths) != 1 {
		t.Fatalf("authorizations: %d, %v", len(auths), err)
	}
	if _, err := srv.Authority.Revoke(t.Context(), auths[0].MissionID, "human:admin@corp.test", "test"); err != nil {
		t.Fatal(err)
	}
	srv.Advance((30 * time.Second) + 1)
	if code, wire := call(agent, ""); code != http.StatusUnauthorized || wire != pass.CodeDelegationRevoked {
		t.Errorf("revoked: %d %q, want 401 delegation_revoked", code, wire)
	}
	expiring, err := srv.Agent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	srv.Advance(time.Hour + 1)
	if code, wire := call(expiring, ""); code != http.StatusUnauthorized || wire != pass.CodeInvalidToken {
		t.Errorf("expired: %d %q, want 401 invalid_token", code, wire)
	}
	select {
	case got := <-fallback:
		t.Errorf("an agent token reached the fallback: %q", got)
	default:
	}
}
