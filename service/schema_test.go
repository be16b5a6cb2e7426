package service_test

import (
	"strings"
	"testing"

	"github.com/agentpass-go/agentpass/internal/spectest"
)

// validJSON checks a body against schemas/<name> (properties/<sub>).
func validJSON(t *testing.T, body []byte, name, sub string) {
	t.Helper()
	spectest.Validate(t, body, name, sub)
}

// validError checks an error body (X-ERR-1, X-ERR-2).
func validError(t *testing.T, r *response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	validJSON(t, r.body, "error-response.schema.json", "")
}
