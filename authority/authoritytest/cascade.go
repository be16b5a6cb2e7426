package authoritytest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// stagedFamily stores a staged root redeemed for svcA, moved to its second
// stage (read and write), and below it: a child c1 holding read and write
// at svcA, a grandchild c2 holding write at svcB, and a child c3 holding
// read at svcA. It returns the mission ids, root first.
func stagedFamily(t *testing.T, s authority.Store, id string) (root, c1, c2, c3 string) {
	t.Helper()
	r := stagedRedeemed(t, s, id, stagePlan())
	if _, err := s.TransitionMission(ctx, r.MissionID, move(authority.StageApply, "respond", 0), T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	child := func(name, parent, svc string, scope ...string) string {
		cid := id + "-" + name
		c := NewRequest(cid)
		c.Status, c.ParentMissionID, c.PassHash, c.Service = pass.StatusApproved, parent, "hash-"+cid, svc
		e := Approval(scope...)
		c.Decision = &e
		if err := s.CreateRequest(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumePass(ctx, c.PassHash, svc, "z"+cid, T0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		return c.MissionID
	}
	c1 = child("c1", r.MissionID, svcA, "tickets:read", "tickets:write")
	c2 = child("c2", c1, svcB, "tickets:write")
	c3 = child("c3", r.MissionID, svcA, "tickets:read")
	return r.MissionID, c1, c2, c3
}

// lastEntry returns the newest history entry of mission id.
func lastEntry(t *testing.T, s authority.Store, id string) pass.HistoryEntry {
	t.Helper()
	recs, err := s.History(ctx, id)
	if err != nil || len(recs) == 0 {
		t.Fatalf("History(%s): %d, %v", id, len(recs), err)
	}
	e, err := missionlog.Decode(recs[len(recs)-1].Body, recs[len(recs)-1].Hash)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Review O9, A2, amendment 10 (descendants): a root's stage move bumps the
// version of each live descendant whose effective scope (its own within
// every ancestor's current scope) it changes, appends a history entry
// naming the ancestor and the new effective scope, and queues its SET, all
// in the step that commits the move; a descendant it leaves unchanged
// gets nothing. A move whose SETs cannot be built does not commit: the
// SETs exist if and only if the move does.
func testEventsDescendantStageCascade(t *testing.T, s authority.Store, es authority.EventStore) {
	now := T0.Add(2 * time.Minute)
	root, c1, c2, c3 := stagedFamily(t, s, "o9")
	if err := es.SetEventReceiver(ctx, svcA, pushTo(svcA)); err != nil {
		t.Fatal(err)
	}
	if err := es.SetEventReceiver(ctx, svcB, &pass.ServiceEvents{DeliveryMethod: pass.DeliveryPoll}); err != nil {
		t.Fatal(err)
	}
	ids := []string{root, c1, c2, c3}
	type snap struct{ version, count int64 }
	snapshot := func() map[string]snap {
		out := map[string]snap{}
		for _, id := range ids {
			r, err := s.Request(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = snap{r.Version, r.HistoryCount}
		}
		return out
	}
	queued := func() []string {
		t.Helper()
		push := claimAll(t, es, "o", now)
		poll, _, err := es.PollEvents(ctx, svcB, 100, now)
		if err != nil {
			t.Fatal(err)
		}
		return jtis(append(push, poll...))
	}

	// The back move's SETs cannot be built: nothing commits.
	before := snapshot()
	failing := &events{fail: errors.New("signer down")}
	back := move(authority.StageApply, "discover", 0)
	back.Events = failing.build
	if _, err := s.TransitionMission(ctx, root, back, now); err == nil {
		t.Fatal("a back move committed although its descendants' SETs could not be built")
	}
	if got := snapshot(); !maps.Equal(got, before) {
		t.Errorf("after a failed move: %v, want %v", got, before)
	}
	if got := queued(); len(got) != 0 {
		t.Errorf("SETs queued by a move that did not commit: %v", got)
	}

	// Back to read only: c1 loses write, c2 everything, c3 nothing.
	b := &events{}
	back.Events = b.build
	if _, err := s.TransitionMission(ctx, root, back, now); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	wantEffective := map[string][]string{c1: {"tickets:read"}, c2: {}}
	for _, id := range []string{c1, c2} {
		if after[id].version != before[id].version+1 || after[id].count != before[id].count+1 {
			t.Errorf("%s after the back move: %+v, want one version and one entry over %+v", id, after[id], before[id])
		}
		e := lastEntry(t, s, id)
		if e.Type != "stage_changed" || e.Details["ancestor"] != root || e.Details["ancestor_stage"] != "discover" ||
			fmt.Sprint(e.Details["effective_scope"]) != fmt.Sprint(wantEffective[id]) || e.Version != after[id].version {
			t.Errorf("%s history entry %+v, want stage_changed by ancestor %s, effective scope %v", id, e, root, wantEffective[id])
		}
		r, _ := s.Request(ctx, id)
		if id == c1 && !slicesEqual(r.Scope, pass.Scope{"tickets:read", "tickets:write"}) {
			t.Errorf("%s own scope %v changed by an ancestor's stage", id, r.Scope)
		}
	}
	if after[c3] != before[c3] {
		t.Errorf("%s, whose effective scope did not change: %+v, want %+v", c3, after[c3], before[c3])
	}
	want := []string{
		fmt.Sprintf("%s-v%d", root, after[root].version),
		fmt.Sprintf("%s-v%d", c1, after[c1].version),
		fmt.Sprintf("%s-v%d", c2, after[c2].version),
	}
	slices.Sort(want)
	if got := queued(); !slices.Equal(got, want) {
		t.Errorf("queued %v, want %v (root, c1 by push, c2 by poll; none for c3)", got, want)
	}
	// The builder sees each descendant's ancestors as they were, so the
	// Authority can put its effective scope in the SET.
	for _, c := range b.calls {
		var chain []string
		for _, a := range c.Ancestors {
			chain = append(chain, a.MissionID)
		}
		wantChain := map[string][]string{root: nil, c1: {root}, c2: {c1, root}}[c.Mission.MissionID]
		if !slices.Equal(chain, wantChain) || c.Root.Stage != "discover" {
			t.Errorf("builder call for %s: ancestors %v root stage %q, want %v and discover", c.Mission.MissionID, chain, c.Root.Stage, wantChain)
		}
		if len(c.Ancestors) > 0 && c.Ancestors[len(c.Ancestors)-1].Stage != "respond" {
			t.Errorf("builder call for %s: root given as after the move", c.Mission.MissionID)
		}
	}

	// Forward again: both regain what their own grant holds, with a SET
	// each; c3 still hears nothing.
	fwd := move(authority.StageApply, "respond", 0)
	fwd.Events = b.build
	if _, err := s.TransitionMission(ctx, root, fwd, now); err != nil {
		t.Fatal(err)
	}
	again := snapshot()
	for _, id := range []string{c1, c2} {
		if again[id].version != after[id].version+1 {
			t.Errorf("%s after the forward move: v%d, want v%d", id, again[id].version, after[id].version+1)
		}
	}
	if again[c3] != before[c3] {
		t.Errorf("%s moved with the root's forward move: %+v", c3, again[c3])
	}
	if e := lastEntry(t, s, c2); fmt.Sprint(e.Details["effective_scope"]) != "[tickets:write]" {
		t.Errorf("%s effective scope after the forward move: %v, want its own grant", c2, e.Details["effective_scope"])
	}

	// A change of a mission that is itself a child reaches its
	// descendants with the whole chain above them, up to the top.
	b.calls = nil
	narrow := authority.MissionChange{From: []pass.MissionState{pass.MissionActive}, Scope: pass.Scope{"tickets:read"}, By: "human:op", Events: b.build}
	if _, err := s.TransitionMission(ctx, c1, narrow, now); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range b.calls {
		if c.Mission.MissionID != c2 {
			continue
		}
		found = true
		var chain []string
		for _, a := range c.Ancestors {
			chain = append(chain, a.MissionID)
		}
		if !slices.Equal(chain, []string{c1, root}) {
			t.Errorf("narrowing %s: ancestors of %s %v, want [%s %s]", c1, c2, chain, c1, root)
		}
	}
	if !found {
		t.Errorf("narrowing %s to read built no SET for %s, which held write only", c1, c2)
	}
}
