package authority

import (
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// Review O9, A2 and amendment 10: what an ancestor's stage move or
// narrowing does to a descendant. A descendant is changed (version,
// history entry) exactly when its effective scope, its own within every
// ancestor's current scope, changes; a stage move never touches its own
// scope, and an operator's narrowing takes from it only what the
// narrowing removes, not what the ancestor's current stage leaves out.
func TestCascadeEffectiveScopeO9(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r, w := "tickets:read", "tickets:write"
	plan := []pass.Stage{{Name: "discover", Scope: pass.Scope{r}}, {Name: "respond", Scope: pass.Scope{r, w}}}
	mission := func(id, parent string, scope ...string) *Request {
		return &Request{MissionID: id, ParentMissionID: parent, State: pass.MissionActive, Version: 3, Scope: scope}
	}
	staged := func(stage string, scope ...string) *Request {
		m := mission("msn_root", "", scope...)
		m.Stages, m.Stage = plan, stage
		return m
	}
	back := MissionChange{From: []pass.MissionState{pass.MissionActive}, By: "harness:h", Stage: &StageMove{Op: StageApply, To: "discover"}}
	fwd := MissionChange{From: []pass.MissionState{pass.MissionActive}, By: "harness:h", Stage: &StageMove{Op: StageApply, To: "respond"}}
	narrow := MissionChange{From: []pass.MissionState{pass.MissionActive}, By: "human:op", Scope: pass.Scope{w}}
	pending := mission("msn_c", "msn_root", r, w)
	pending.State = pass.MissionPending
	tests := []struct {
		name string
		c    MissionChange
		// prior and after are the root before and after the change; mid,
		// when set, sits between it and d.
		prior, after, mid, d *Request
		changed              bool
		wantType             string
		wantOwn, wantEff     []string
	}{
		{"back move narrows a child", back, staged("respond", r, w), staged("discover", r), nil, mission("msn_c", "msn_root", r, w),
			true, "stage_changed", []string{r, w}, []string{r}},
		{"back move within the child's own scope changes nothing", back, staged("respond", r, w), staged("discover", r), nil, mission("msn_c", "msn_root", r),
			false, "", []string{r}, nil},
		{"forward move widens back to the grant", fwd, staged("discover", r), staged("respond", r, w), nil, mission("msn_c", "msn_root", r, w),
			true, "stage_changed", []string{r, w}, []string{r, w}},
		{"an intermediate that already bounds the grandchild hides the move", back, staged("respond", r, w), staged("discover", r),
			mission("msn_mid", "msn_root", r), mission("msn_c", "msn_mid", r, w), false, "", []string{r, w}, nil},
		{"grandchild narrowed through the chain", back, staged("respond", r, w), staged("discover", r),
			mission("msn_mid", "msn_root", r, w), mission("msn_c", "msn_mid", w), true, "stage_changed", []string{w}, []string{}},
		{"narrowing at an early stage keeps the later stage's grant", narrow, staged("discover", r), staged("discover"), nil, mission("msn_c", "msn_root", r, w),
			true, "scope_narrowed", []string{w}, []string{}},
		{"pending child is left to its approval", back, staged("respond", r, w), staged("discover", r), nil, pending,
			false, "", []string{r, w}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ancestors := []*Request{tt.prior}
			if tt.mid != nil {
				ancestors = []*Request{tt.mid, tt.prior}
			}
			v := tt.d.Version
			rec, changed, err := tt.c.Cascade(tt.after, tt.d, ancestors, now)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed || (tt.d.Version == v+1) != tt.changed {
				t.Fatalf("changed %v version %d, want changed %v from %d", changed, tt.d.Version, tt.changed, v)
			}
			if !sameScope(tt.d.Scope, tt.wantOwn) {
				t.Errorf("own scope %v, want %v", tt.d.Scope, tt.wantOwn)
			}
			if !changed {
				return
			}
			e, err := missionlog.Decode(rec.Body, rec.Hash)
			if err != nil {
				t.Fatal(err)
			}
			eff, _ := e.Details["effective_scope"].([]any)
			var got pass.Scope
			for _, s := range eff {
				got = append(got, s.(string))
			}
			if e.Type != tt.wantType || e.Details["ancestor"] != "msn_root" || !sameScope(got, tt.wantEff) || e.Version != tt.d.Version {
				t.Errorf("entry %s %v v%d, want %s by msn_root with effective scope %v", e.Type, e.Details, e.Version, tt.wantType, tt.wantEff)
			}
		})
	}

	// A store that hands over a chain not reaching the root fails the
	// change rather than guess the descendant's scope.
	_, _, err := back.Cascade(staged("discover", r), mission("msn_c", "msn_root", r, w), nil, now)
	if err == nil {
		t.Error("Cascade without the chain succeeded")
	}
}
