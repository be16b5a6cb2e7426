package servicetest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/pass"
	"github.com/agentpass-go/agentpass/service"
)

// eventState is what ApplyEvent may change, for comparisons.
type eventState struct {
	Applied      bool
	Invalidated  bool
	State        pass.MissionState
	Version      int64
	CurrentScope pass.Scope
	Stale        bool
}

func stateOf(t *testing.T, s service.Store, id string, applied bool) eventState {
	t.Helper()
	d, err := s.Delegation(ctx, id)
	if err != nil {
		t.Fatalf("Delegation(%s): %v", id, err)
	}
	return eventState{applied, d.Invalidated, d.MissionState, d.MissionVersion, d.CurrentScope, d.Stale}
}

// testApplyEvent walks one delegation (mission at v3, scope read+write)
// through the event rules: never regress, unversioned events only end or
// narrow, narrowing intersects, widening and gaps only mark Stale, and a
// check clears Stale.
func testApplyEvent(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	rw := pass.Scope{"tickets:read", "tickets:write"}
	ev := func(a service.EventAction, v int64, scope ...string) service.MissionEvent {
		return service.MissionEvent{Authority: d.Authority, AuthorizationID: d.AuthorizationID, MissionID: d.MissionID,
			Version: v, Action: a, Scope: scope, At: base.Add(time.Minute), Reason: "event"}
	}
	for _, step := range []struct {
		name  string
		e     service.MissionEvent
		check *service.MissionCheck
		want  eventState
	}{
		{name: "an old version (E4) changes nothing", e: ev(service.EventHold, 3),
			want: eventState{false, false, pass.MissionActive, 3, rw, false}},
		{name: "unversioned hold is ignored", e: ev(service.EventHold, 0),
			want: eventState{false, false, pass.MissionActive, 3, rw, false}},
		{name: "unversioned recheck is ignored", e: ev(service.EventRecheck, 0),
			want: eventState{false, false, pass.MissionActive, 3, rw, false}},
		{name: "hold at v4", e: ev(service.EventHold, 4),
			want: eventState{true, false, pass.MissionSuspended, 4, rw, false}},
		{name: "replayed resume at v4 (E3) changes nothing", e: ev(service.EventRecheck, 4),
			want: eventState{false, false, pass.MissionSuspended, 4, rw, false}},
		{name: "resume at v5 only marks Stale", e: ev(service.EventRecheck, 5),
			want: eventState{true, false, pass.MissionSuspended, 4, rw, true}},
		{name: "the check's answer releases and clears Stale",
			check: &service.MissionCheck{At: base.Add(2 * time.Minute), Scope: rw, State: pass.MissionActive, Version: 5},
			want:  eventState{true, false, pass.MissionActive, 5, rw, false}},
		{name: "narrowing at v6 intersects", e: ev(service.EventNarrow, 6, "tickets:read", "other:read"),
			want: eventState{true, false, pass.MissionActive, 6, pass.Scope{"tickets:read"}, true}},
		{name: "a check clears Stale",
			check: &service.MissionCheck{At: base.Add(3 * time.Minute), Scope: pass.Scope{"tickets:read"}, State: pass.MissionActive, Version: 6},
			want:  eventState{true, false, pass.MissionActive, 6, pass.Scope{"tickets:read"}, false}},
		{name: "widening at v7 keeps the scope, marks Stale", e: ev(service.EventNarrow, 7, "tickets:read", "tickets:write"),
			want: eventState{true, false, pass.MissionActive, 7, pass.Scope{"tickets:read"}, true}},
		{name: "an unversioned narrowing applies", e: ev(service.EventNarrow, 0, "tickets:write"),
			want: eventState{true, false, pass.MissionActive, 7, pass.Scope{}, true}},
		{name: "a gap (v7 to v9) applies and marks Stale", e: ev(service.EventHold, 9),
			want: eventState{true, false, pass.MissionSuspended, 9, pass.Scope{}, true}},
		{name: "revoke at v10 invalidates", e: ev(service.EventRevoke, 10),
			want: eventState{true, true, pass.MissionSuspended, 10, pass.Scope{}, true}},
		{name: "nothing applies after the end", e: ev(service.EventRecheck, 11),
			want: eventState{false, true, pass.MissionSuspended, 10, pass.Scope{}, true}},
	} {
		var applied bool
		var err error
		if step.check != nil {
			applied, err = s.RecordMissionCheck(ctx, d.AuthorizationID, *step.check)
		} else {
			applied, err = s.ApplyEvent(ctx, step.e)
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := stateOf(t, s, d.AuthorizationID, applied)
		if len(got.CurrentScope) == 0 {
			got.CurrentScope = pass.Scope{}
		}
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, diff)
		}
	}
	got, _ := s.Delegation(ctx, d.AuthorizationID)
	if got.InvalidReason != "event" || !got.InvalidatedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("invalidation recorded as %q at %v", got.InvalidReason, got.InvalidatedAt)
	}
	if !cmp.Equal(got.Scope, rw) {
		t.Errorf("the redemption-time Scope changed to %v", got.Scope)
	}
}

