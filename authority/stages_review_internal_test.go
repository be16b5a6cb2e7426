package authority

import (
	"errors"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Review finding 5 (ST3; mission.md §3.2, §5.3 bounds): a Harness could
// move back and forth between stages without end (the stage endpoint is
// limited like Service calls, at thousands a second): every move added a
// history entry and a SET per authorization, so one mission grew its
// history without bound and flooded its Services' outboxes, where the
// per-Service bound then dropped other missions' narrowing events. Moves
// stop, like notes, at the history bound; a person's decision still
// applies.
func TestReviewStageMovesBoundedByHistory(t *testing.T) {
	now := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)
	r := &Request{
		MissionID: "msn_x", State: pass.MissionActive, Version: 7, HistoryCount: maxNotedHistory,
		Decision: &Evidence{Status: pass.StatusApproved, AuthorizationExpiresAt: now.Add(time.Hour), PassExpiresAt: now.Add(time.Hour)},
		Stages: []pass.Stage{
			{Name: "a", Scope: pass.Scope{"t:read"}, Gate: pass.GateAuto},
			{Name: "b", Scope: pass.Scope{"t:read", "t:list"}, Gate: pass.GateAuto},
		},
		Stage: "b", Scope: pass.Scope{"t:read", "t:list"},
	}
	move := func(op StageOp, to string) error {
		_, err := MissionChange{From: []pass.MissionState{pass.MissionActive}, By: "harness:h", Stage: &StageMove{Op: op, To: to}}.Apply(r, now)
		return err
	}
	if err := move(StageApply, "a"); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a move at the history bound: %v, want ErrStoreFull", err)
	}
	if r.Stage != "b" || r.Version != 7 {
		t.Errorf("the refused move changed the mission: stage %q version %d", r.Stage, r.Version)
	}
	r.HistoryCount = maxNotedHistory - 1
	if err := move(StageApply, "a"); err != nil || r.Stage != "a" {
		t.Fatalf("a move below the bound: %v, stage %q", err, r.Stage)
	}
}
