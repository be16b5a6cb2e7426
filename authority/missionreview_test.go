package authority_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/testnet/deploy"
	"github.com/agentpass-go/agentpass/pass"
)

// Security review (mission layer, Medium): OnObservation gets the record
// without its history (reading it per observation made reports cost the
// square of the history's length), and a full history does not switch the
// policy off: once MaxNotedHistory entries are kept, observations are no
// longer noted, but OnObservation still sees them and its Suspend applies.
func TestObservationPolicyWhenHistoryFull(t *testing.T) {
	var enforce atomic.Bool
	var calls atomic.Int32
	var maxEvents atomic.Int32
	e := newEnv(t, approveAll, func(c *authority.Config) {
		c.RateLimits.Services, c.RateLimits.Missions = deploy.Unlimited(), deploy.Unlimited()
		c.OnObservation = func(_ context.Context, m *pass.MissionRecord, o pass.Observation) authority.ObservationAction {
			calls.Add(1)
			if n := int32(len(m.History.Events)); n > maxEvents.Load() {
				maxEvents.Store(n)
			}
			if enforce.Load() {
				return authority.ObserveSuspend
			}
			return authority.ObserveRecord
		}
	})
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	at := e.clock.Now()
	var batch []pass.Observation
	for i := range pass.MaxObservations {
		batch = append(batch, pass.Observation{Kind: pass.ObservationScopeDenied, Scope: fmt.Sprintf("s%d", i), Count: 1, FirstAt: at, LastAt: at})
	}
	for i := 0; i < 2000/pass.MaxObservations+1; i++ {
		if r := e.report(e.svc, azID, batch...); r.status != http.StatusNoContent {
			t.Fatalf("report %d: %d %s", i, r.status, r.body)
		}
	}
	if maxEvents.Load() > 0 {
		t.Errorf("OnObservation got %d history events; its doc says 'without history entries'", maxEvents.Load())
	}
	// Now the policy would suspend at the next observation.
	enforce.Store(true)
	before := calls.Load()
	r := e.report(e.svc, azID, batch[0])
	m, err := e.auth.Mission(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() == before || m.State != pass.MissionSuspended {
		t.Errorf("history full (%d entries): report answered %d, OnObservation calls %d->%d, mission state %s; the suspend policy was bypassed",
			m.History.Count, r.status, before, calls.Load(), m.State)
	}
}

// Security review (mission layer, Low): an operator named without the
// "human:" prefix (the operator API takes free text) must not reach the
// Harness view when DiscloseApprover is false.
func TestHarnessViewHidesOperatorNames(t *testing.T) {
	e := newEnv(t, approveAll)
	h := e.newHarness()
	mid, _ := e.redeemed(h, e.svc)
	if _, err := e.auth.Suspend(ctx, mid, "lee@corp.example", "looks odd"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Revoke(ctx, mid, "lee@corp.example", "done"); err != nil {
		t.Fatal(err)
	}
	r, m := e.readAsHarness(h, mid)
	if m == nil {
		t.Fatalf("read: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "lee@corp.example") {
		t.Errorf("Harness view (DiscloseApprover=false) names the operator: ended.by=%q; body excerpt contains lee@corp.example", m.Ended.By)
	}
}

// Security review (mission layer, Low): reports of the redeeming Service
// cannot push the Harness view past the 64 KiB every peer reads. Scope
// and stage names must be scope tokens, and the view drops its oldest
// history entries until it fits.
func TestHarnessViewFitsBodyBound(t *testing.T) {
	e := newEnv(t, approveAll, func(c *authority.Config) {
		c.RateLimits.Services, c.RateLimits.Missions = deploy.Unlimited(), deploy.Unlimited()
	})
	h := e.newHarness()
	mid, azID := e.redeemed(h, e.svc)
	at := e.clock.Now()
	bad := pass.Observation{Kind: pass.ObservationScopeDenied, Scope: "a b<\"", Count: 1, FirstAt: at, LastAt: at}
	if r := e.report(e.svc, azID, bad); r.status != http.StatusBadRequest {
		t.Errorf("a scope that is no scope token: %d %s, want 400", r.status, r.body)
	}
	var batch []pass.Observation
	for i := range pass.MaxObservations {
		s := fmt.Sprintf("%03d", i) + strings.Repeat("<", 253) // 256 bytes, each '<' encoded as \u003c
		batch = append(batch, pass.Observation{Kind: pass.ObservationStageScopeExceeded, Scope: s, Stage: s, Count: 1 << 52, FirstAt: at, LastAt: at})
	}
	for i := 0; i < 70; i += 10 {
		if r := e.report(e.svc, azID, batch[i%50:i%50+10]...); r.status != http.StatusNoContent {
			t.Fatalf("report: %d %s", r.status, r.body)
		}
	}
	r := e.postProof("/missions/read", pass.MissionReadRequest{MissionID: mid},
		e.missionProof(h.key, h.req.Harness.ID, "/missions/read", mid, 0))
	if r.status != http.StatusOK || len(r.body) > pass.MaxDocumentSize {
		t.Fatalf("Harness view: %d, %d bytes (limit %d)", r.status, len(r.body), pass.MaxDocumentSize)
	}
	var v pass.MissionResponse
	if err := pass.Decode(r.body, &v); err != nil || len(v.Mission.History.Events) == 0 || v.Mission.History.Count <= int64(len(v.Mission.History.Events)) {
		t.Errorf("trimmed view: %v; %d of %d entries", err, len(v.Mission.History.Events), v.Mission.History.Count)
	}
}
