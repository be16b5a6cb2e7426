package authority_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
)

// A zero Authority never panics: every operator call fails with
// ErrInvalidConfig and the handler answers a structured 500 (#14 finding 8).
func TestZeroAuthority(t *testing.T) {
	ctx := context.Background()
	var a authority.Authority
	calls := map[string]func() error{
		"Request":        func() error { _, err := a.Request(ctx, "x"); return err },
		"Pending":        func() error { _, err := a.Pending(ctx, authority.ListOptions{}); return err },
		"Authorizations": func() error { _, err := a.Authorizations(ctx, authority.ListOptions{}); return err },
		"Authorization":  func() error { _, err := a.Authorization(ctx, "x"); return err },
		"Decide":         func() error { _, err := a.Decide(ctx, "x", authority.Decision{Outcome: authority.Deny}); return err },
		"Revoke":         func() error { _, err := a.Revoke(ctx, "x", "op", "r"); return err },
		"Suspend":        func() error { _, err := a.Suspend(ctx, "x", "op", "r"); return err },
		"Resume":         func() error { _, err := a.Resume(ctx, "x", "op"); return err },
		"NarrowScope":    func() error { _, err := a.NarrowScope(ctx, "x", "op", pass.Scope{"a"}); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, authority.ErrInvalidConfig) {
			t.Errorf("%s on a zero Authority = %v, want ErrInvalidConfig", name, err)
		}
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/agentpass-authority", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("ServeHTTP on a zero Authority = %d, want 500", rec.Code)
	}
	if pe := pass.ErrorFromResponse(rec.Code, rec.Body.Bytes()); pe.Code != pass.CodeInternal {
		t.Errorf("ServeHTTP body = %s, want a structured %s error", rec.Body, pass.CodeInternal)
	}
	_ = a.Identifier()
	_ = a.Configuration()
	_ = a.ConfigurationURL()
	_ = a.StatusURL("x")
}

// New refuses a KeySet with no current key: its JWKS would be empty and
// nothing could be signed.
func TestNewRefusesEmptyKeySet(t *testing.T) {
	_, err := authority.New(authority.Config{Identifier: "https://idp.example", TrustMode: pass.TrustEnterprise, Keys: &dpop.KeySet{}})
	if !errors.Is(err, authority.ErrInvalidConfig) {
		t.Fatalf("New with an empty KeySet = %v, want ErrInvalidConfig", err)
	}
}
