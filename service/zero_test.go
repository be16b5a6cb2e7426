package service_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// A zero Service never panics and never lets a request through: the
// handler and the middleware answer structured errors (#14 finding 8).
func TestZeroService(t *testing.T) {
	var s service.Service
	req := httptest.NewRequest(http.MethodGet, "/agentpass/configuration", nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || pass.ErrorFromResponse(rec.Code, rec.Body.Bytes()).Code != pass.CodeInternal {
		t.Errorf("ServeHTTP on a zero Service = %d %s, want a structured 500", rec.Code, rec.Body)
	}
	reached := false
	rec = httptest.NewRecorder()
	api := httptest.NewRequest(http.MethodGet, "/api", nil)
	api.Header.Set("Authorization", "Bearer apt_x")
	s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true })).ServeHTTP(rec, api)
	if reached || rec.Code < 400 {
		t.Errorf("Middleware of a zero Service let a request through (%d)", rec.Code)
	}
	if d, err := s.Check(api); err == nil || d != nil {
		t.Errorf("Check on a zero Service = %v, %v; want an error", d, err)
	}
	if err := s.CloseAuthorization(context.Background(), "x", pass.CloseRevoke, "r"); err == nil {
		t.Error("CloseAuthorization on a zero Service succeeded")
	}
	_ = s.Origin()
	_ = s.ConfigurationURL()
	_ = s.Configuration()
}

func TestNewRefusesEmptyKeySet(t *testing.T) {
	_, err := service.New(service.Config{Origin: "https://svc.example", Keys: &dpop.KeySet{},
		Scopes: []pass.ScopeInfo{{Name: "a"}}})
	if err == nil {
		t.Fatal("New accepted an empty KeySet")
	}
	if !errors.Is(err, service.ErrInvalidConfig) {
		t.Errorf("error %v does not match ErrInvalidConfig", err)
	}
}
