package authority_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
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

// Review finding 4 (mission.md §2.5 and §9 "scope_proposal is cut": no
// oracle on a user's entitlements): the status proposal names only the
// scopes the Harness requested, but the Harness's own mission read showed
// the whole available list (the "requested" history entry), the whole
// proposal (the "proposed" entry) and, while pending, the proposed plan's
// stages. A Harness could learn every scope the user holds at the Service
// by filing requests it never means to use.
func TestReviewHarnessMissionReadNoEntitlementOracle(t *testing.T) {
	t.Parallel()
	pending := compileEnv(t, func(c *authority.Config) { c.Approver = nil })
	approving := compileEnv(t)
	for _, tc := range []struct {
		name  string
		e     *env
		scope []string
		want  pass.Status
		// never: scopes neither requested nor granted.
		never []string
	}{
		{"pending over-scope", pending, []string{"tickets:delete", "billing:read"}, pass.StatusPending, []string{"tickets:read", "tickets:comment", "admin"}},
		{"pending wildcard", pending, []string{"*"}, pass.StatusPending, []string{"tickets:read", "tickets:comment", "tickets:delete", "admin"}},
		{"pending nothing requested", pending, nil, pass.StatusPending, []string{"tickets:read", "tickets:comment", "tickets:delete", "admin"}},
		{"approved within proposal", approving, []string{"tickets:read"}, pass.StatusApproved, []string{"tickets:comment", "tickets:delete", "admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			e.t = t
			h := e.newHarness()
			h.req.Harness.Extensions = append(h.req.Harness.Extensions, pass.ExtStages)
			r, st := e.issueScope(h, tc.scope...)
			wantStatus(t, r, st, tc.want)
			raw, m := e.readAsHarness(h, st.Mission.ID)
			if m == nil {
				t.Fatalf("read: %d %s", raw.status, raw.body)
			}
			for _, s := range tc.never {
				if bytes.Contains(raw.body, []byte(`"`+s+`"`)) {
					t.Errorf("the Harness view names %q, neither requested nor granted: %s", s, raw.body)
				}
			}
			// The operator still sees everything.
			full, err := e.auth.Mission(ctx, st.Mission.ID)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(full); !bytes.Contains(b, []byte(`"admin"`)) {
				t.Errorf("the operator view lost the available list: %s", b)
			}
		})
	}
}

// inflatingStore reports every mission's history as full once inflate is
// set, as after a long run of moves.
type inflatingStore struct {
	authority.Store
	inflate atomic.Bool
}

func (s *inflatingStore) Request(ctx context.Context, id string) (*authority.Request, error) {
	r, err := s.Store.Request(ctx, id)
	if err == nil && s.inflate.Load() {
		r.HistoryCount = 2000 // the history bound of missions
	}
	return r, err
}

// Review finding 7 (follows 5): at the history bound the store refuses a
// move, but the endpoint asked the Approver first, so a Harness could keep
// driving Approver calls (possibly a remote policy engine) with moves
// that can never apply.
func TestReviewStagePolicyNotAskedAtHistoryBound(t *testing.T) {
	t.Parallel()
	st := &inflatingStore{Store: authority.NewMemoryStore()}
	var asked atomic.Int32
	e := stagedEnv(t, func(c *authority.Config) {
		c.Store = st
		c.Approver = authority.ApproverFunc(func(_ context.Context, r *authority.Request) (authority.Decision, error) {
			if r.Stage != "" && r.Decision == nil && r.AvailableScope.Allows("tickets:write") {
				asked.Add(1)
			}
			return authority.Decision{Outcome: authority.Approve}, nil
		})
	})
	h := e.stagedHarness(discover, pass.Stage{Name: "respond", Scope: respond.Scope, Gate: pass.GatePolicy})
	id, _ := e.redeemed(h, e.svc)
	st.inflate.Store(true)
	if r, _ := e.stage(h, id, "respond", 0); r.status == http.StatusOK || r.status == http.StatusAccepted {
		t.Fatalf("a move at the history bound: %d %s", r.status, r.body)
	}
	if n := asked.Load(); n != 0 {
		t.Errorf("the Approver was asked %d times for a move that cannot apply", n)
	}
}
