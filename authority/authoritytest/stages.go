package authoritytest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// The staged-execution part of the conformance suite: a plan stored with
// its request, fixed at approval, and stage moves decided atomically
// against the stored mission.

var stageTests = []struct {
	name string
	fn   func(t *testing.T, s authority.Store)
}{
	{"StagePlanApproval", testStagePlanApproval},
	{"StageMoves", testStageMoves},
	{"StageRace", func(t *testing.T, s authority.Store) { RaceStages(t, s, s) }},
}

// stagePlan is a two-stage plan: read first, then read and write.
func stagePlan() []pass.Stage {
	return []pass.Stage{
		{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
		{Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}, Gate: pass.GateHuman},
	}
}

// stagedRedeemed stores a pending request with plan, approves both scopes
// and consumes its pass for svcA as authorization id.
func stagedRedeemed(t *testing.T, s authority.Store, id string, plan []pass.Stage) *authority.Request {
	t.Helper()
	r := NewRequest("req-" + id)
	r.Stages = plan
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	e := Approval("tickets:read", "tickets:write")
	e.PassExpiresAt = T0.Add(5 * time.Minute)
	if _, err := DecideRequest(s, r.MissionID, e, T0); err != nil {
		t.Fatal(err)
	}
	cur, _ := s.Request(ctx, r.MissionID)
	cur.PassHash = "hash-" + id
	if _, err := s.RotatePass(ctx, r.MissionID, "hash-"+id, T0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePass(ctx, "hash-"+id, svcA, id, T0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, r.MissionID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func move(op authority.StageOp, to string, version int64) authority.MissionChange {
	return authority.MissionChange{From: []pass.MissionState{pass.MissionActive}, By: "harness:claude-code", Reason: "test",
		Stage: &authority.StageMove{Op: op, To: to, ExpectedVersion: version, TTL: 10 * time.Minute}}
}

// A plan round-trips while pending, and approval fixes it: stages narrowed
// to the grant, the first stage current, the ceiling their union.
func testStagePlanApproval(t *testing.T, s authority.Store) {
	r := NewRequest("plan")
	r.Stages = stagePlan()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Request(ctx, r.MissionID)
	if d := cmp.Diff(stagePlan(), got.Stages); d != "" || got.Stage != "" {
		t.Fatalf("pending plan (-want +got):\n%s stage %q", d, got.Stage)
	}
	// The approver grants read only: respond narrows to read, the grant
	// is the plan's union.
	if _, err := DecideRequest(s, r.MissionID, Approval("tickets:read"), T0); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Request(ctx, r.MissionID)
	want := []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateAuto},
		{Name: "respond", Scope: pass.Scope{"tickets:read"}, Gate: pass.GateHuman}}
	if d := cmp.Diff(want, got.Stages); d != "" {
		t.Errorf("approved plan (-want +got):\n%s", d)
	}
	if got.Stage != "discover" || !slicesEqual(got.Scope, pass.Scope{"tickets:read"}) || !slicesEqual(got.Ceiling(), pass.Scope{"tickets:read"}) {
		t.Errorf("after approval: stage %q scope %v ceiling %v", got.Stage, got.Scope, got.Ceiling())
	}
}

func slicesEqual(a, b pass.Scope) bool { return a.SubsetOf(b) && b.SubsetOf(a) }

// Every stage move with its preconditions; the authorization follows the
// current stage's scope.
func testStageMoves(t *testing.T, s authority.Store) {
	r := stagedRedeemed(t, s, "moves", stagePlan())
	id := r.MissionID
	now := T0.Add(time.Minute)
	v := r.Version
	if r.Stage != "discover" || len(r.Scope) != 1 {
		t.Fatalf("redeemed at stage %q scope %v", r.Stage, r.Scope)
	}
	code := func(op string, err error, want pass.Code) {
		t.Helper()
		if !errors.Is(err, pass.Fail(want, "")) {
			t.Errorf("%s: %v, want %s", op, err, want)
		}
	}
	_, err := s.TransitionMission(ctx, id, move(authority.StageApply, "respond", v-1), now)
	code("stale", err, pass.CodeStaleVersion)
	_, err = s.TransitionMission(ctx, id, move(authority.StageApply, "nope", 0), now)
	code("unknown", err, pass.CodeStageUnknown)
	_, err = s.TransitionMission(ctx, id, move(authority.StageApply, "discover", 0), now)
	code("same stage", err, pass.CodeStageNotNext)
	if _, err := s.TransitionMission(ctx, id, move(authority.StageApprove, "", 0), now); !errors.Is(err, authority.ErrState) {
		t.Errorf("approve with nothing pending: %v", err)
	}

	// Forward, applied: version +1, the authorization holds both scopes.
	if _, err := s.TransitionMission(ctx, id, move(authority.StageApply, "respond", v), now); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Request(ctx, id)
	a, _ := s.Authorization(ctx, "moves")
	if got.Stage != "respond" || got.Version != v+1 || len(a.Scope) != 2 {
		t.Errorf("after forward: stage %q v%d authorization scope %v", got.Stage, got.Version, a.Scope)
	}
	// Back, at once.
	if _, err := s.TransitionMission(ctx, id, move(authority.StageApply, "discover", 0), now); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Authorization(ctx, "moves"); len(a.Scope) != 1 {
		t.Errorf("after back: authorization scope %v", a.Scope)
	}
	// Pending: no version change, a second request is refused, approval
	// applies it.
	before, _ := s.Request(ctx, id)
	if _, err := s.TransitionMission(ctx, id, move(authority.StagePend, "respond", 0), now); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Request(ctx, id)
	if got.PendingStage == nil || got.PendingStage.To != "respond" || !got.PendingStage.ExpiresAt.Equal(now.Add(10*time.Minute)) || got.Version != before.Version {
		t.Fatalf("pending: %+v v%d (was v%d)", got.PendingStage, got.Version, before.Version)
	}
	_, err = s.TransitionMission(ctx, id, move(authority.StagePend, "respond", 0), now)
	code("second while pending", err, pass.CodeTransitionPending)
	approve := move(authority.StageApprove, "", 0)
	approve.By = "human:lee"
	if _, err := s.TransitionMission(ctx, id, approve, now); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Request(ctx, id)
	if got.Stage != "respond" || got.PendingStage != nil || got.Version != before.Version+1 {
		t.Errorf("approved: stage %q pending %+v v%d", got.Stage, got.PendingStage, got.Version)
	}
	// Back, pend, deny: the stage stays.
	if _, err := s.TransitionMission(ctx, id, move(authority.StageApply, "discover", 0), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, id, move(authority.StagePend, "respond", 0), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, id, move(authority.StageDeny, "", 0), now); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Request(ctx, id)
	if got.Stage != "discover" || got.PendingStage != nil {
		t.Errorf("denied: stage %q pending %+v", got.Stage, got.PendingStage)
	}
	// A pending move lapses after its TTL; a suspension cancels one.
	if _, err := s.TransitionMission(ctx, id, move(authority.StagePend, "respond", 0), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, id, move(authority.StageApprove, "", 0), now.Add(10*time.Minute)); !errors.Is(err, authority.ErrState) {
		t.Errorf("approving a lapsed move: %v", err)
	}
	now = now.Add(10 * time.Minute)
	if _, err := s.TransitionMission(ctx, id, move(authority.StagePend, "respond", 0), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, id, change(pass.MissionSuspended, "", pass.MissionActive), now); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Request(ctx, id); got.PendingStage != nil {
		t.Errorf("suspension left the pending move: %+v", got.PendingStage)
	}
	_, err = s.TransitionMission(ctx, id, move(authority.StageApply, "respond", 0), now)
	if !errors.Is(err, authority.ErrState) {
		t.Errorf("move of a suspended mission: %v", err)
	}
	if _, err := s.TransitionMission(ctx, id, change(pass.MissionActive, "", pass.MissionSuspended), now); err != nil {
		t.Fatal(err)
	}
	// Narrowing narrows every stage and the ceiling.
	if _, err := s.TransitionMission(ctx, id, authority.MissionChange{From: []pass.MissionState{pass.MissionActive}, Scope: pass.Scope{"tickets:write"}, By: "human:op"}, now); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Request(ctx, id)
	if len(got.Scope) != 0 || !slicesEqual(got.Ceiling(), pass.Scope{"tickets:write"}) {
		t.Errorf("narrowed: scope %v ceiling %v stages %+v", got.Scope, got.Ceiling(), got.Stages)
	}
	types, _ := history(t, s, id)
	want := []string{"requested", "approved", "redeemed", "stage_changed", "stage_changed", "stage_requested", "stage_changed",
		"stage_changed", "stage_requested", "stage_denied", "stage_requested", "stage_requested", "suspended", "resumed", "scope_narrowed"}
	if d := cmp.Diff(want, types); d != "" {
		t.Errorf("history (-want +got):\n%s", d)
	}
}

// RaceStages races forward moves of one staged mission, all expecting the
// same version, spread over stores (for example two replicas sharing one
// database): exactly one wins, every other one is refused as stale or no
// longer next, and the version rises by exactly one.
func RaceStages(t *testing.T, stores ...authority.Store) {
	s := stores[0]
	r := stagedRedeemed(t, s, "stage-race", stagePlan())
	now := T0.Add(time.Minute)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op := authority.StageApply
			if i%2 == 1 {
				op = authority.StagePend
			}
			_, err := stores[i%len(stores)].TransitionMission(ctx, r.MissionID, move(op, "respond", r.Version), now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, pass.Fail(pass.CodeStaleVersion, "")), errors.Is(err, pass.Fail(pass.CodeTransitionPending, "")),
				errors.Is(err, pass.Fail(pass.CodeStageNotNext, "")):
			default:
				t.Errorf("move %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d stage moves won, want exactly 1", wins)
	}
	got, _ := s.Request(ctx, r.MissionID)
	if applied := got.Stage == "respond"; applied && got.Version != r.Version+1 || !applied && (got.Version != r.Version || got.PendingStage == nil) {
		t.Errorf("after the race: stage %q v%d (was v%d) pending %+v", got.Stage, got.Version, r.Version, got.PendingStage)
	}
}
