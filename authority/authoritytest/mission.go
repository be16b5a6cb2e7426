package authoritytest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/internal/missionlog"
	"github.com/agentpass-go/agentpass/pass"
)

// The mission part of the conformance suite: the lifecycle table of the
// mission record, consumption gated by the mission, the cascade, the
// listing, and races.

var missionTests = []struct {
	name string
	fn   func(t *testing.T, s authority.Store)
}{
	{"MissionLifecycle", testMissionLifecycle},
	{"MissionIllegalTransitions", testMissionIllegal},
	{"MissionConsumeNeedsActive", testMissionConsume},
	{"MissionCascade", testMissionCascade},
	{"MissionList", testMissionList},
	{"MissionNotes", testMissionNotes},
	{"MissionRace", func(t *testing.T, s authority.Store) { RaceMission(t, s, s) }},
	{"CreateChild", testCreateChild},
	{"CreateChildRace", func(t *testing.T, s authority.Store) { RaceChildren(t, s, s) }},
}

// history returns the types and versions of a mission's stored history,
// after checking its chain.
func history(t *testing.T, s authority.Store, id string) (types []string, versions []int64) {
	t.Helper()
	recs, err := s.History(ctx, id)
	if err != nil {
		t.Fatalf("History(%s): %v", id, err)
	}
	bodies, hashes := make([][]byte, len(recs)), make([]string, len(recs))
	for i, rec := range recs {
		bodies[i], hashes[i] = rec.Body, rec.Hash
		e, err := missionlog.Decode(rec.Body, rec.Hash)
		if err != nil {
			t.Fatal(err)
		}
		types, versions = append(types, e.Type), append(versions, e.Version)
	}
	if seq, err := missionlog.Verify(bodies, hashes); err != nil {
		t.Fatalf("history of %s broken at %d: %v", id, seq, err)
	}
	return types, versions
}

func wantMission(t *testing.T, s authority.Store, id string, state pass.MissionState, version int64, cause string, types ...string) {
	t.Helper()
	r, err := s.Request(ctx, id)
	if err != nil {
		t.Fatalf("Request(%s): %v", id, err)
	}
	if r.State != state || r.Version != version {
		t.Errorf("%s: state %s v%d, want %s v%d", id, r.State, r.Version, state, version)
	}
	gotCause := ""
	if r.Ended != nil {
		gotCause = r.Ended.Cause
	}
	if gotCause != cause {
		t.Errorf("%s: ended.cause %q, want %q", id, gotCause, cause)
	}
	got, versions := history(t, s, id)
	if d := cmp.Diff(types, got); d != "" {
		t.Errorf("%s: history types (-want +got):\n%s", id, d)
	}
	if r.HistoryCount != int64(len(got)) || len(versions) > 0 && versions[len(versions)-1] != r.Version {
		t.Errorf("%s: history count %d head version %v, record v%d count %d", id, len(got), versions, r.Version, r.HistoryCount)
	}
}

func change(to pass.MissionState, cause string, from ...pass.MissionState) authority.MissionChange {
	return authority.MissionChange{From: from, To: to, Cause: cause, By: "human:op", Reason: "test"}
}