// testApplyStageEvent: a stage move narrower than the current scope
// applies at once, scope and stage; a wider one changes neither and marks
// Stale, and the confirming check moves both, never beyond the
// redemption-time bound.
func testApplyStageEvent(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	d.Stages = []pass.Stage{{Name: "discover", Scope: pass.Scope{"tickets:read"}}, {Name: "respond", Scope: pass.Scope{"tickets:read", "tickets:write"}}}
	d.Stage = "respond"
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	type state struct {
		Applied      bool
		Stage        string
		CurrentScope pass.Scope
		Stale        bool
		Version      int64
	}
	ev := func(v int64, stage string, scope ...string) service.MissionEvent {
		return service.MissionEvent{Authority: d.Authority, AuthorizationID: d.AuthorizationID, MissionID: d.MissionID,
			Version: v, Action: service.EventNarrow, Scope: scope, Stage: stage, At: base.Add(time.Minute), Reason: "event"}
	}
	for _, step := range []struct {
		name  string
		e     service.MissionEvent
		check *service.MissionCheck
		want  state
	}{
		{name: "back to discover applies at once", e: ev(4, "discover", "tickets:read"),
			want: state{true, "discover", pass.Scope{"tickets:read"}, false, 4}},
		{name: "forward to respond only marks Stale", e: ev(5, "respond", "tickets:read", "tickets:write"),
			want: state{true, "discover", pass.Scope{"tickets:read"}, true, 5}},
		{name: "the check confirms the wider stage",
			check: &service.MissionCheck{At: base.Add(2 * time.Minute), Scope: pass.Scope{"tickets:read", "tickets:write"}, State: pass.MissionActive, Version: 5, Stage: "respond"},
			want:  state{true, "respond", pass.Scope{"tickets:read", "tickets:write"}, false, 5}},
		{name: "an old stage move changes nothing", e: ev(5, "discover", "tickets:read"),
			want: state{false, "respond", pass.Scope{"tickets:read", "tickets:write"}, false, 5}},
		{name: "a stage scope outside the bound stays inside it", e: ev(6, "discover", "tickets:read", "admin"),
			want: state{true, "respond", pass.Scope{"tickets:read"}, true, 6}},
	} {
		var applied bool
		var err error
		if step.check != nil {
			applied, err = s.RecordMissionCheck(ctx, d.AuthorizationID, *step.check)
		} else {
			applied, err = s.ApplyEvent(ctx, step.e)
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := s.Delegation(ctx, d.AuthorizationID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(step.want, state{applied, got.Stage, got.CurrentScope, got.Stale, got.MissionVersion}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step.name, diff)
		}
	}
}

// testApplyEventKeys: a delegation is named by (Authority, id); another
// Authority naming the id, or an event about another mission, reaches
// nothing, and an unknown id is ErrNotFound.
func testApplyEventKeys(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.ApplyEvent(ctx, service.MissionEvent{Authority: "https://other.example", AuthorizationID: d.AuthorizationID,
		Action: service.EventRevoke, At: base})
	if !errors.Is(err, service.ErrNotFound) {
		t.Errorf("event of another Authority: %v, want ErrNotFound", err)
	}
	_, err = s.ApplyEvent(ctx, service.MissionEvent{Authority: d.Authority, AuthorizationID: uniq("nope"), Action: service.EventRevoke, At: base})
	if !errors.Is(err, service.ErrNotFound) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	applied, err := s.ApplyEvent(ctx, service.MissionEvent{Authority: d.Authority, AuthorizationID: d.AuthorizationID,
		MissionID: "msn_other", Version: 9, Action: service.EventRevoke, At: base})
	if err != nil || applied {
		t.Errorf("event about another mission: applied %v, %v", applied, err)
	}
	if got := stateOf(t, s, d.AuthorizationID, false); got.Invalidated || got.Version != 3 {
		t.Errorf("after foreign events: %+v", got)
	}
}

// testApplyEventCascade: the end of a mission ends its other delegations
// and every descendant's held here (D11), of that Authority only.
func testApplyEventCascade(t *testing.T, s service.Store) {
	root := delegation(uniq("authz"))
	sibling := delegation(uniq("authz"))
	sibling.MissionID = root.MissionID
	child := delegation(uniq("authz"))
	child.Ancestors = []string{root.MissionID}
	grandchild := delegation(uniq("authz"))
	grandchild.Ancestors = []string{child.MissionID, root.MissionID}
	unrelated := delegation(uniq("authz"))
	foreign := delegation(uniq("authz"))
	foreign.Authority, foreign.Ancestors = "https://other.example", []string{root.MissionID}
	all := []*service.DelegationRecord{root, sibling, child, grandchild, unrelated, foreign}
	for _, d := range all {
		if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := s.ApplyEvent(ctx, service.MissionEvent{Authority: root.Authority, AuthorizationID: root.AuthorizationID,
		MissionID: root.MissionID, Version: 4, Action: service.EventEnd, At: base, Reason: "mission revoked"})
	if err != nil || !applied {
		t.Fatalf("ApplyEvent(end) = %v, %v", applied, err)
	}
	want := []bool{true, true, true, true, false, false}
	for i, d := range all {
		got, _ := s.Delegation(ctx, d.AuthorizationID)
		if got.Invalidated != want[i] {
			t.Errorf("delegation %d invalidated = %v, want %v", i, got.Invalidated, want[i])
		}
	}
}

// testApplyEventRace: many versioned events applied at once (two
// replicas each receiving deliveries) end at the newest version, and each
// version applies at most once however often it is delivered.
func testApplyEventRace(t *testing.T, s service.Store) {
	d := delegation(uniq("authz"))
	d.MissionVersion = 1
	if err := s.Redeem(ctx, d, credential(d.AuthorizationID, service.KindBearer), nil); err != nil {
		t.Fatal(err)
	}
	const n, copies = 20, 3
	var wg sync.WaitGroup
	var appliedCount atomic.Int64
	start := make(chan struct{})
	for i := range n * copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v := int64(2 + i%n)
			ok, err := s.ApplyEvent(ctx, service.MissionEvent{Authority: d.Authority, AuthorizationID: d.AuthorizationID,
				MissionID: d.MissionID, Version: v, Action: service.EventHold, At: base})
			if err != nil {
				t.Errorf("ApplyEvent: %v", err)
			}
			if ok {
				appliedCount.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	got := stateOf(t, s, d.AuthorizationID, false)
	if got.Version != n+1 || got.State != pass.MissionSuspended {
		t.Errorf("after the race: %+v, want suspended v%d", got, n+1)
	}
	if c := appliedCount.Load(); c < 1 || c > n {
		t.Errorf("%d deliveries applied, want between 1 and %d (each version at most once)", c, n)
	}
}
