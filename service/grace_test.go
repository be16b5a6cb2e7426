package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/dpop"
	"github.com/agentpass-go/agentpass/service"
)

// Issue #14 finding 6, S-AUTHZ-7: UnreachableGrace is bounded. A grace
// over MaxUnreachableGrace (a year served every call of a five-minute
// Authority outage) is refused by New; the largest accepted one ends with
// the outage's sixth minute.
func TestUnreachableGraceBounded(t *testing.T) {
	keys, err := dpop.GenerateKeySet()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []time.Duration{(5 * time.Minute) + time.Nanosecond, 365 * 24 * time.Hour} {
		_, err := service.New(service.Config{Origin: appURL, Keys: keys, Scopes: testScopes, Discovery: newEnvlessDiscovery(t), UnreachableGrace: g})
		if err == nil || !strings.Contains(err.Error(), "UnreachableGrace") {
			t.Errorf("UnreachableGrace %v: New = %v, want an UnreachableGrace error", g, err)
		}
	}

	e := newEnv(t, func(c *service.Config) { c.UnreachableGrace = (5 * time.Minute) })
	tok, _ := e.issueToken(t)
	e.idp.setDown(true)
	// Checks are due after CheckInterval (30 s); the grace runs on top.
	e.clock.Advance(30*time.Second + (5 * time.Minute) - time.Second)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusOK {
		t.Errorf("within the grace: %d, want 200", r.status)
	}
	e.clock.Advance(2 * time.Second)
	if r := e.get("/api/tickets", bearer(tok)); r.status != http.StatusServiceUnavailable {
		t.Errorf("past the largest grace: %d, want 503", r.status)
	}
}
