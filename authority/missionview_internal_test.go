package authority

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// The three views of §1.2 follow the member table: the Service view drops
// ended.by, the approver, the reason, children and events and shows only
// its own authorizations; the Harness view hides human approver ids unless
// disclosed.
func TestMissionViews(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	e := Evidence{Status: pass.StatusApproved, DecidedBy: "human:lee@corp.example", DecidedAt: t0, Reason: "ok",
		Scope: pass.Scope{"tickets:read"}, PassExpiresAt: t0.Add(5 * time.Minute), AuthorizationExpiresAt: t0.Add(time.Hour)}
	r := &Request{MissionID: "msn_x", IDHash: "h", Status: pass.StatusApproved, CreatedAt: t0, ExpiresAt: t0.Add(10 * time.Minute),
		Service: "https://api.example.com", User: "alex@corp.example", HarnessID: "cc", AgentID: "cc", TaskID: "t",
		TaskDescription: "triage", Decision: &e, ParentMissionID: "msn_parent"}
	if _, err := r.StartMission(); err != nil {
		t.Fatal(err)
	}
	c := MissionChange{From: liveMission, To: pass.MissionCompleted, Cause: pass.CauseHarness, By: "human:lee@corp.example", Reason: "done"}
	if _, err := c.Apply(r, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	auths := []*Authorization{{ID: "authz_a", Service: "https://api.example.com", CreatedAt: t0, State: pass.DelegationCompleted},
		{ID: "authz_b", Service: "https://other.example", CreatedAt: t0, State: pass.DelegationCompleted}}
	hist := []pass.HistoryEntry{{Seq: 1, Type: "approved", By: "human:lee@corp.example"}}
	for _, tc := range []struct {
		name     string
		v        missionView
		disclose bool
		has      []string
		lacks    []string
	}{
		{"operator", viewOperator, false, []string{`"decided_by":"human:lee@corp.example"`, `"by":"human:lee@corp.example"`, `"authz_b"`, `"children":["msn_k"]`, `"reason":"ok"`}, nil},
		{"service", viewService, false, []string{`"method":"human"`, `"authz_a"`, `"parent":"msn_parent"`, `"depth":1`, `"cause":"harness"`},
			[]string{"decided_by", "authz_b", `"children"`, `"events"`, `"by":`, `"reason":"ok"`, `"outcome"`}},
		{"harness", viewHarness, false, []string{`"authz_b"`, `"by":"human"`, `"outcome":"approved"`}, []string{"decided_by", "lee@corp"}},
		{"harness disclosed", viewHarness, true, []string{`"decided_by":"human:lee@corp.example"`, `"by":"human:lee@corp.example"`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := renderMission("https://idp.corp.example", r, r.State, 1, []string{"msn_k"}, auths, hist, tc.v, "https://api.example.com", tc.disclose)
			resp := pass.MissionResponse{Mission: *m}
			if err := resp.Validate(); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			for _, s := range tc.has {
				if !strings.Contains(string(b), s) {
					t.Errorf("lacks %s:\n%s", s, b)
				}
			}
			for _, s := range tc.lacks {
				if strings.Contains(string(b), s) {
					t.Errorf("shows %s:\n%s", s, b)
				}
			}
			if m.State != pass.MissionCompleted || m.Version != 3 || m.History.Count != 3 || m.History.Head != r.HistoryHead {
				t.Errorf("identity: %s v%d count %d", m.State, m.Version, m.History.Count)
			}
		})
	}
}
