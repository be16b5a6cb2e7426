package servicetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// testStagedDelegation: a delegation staged in place keeps its plan and
// current stage; a check of a newer version moves the stage, an older
// one does not.
func testStagedDelegation(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	d.CurrentScope = pass.Scope{"tickets:read"}
	d.Stage = "discover"
	d.Stages = []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
		{Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GateHuman}}
	c := credential(d.AuthorizationID, service.KindBearer)
	if err := s.Redeem(ctx, d, c, nil); err != nil {
		t.Fatal(err)
	}
	_, got, err := s.Credential(ctx, c.Hash, base)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(d.Stages, got.Stages); diff != "" || got.Stage != "discover" {
		t.Fatalf("stored plan (-want +got):\n%s stage %q", diff, got.Stage)
	}
	for _, step := range []struct {
		name    string
		c       service.MissionCheck
		applied bool
		stage   string
		scope   pass.Scope
	}{
		{"forward at v4", service.MissionCheck{At: base.Add(time.Minute), State: pass.MissionActive, Version: 4, Stage: "respond",
			Scope: pass.Scope{"tickets:read", "tickets:write"}}, true, "respond", pass.Scope{"tickets:read", "tickets:write"}},
		{"stale v3 names the old stage", service.MissionCheck{At: base.Add(2 * time.Minute), State: pass.MissionActive, Version: 3, Stage: "discover",
			Scope: pass.Scope{"tickets:read"}}, false, "respond", pass.Scope{"tickets:read"}},
		{"no stage named keeps it", service.MissionCheck{At: base.Add(3 * time.Minute), State: pass.MissionActive, Version: 5,
			Scope: pass.Scope{"tickets:read"}}, true, "respond", pass.Scope{"tickets:read"}},
	} {
		applied, err := s.RecordMissionCheck(ctx, d.AuthorizationID, step.c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Delegation(ctx, d.AuthorizationID)
		if err != nil {
			t.Fatal(err)
		}
		if applied != step.applied || got.Stage != step.stage || !cmp.Equal(got.CurrentScope, step.scope) || len(got.Stages) != 2 {
			t.Errorf("%s: applied %v stage %q scope %v stages %d", step.name, applied, got.Stage, got.CurrentScope, len(got.Stages))
		}
	}
}
