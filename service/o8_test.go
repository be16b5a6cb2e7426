package service_test

import (
	"net/http"
	"testing"

	"github.com/agentpass-go/agentpass/pass"
)

// TestO8AuthorizationIDCollision: security review item O8. Authority
// identifiers are not tied to configuration URLs, and authorization ids are
// chosen by each Authority, so two Authorities can name different
// delegations alike. The Service keeps one delegation per authorization id:
// the second Authority's redemption is refused, burns nothing of the first,
// and the first delegation keeps working and stays bound to its own
// Authority.
func TestO8AuthorizationIDCollision(t *testing.T) {
	e := newEnv(t, nil)
	const shared = "authz-shared"
	first := validation("pat@personal.test", pass.BearerToken)
	first.AuthorizationID = shared
	r := e.redeem(pass.BearerToken, redemption(e.fed, pass.BearerToken, "pat@personal.test", e.fed.issue(first)), nil)
	if r.status != http.StatusOK {
		t.Fatalf("first redemption: %d %s", r.status, r.body)
	}
	var tok pass.BearerTokenResponse
	r.decode(t, &tok)

	second := validation("mallory@other.test", pass.BearerToken, "tickets:read", "admin")
	second.AuthorizationID = shared
	r = e.redeem(pass.BearerToken, redemption(e.fed2, pass.BearerToken, "mallory@other.test", e.fed2.issue(second)), nil)
	if r.status == http.StatusOK {
		t.Fatalf("a second Authority's delegation under the same authorization id was accepted: %s", r.body)
	}
	var wire struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.decode(t, &wire)
	if r.status != http.StatusConflict || string(wire.Error.Code) != string(pass.CodeAgentPassConsumed) {
		t.Errorf("collision answered %d %s, want 409 %s", r.status, r.body, pass.CodeAgentPassConsumed)
	}

	got := e.get("/api/tickets", bearer(tok.BearerToken))
	if got.status != http.StatusOK {
		t.Fatalf("first delegation after the collision: %d %s", got.status, got.body)
	}
	var who struct{ User string }
	got.decode(t, &who)
	if who.User != "pat@personal.test" {
		t.Errorf("first delegation now acts for %q", who.User)
	}
	d, err := e.store.Delegation(t.Context(), shared)
	if err != nil {
		t.Fatal(err)
	}
	if d.Authority != e.fed.origin || d.ConfigurationURL != e.fed.configURL {
		t.Errorf("delegation bound to %s (%s), want %s (%s)", d.Authority, d.ConfigurationURL, e.fed.origin, e.fed.configURL)
	}
}