// Every row of the lifecycle table with its trigger.
func testMissionLifecycle(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	act, sus, pen := pass.MissionActive, pass.MissionSuspended, pass.MissionPending

	// (none) -> pending.
	if err := s.CreateRequest(ctx, NewRequest("p")); err != nil {
		t.Fatal(err)
	}
	wantMission(t, s, "msn_p", pen, 1, "", "requested")

	// pending -> active (approval); -> revoked (denial, cancellation).
	for _, tc := range []struct {
		status pass.Status
		state  pass.MissionState
		cause  string
	}{{pass.StatusApproved, act, ""}, {pass.StatusDenied, pass.MissionRevoked, pass.CauseDenied}, {pass.StatusCanceled, pass.MissionRevoked, pass.CauseCanceled}} {
		id := "d-" + string(tc.status)
		if err := s.CreateRequest(ctx, NewRequest(id)); err != nil {
			t.Fatal(err)
		}
		e := Approval("tickets:read")
		e.Status = tc.status
		if _, err := DecideRequest(s, id, e, now); err != nil {
			t.Fatalf("%s: %v", tc.status, err)
		}
		wantMission(t, s, "msn_"+id, tc.state, 2, tc.cause, "requested", string(tc.status))
		r, _ := s.Request(ctx, "msn_"+id)
		if r.Status != tc.status {
			t.Errorf("v0.1 status %s, want %s", r.Status, tc.status)
		}
	}

	// pending -> expired (request TTL).
	r, _ := s.Request(ctx, "msn_p")
	if _, err := s.TransitionMission(ctx, "msn_p", authority.MissionChange{To: pass.MissionExpired, By: "system"}, r.ExpiresAt); err != nil {
		t.Fatal(err)
	}
	wantMission(t, s, "msn_p", pass.MissionExpired, 2, pass.CauseRequestExpired, "requested", "expired")
	if r, _ := s.Request(ctx, "msn_p"); r.Status != pass.StatusExpired {
		t.Errorf("v0.1 status of an expired request: %s", r.Status)
	}

	// active -> expired (pass expired unredeemed, no authorization).
	approvedRequest(t, s, "unredeemed", "h-unredeemed")
	if _, err := s.TransitionMission(ctx, "msn_unredeemed", authority.MissionChange{To: pass.MissionExpired}, T0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantMission(t, s, "msn_unredeemed", pass.MissionExpired, 3, pass.CausePassExpired, "requested", "approved", "expired")

	// active -> suspended -> active; -> completed / revoked / expired.
	for _, tc := range []struct {
		to    pass.MissionState
		cause string
		at    time.Time
	}{{pass.MissionCompleted, pass.CauseHarness, now}, {pass.MissionRevoked, pass.CauseOperator, now}, {pass.MissionExpired, pass.CauseClock, T0.Add(time.Hour)}} {
		id := "z-" + string(tc.to)
		redeemed(t, s, id)
		mid := "msn_req-" + id
		if _, err := s.TransitionMission(ctx, mid, change(sus, "", act), now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TransitionMission(ctx, mid, change(act, "", sus), now); err != nil {
			t.Fatal(err)
		}
		if _, err := s.TransitionMission(ctx, mid, change(sus, "", act), now); err != nil {
			t.Fatal(err)
		}
		// From suspended, the mission ends.
		if _, err := s.TransitionMission(ctx, mid, change(tc.to, tc.cause, act, sus), tc.at); err != nil {
			t.Fatalf("suspended -> %s: %v", tc.to, err)
		}
		wantMission(t, s, mid, tc.to, 6, tc.cause, "requested", "approved", "redeemed", "suspended", "resumed", "suspended", string(tc.to))
		a, _ := s.Authorization(ctx, id)
		if a.State != pass.DelegationState(tc.to) {
			t.Errorf("authorization follows its mission: %s, want %s", a.State, tc.to)
		}
	}

	// Scope narrowing is a versioned change too.
	redeemed(t, s, "narrow")
	if _, err := s.TransitionMission(ctx, "msn_req-narrow", authority.MissionChange{From: []pass.MissionState{act}, Scope: pass.Scope{}}, now); err != nil {
		t.Fatal(err)
	}
	wantMission(t, s, "msn_req-narrow", act, 3, "", "requested", "approved", "redeemed", "scope_narrowed")
	if a, _ := s.Authorization(ctx, "narrow"); len(a.Scope) != 0 {
		t.Errorf("authorization scope after narrowing: %v", a.Scope)
	}
}

// Every illegal transition is refused with no change.
func testMissionIllegal(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	act, sus, pen := pass.MissionActive, pass.MissionSuspended, pass.MissionPending
	all := []pass.MissionState{pen, act, sus}
	changes := map[string]authority.MissionChange{
		"suspend":  change(sus, "", act),
		"resume":   change(act, "", sus),
		"complete": change(pass.MissionCompleted, pass.CauseOperator, act, sus),
		"revoke":   change(pass.MissionRevoked, pass.CauseOperator, all...),
		"narrow":   {From: all, Scope: pass.Scope{}},
		"expire":   {To: pass.MissionExpired},
	}
	check := func(id string, want map[string]error) {
		t.Helper()
		before, _ := s.Request(ctx, id)
		for name, c := range changes {
			err, ok := want[name]
			if !ok {
				continue
			}
			_, got := s.TransitionMission(ctx, id, c, now)
			if !errors.Is(got, err) {
				t.Errorf("%s on %s: %v, want %v", name, before.State, got, err)
			}
		}
		after, _ := s.Request(ctx, id)
		if after.State != before.State || after.Version != before.Version || after.HistoryHead != before.HistoryHead {
			t.Errorf("refused changes changed %s: %s v%d -> %s v%d", id, before.State, before.Version, after.State, after.Version)
		}
	}
	// Terminal states: everything is mission_terminal.
	terminal := map[string]error{}
	for name := range changes {
		terminal[name] = authority.ErrTerminal
	}
	for _, to := range []pass.MissionState{pass.MissionCompleted, pass.MissionRevoked} {
		redeemed(t, s, "t-"+string(to))
		if _, err := s.TransitionMission(ctx, "msn_req-t-"+string(to), change(to, pass.CauseOperator, act), now); err != nil {
			t.Fatal(err)
		}
		check("msn_req-t-"+string(to), terminal)
	}
	// Active: resume is not_active, expiry before its time is refused,
	// approval again is refused, widening is refused.
	redeemed(t, s, "a")
	check("msn_req-a", map[string]error{"resume": authority.ErrState, "expire": authority.ErrState})
	e := Approval("tickets:read")
	if _, err := DecideRequest(s, "msn_req-a", e, now); !errors.Is(err, authority.ErrNotPending) {
		t.Errorf("approve active: %v", err)
	}
	_, err := s.TransitionMission(ctx, "msn_req-a", authority.MissionChange{From: all, Scope: pass.Scope{"tickets:read", "tickets:write"}}, now)
	wantErr(t, "widen", err, authority.ErrScopeWiden)
	// Suspended: suspend again is refused.
	redeemed(t, s, "s")
	if _, err := s.TransitionMission(ctx, "msn_req-s", change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	check("msn_req-s", map[string]error{"suspend": authority.ErrState, "expire": authority.ErrState})
	// Pending: only a decision or the expiry leaves it.
	if err := s.CreateRequest(ctx, NewRequest("p")); err != nil {
		t.Fatal(err)
	}
	check("msn_p", map[string]error{"suspend": authority.ErrState, "resume": authority.ErrState, "complete": authority.ErrState, "expire": authority.ErrState})
	// Past a deadline, any other change is ErrExpired, and nothing changes
	// until the expiry is committed.
	redeemed(t, s, "late")
	_, err = s.TransitionMission(ctx, "msn_req-late", change(sus, "", act), T0.Add(time.Hour))
	wantErr(t, "suspend after expiry", err, authority.ErrExpired)
	_, err = s.TransitionMission(ctx, "unknown", change(sus, "", act), now)
	wantErr(t, "unknown mission", err, authority.ErrNotFound)
	// Another Service cannot act.
	c := change(pass.MissionRevoked, pass.CauseService, act)
	c.Service = svcB
	_, err = s.TransitionMission(ctx, "msn_req-a", c, now)
	wantErr(t, "foreign service", err, authority.ErrNotFound)
}

// Validation consumes a pass only while its mission, and every ancestor,
// is active; the check is part of the consumption.
func testMissionConsume(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	approvedRequest(t, s, "m", "hm")
	if _, err := s.TransitionMission(ctx, "msn_m", change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	_, err := s.ConsumePass(ctx, "hm", svcA, "z1", now)
	wantErr(t, "consume suspended", err, authority.ErrNotFound)
	if r, _ := s.Request(ctx, "msn_m"); !r.ConsumedAt.IsZero() {
		t.Fatal("refused consumption consumed the pass")
	}
	if _, err := s.TransitionMission(ctx, "msn_m", change(act, "", sus), now); err != nil {
		t.Fatal(err)
	}
	// A child of a suspended parent is refused too.
	child := NewRequest("child")
	child.Status, child.ParentMissionID, child.PassHash = pass.StatusApproved, "msn_m", "hc"
	e := Approval("tickets:read")
	child.Decision = &e
	if err := s.CreateRequest(ctx, child); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, "msn_m", change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	_, err = s.ConsumePass(ctx, "hc", svcA, "zc", now)
	wantErr(t, "consume under a suspended parent", err, authority.ErrNotFound)
	if _, err := s.TransitionMission(ctx, "msn_m", change(act, "", sus), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePass(ctx, "hc", svcA, "zc", now); err != nil {
		t.Fatalf("consume after resume: %v", err)
	}
	wantMission(t, s, "msn_child", act, 4, "", "requested", "approved", "suspended", "resumed", "redeemed")
}

// Ending a mission ends its descendants in the same step; suspending one
// bumps theirs and makes them answer suspended.
func testMissionCascade(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	redeemed(t, s, "root")
	parent := "msn_req-root"
	for i, p := range []string{parent, "msn_c1"} {
		r := NewRequest(fmt.Sprintf("c%d", i+1))
		r.Status, r.ParentMissionID, r.PassHash = pass.StatusApproved, p, fmt.Sprintf("hc%d", i+1)
		e := Approval("tickets:read")
		r.Decision = &e
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumePass(ctx, r.PassHash, svcA, fmt.Sprintf("zc%d", i+1), now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TransitionMission(ctx, parent, change(sus, "", act), now); err != nil {
		t.Fatal(err)
	}
	gc, _ := s.Request(ctx, "msn_c2")
	var anc []*authority.Request
	for _, id := range []string{"msn_c1", parent} {
		a, _ := s.Request(ctx, id)
		anc = append(anc, a)
	}
	if got := authority.EffectiveMissionState(gc, anc, now); got != sus || gc.State != act {
		t.Errorf("grandchild of a suspended root: reported %s, stored %s", got, gc.State)
	}
	if _, err := s.TransitionMission(ctx, parent, change(act, "", sus), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, parent, change(pass.MissionCompleted, pass.CauseHarness, act), now); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"msn_c1", "msn_c2"} {
		wantMission(t, s, id, pass.MissionRevoked, 5, pass.CauseCascade, "requested", "approved", "redeemed", "suspended", "resumed", "revoked")
	}
	for _, id := range []string{"zc1", "zc2"} {
		if a, _ := s.Authorization(ctx, id); a.State != pass.DelegationRevoked {
			t.Errorf("%s after its ancestor completed: %s", id, a.State)
		}
	}
}

func testMissionList(t *testing.T, s authority.Store) {
	var want []string
	for i := range 7 {
		r := NewRequest(fmt.Sprintf("l%d", i))
		r.CreatedAt = T0.Add(time.Duration(i%3) * time.Second) // ties broken by id
		if i == 5 {
			r.ParentMissionID = "msn_l0"
		}
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		want = append(want, r.MissionID)
	}
	slices.SortFunc(want, func(a, b string) int {
		ra, _ := s.Request(ctx, a)
		rb, _ := s.Request(ctx, b)
		if c := ra.CreatedAt.Compare(rb.CreatedAt); c != 0 {
			return c
		}
		if a < b {
			return -1
		}
		return 1
	})
	var got []string
	opts := authority.MissionListOptions{Limit: 3}
	for range 5 {
		page, err := s.Missions(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got = append(got, r.MissionID)
		}
		if len(page) < 3 {
			break
		}
		last := page[len(page)-1]
		opts.After = &authority.MissionCursor{CreatedAt: last.CreatedAt, MissionID: last.MissionID}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("paged missions (-want +got):\n%s", d)
	}
	kids, _ := s.Missions(ctx, authority.MissionListOptions{Parent: "msn_l0"})
	if len(kids) != 1 || kids[0].MissionID != "msn_l5" {
		t.Errorf("children of l0: %d", len(kids))
	}
	if _, err := DecideRequest(s, "l1", Approval("tickets:read"), T0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	act, _ := s.Missions(ctx, authority.MissionListOptions{States: []pass.MissionState{pass.MissionActive}})
	if len(act) != 1 || act[0].MissionID != "msn_l1" {
		t.Errorf("active missions: %d", len(act))
	}
}

// RaceMission runs 100 concurrent complete, revoke and suspend calls on
// one active mission, spread over the given stores (replicas sharing one
// database): exactly one terminal transition commits, and the versions in
// the history rise by one per committed change, without gaps.
func RaceMission(t *testing.T, stores ...authority.Store) {
	s := stores[0]
	redeemed(t, s, "race")
	id := "msn_req-race"
	now := T0.Add(time.Minute)
	act, sus := pass.MissionActive, pass.MissionSuspended
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok        int
		terminals int
	)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c authority.MissionChange
			switch i % 3 {
			case 0:
				c = change(pass.MissionCompleted, pass.CauseHarness, act, sus)
			case 1:
				c = change(pass.MissionRevoked, pass.CauseOperator, act, sus)
			default:
				c = change(sus, "", act)
			}
			_, err := stores[i%len(stores)].TransitionMission(ctx, id, c, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
				if c.To.Terminal() {
					terminals++
				}
			case errors.Is(err, authority.ErrTerminal), errors.Is(err, authority.ErrState):
			default:
				t.Errorf("transition %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if terminals != 1 {
		t.Fatalf("%d terminal transitions committed, want exactly 1", terminals)
	}
	r, _ := s.Request(ctx, id)
	if !r.State.Terminal() || r.Version != int64(2+ok) {
		t.Errorf("after the race: %s v%d, %d changes committed (want v%d)", r.State, r.Version, ok, 2+ok)
	}
	types, versions := history(t, s, id)
	// requested v1, approved v2, redeemed v2, then one entry per change.
	want := []int64{1, 2, 2}
	for v := int64(3); v <= r.Version; v++ {
		want = append(want, v)
	}
	if d := cmp.Diff(want, versions); d != "" {
		t.Errorf("history versions (-want +got):\n%s\ntypes %v", d, types)
	}
}

// A note (an observation) appends a history entry and changes neither the
// state nor the version; a pending or ended mission takes none.
func testMissionNotes(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	approvedRequest(t, s, "noted", "h-noted")
	note := authority.MissionChange{From: []pass.MissionState{pass.MissionActive, pass.MissionSuspended}, Note: "observation",
		By: "service:" + svcA, Service: svcA, Details: map[string]any{"kind": "scope_denied", "count": int64(3)}}
	for range 2 {
		r, err := s.TransitionMission(ctx, "msn_noted", note, now)
		if err != nil {
			t.Fatalf("note: %v", err)
		}
		if r.Version != 2 || r.State != pass.MissionActive {
			t.Errorf("after a note: state %s v%d, want active v2", r.State, r.Version)
		}
	}
	wantMission(t, s, "msn_noted", pass.MissionActive, 2, "", "requested", "approved", "observation", "observation")
	other := note
	other.Service = "https://other.example"
	if _, err := s.TransitionMission(ctx, "msn_noted", other, now); !errors.Is(err, authority.ErrNotFound) {
		t.Errorf("note by another Service: %v, want ErrNotFound", err)
	}
	if err := s.CreateRequest(ctx, NewRequest("noted-pending")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, "msn_noted-pending", note, now); !errors.Is(err, authority.ErrState) {
		t.Errorf("note on a pending mission: %v, want ErrState", err)
	}
	wantMission(t, s, "msn_noted-pending", pass.MissionPending, 1, "", "requested")
}
