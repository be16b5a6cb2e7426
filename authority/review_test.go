package authority_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// interleavingStore lets a test commit another change between the moment
// an endpoint read a mission and the moment it transitions it: before the
// first stage move whose target is to, it runs between once.
type interleavingStore struct {
	authority.Store
	to      string
	once    sync.Once
	between func(ctx context.Context, s authority.Store, missionID string)
}

func (s *interleavingStore) TransitionMission(ctx context.Context, missionID string, c authority.MissionChange, now time.Time) (*authority.Request, error) {
	if c.Stage != nil && c.Stage.To == s.to {
		s.once.Do(func() { s.between(ctx, s.Store, missionID) })
	}
	return s.Store.TransitionMission(ctx, missionID, c, now)
}

// Review finding 1 (ST3, ST5; mission.md §3.2): the stage endpoint chose
// the gate from the mission it read, but the store applied the move to the
// mission as stored. A move to a stage two steps ahead is not gated (it is
// "not next" when read); if a concurrent move to the next stage commits in
// between, the store sees it as next and applied it, skipping its human
// gate.
func TestReviewStageSkipRaceKeepsHumanGate(t *testing.T) {
	t.Parallel()
	more := pass.Stage{Name: "more", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto}
	st := &interleavingStore{Store: authority.NewMemoryStore(), to: "respond"}
	e := stagedEnv(t, func(c *authority.Config) { c.Store = st })
	h := e.stagedHarness(discover, more, respond)
	id, authz := e.redeemed(h, e.svc)
	st.between = func(ctx context.Context, s authority.Store, missionID string) {
		// The Harness's other request, to the next stage, commits first.
		if _, err := s.TransitionMission(ctx, missionID, authority.MissionChange{
			From: []pass.MissionState{pass.MissionActive}, By: "harness:" + harnessID,
			Stage: &authority.StageMove{Op: authority.StageApply, To: "more"},
		}, e.clock.Now()); err != nil {
			t.Errorf("concurrent move: %v", err)
		}
	}
	r, _ := e.stage(h, id, "respond", 0)
	if r.status == http.StatusOK {
		t.Fatalf("a move read as two steps ahead entered the human-gated stage: %d %s", r.status, r.body)
	}
	if _, c := e.check(e.svc, authz); c == nil || c.Scope.Allows("tickets:write") {
		t.Fatalf("check after the race: %+v, want no tickets:write", c)
	}
	_, m := e.readAsHarness(h, id)
	if m.AuthorityModel.Stage != "more" {
		t.Errorf("stage %q, want more", m.AuthorityModel.Stage)
	}
}
