package service_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/internal/secevent"
	"github.com/agentpass-go/agentpass/pass"
)

// Review O9 and A2 at the receiver: a sub-agent's delegation hears of an
// ancestor's stage moves as token-claims-change SETs carrying its
// effective scope. A narrower one refuses the next request at once, with
// no check; a wider one (the ancestor moved forward again) is accepted but
// widens nothing by itself: it marks the delegation stale, the next
// request runs one check, and only the check's answer widens.
func TestEventClaimsChangeBothWaysO9(t *testing.T) {
	e := pushEnv(t, nil)
	tok, id := e.missionToken(t, mission("msn_c", pass.MissionActive, 5), "tickets:read", "admin")
	claims := func(v int64, scope string) string {
		s := e.idp.set(id, secevent.TokenClaimsChange, msn("msn_c", pass.MissionActive, v))
		s.Event.Claims = &secevent.Claims{Scope: scope}
		return e.idp.signSET(t, s, nil)
	}

	e.wantPush(t, "narrower", claims(6, "admin"), http.StatusAccepted, "")
	e.wantStatus(t, "after the narrowing", "/api/tickets", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	e.wantStatus(t, "within the narrowing", "/api/admin", tok, http.StatusOK, "")
	if n := e.idp.checkCalls.Load(); n != 0 {
		t.Fatalf("%d checks after a narrowing, want 0", n)
	}

	e.wantPush(t, "wider", claims(7, "tickets:read admin"), http.StatusAccepted, "")
	d, err := e.store.Delegation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Stale || d.MissionVersion != 7 || !cmp.Equal(d.CurrentScope, pass.Scope{"admin"}) {
		t.Fatalf("after the wider claims: stale %v v%d scope %v, want stale v7 [admin]", d.Stale, d.MissionVersion, d.CurrentScope)
	}
	// The Authority does not confirm: the request stays refused.
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"admin"}, Mission: mission("msn_c", pass.MissionActive, 7)})
	e.wantStatus(t, "wider, not confirmed", "/api/tickets", tok, http.StatusForbidden, pass.CodeInsufficientScope)
	if n := e.idp.checkCalls.Load(); n != 1 {
		t.Fatalf("%d checks after the wider claims, want 1", n)
	}
	// It confirms at the next check: only now is the scope wider.
	e.idp.setAuthz(id, &pass.AuthorizationCheckResponse{Scope: pass.Scope{"tickets:read", "admin"}, Mission: mission("msn_c", pass.MissionActive, 7)})
	e.clock.Advance(31 * time.Second)
	e.wantStatus(t, "wider, confirmed", "/api/tickets", tok, http.StatusOK, "")
	if n := e.idp.checkCalls.Load(); n != 2 {
		t.Errorf("%d checks, want 2", n)
	}
}
