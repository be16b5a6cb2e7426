package authoritytest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/authority"
	"github.com/agentpass-go/agentpass/pass"
)

// The delegation part of the conformance suite: CreateChild judges the
// parent in the step that creates the child.

// delegatingParent stores an approved, active parent mission allowing one
// generation below it and maxChildren live children.
func delegatingParent(t *testing.T, s authority.Store, id string, maxChildren int) *authority.Request {
	t.Helper()
	r := NewRequest(id)
	r.Status = pass.StatusApproved
	e := Approval("tickets:read", "tickets:write")
	e.MaxDepth, e.MaxChildren = 1, maxChildren
	r.Decision = &e
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
	return r
}

// childOf returns an approved child of parent granting scope.
func childOf(parent *authority.Request, id string, scope ...string) *authority.Request {
	c := NewRequest(id)
	c.ParentMissionID, c.HarnessID, c.CreatedAt = parent.MissionID, parent.HarnessID+"/"+id, T0.Add(time.Minute)
	c.Status = pass.StatusApproved
	e := Approval(scope...)
	e.DecidedBy, e.DecidedAt, e.AuthorizationExpiresAt = "delegation:"+parent.MissionID, T0.Add(time.Minute), T0.Add(30*time.Minute)
	c.Decision = &e
	return c
}

func testCreateChild(t *testing.T, s authority.Store) {
	now := T0.Add(time.Minute)
	p := delegatingParent(t, s, "parent", 2)
	got, err := s.Request(ctx, p.MissionID)
	if err != nil || got.Decision == nil || got.Decision.MaxDepth != 1 || got.Decision.MaxChildren != 2 {
		t.Fatalf("parent's delegation rights do not round-trip: %+v %v", got.Decision, err)
	}
	wide := childOf(p, "wide", "tickets:read", "admin")
	wantErr(t, "CreateChild wider scope", s.CreateChild(ctx, wide, now), authority.ErrScopeWiden)
	late := childOf(p, "late", "tickets:read")
	late.Decision.AuthorizationExpiresAt = T0.Add(2 * time.Hour)
	wantErr(t, "CreateChild outliving the parent", s.CreateChild(ctx, late, now), authority.ErrScopeWiden)
	orphan := childOf(p, "orphan", "tickets:read")
	orphan.ParentMissionID = "msn_nobody"
	wantErr(t, "CreateChild unknown parent", s.CreateChild(ctx, orphan, now), authority.ErrNotFound)

	c1 := childOf(p, "c1", "tickets:read")
	if err := s.CreateChild(ctx, c1, now); err != nil {
		t.Fatalf("CreateChild: %v", err)
	}
	if c1.State != pass.MissionActive || c1.Version != 2 {
		t.Errorf("child after CreateChild: %s v%d", c1.State, c1.Version)
	}
	wantMission(t, s, c1.MissionID, pass.MissionActive, 2, "", "requested", "approved")
	if err := s.CreateChild(ctx, childOf(p, "c2", "tickets:write"), now); err != nil {
		t.Fatalf("CreateChild second: %v", err)
	}
	wantErr(t, "CreateChild third", s.CreateChild(ctx, childOf(p, "c3", "tickets:read"), now), authority.ErrTooManyChildren)
	// An ended child frees its slot.
	if _, err := s.TransitionMission(ctx, c1.MissionID, change(pass.MissionCompleted, pass.CauseHarness, pass.MissionActive), now); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateChild(ctx, childOf(p, "c3", "tickets:read"), now); err != nil {
		t.Fatalf("CreateChild after a child ended: %v", err)
	}
	kids, err := s.Missions(ctx, authority.MissionListOptions{Parent: p.MissionID})
	if err != nil || len(kids) != 3 {
		t.Fatalf("children: %d %v", len(kids), err)
	}

	// A suspended or ended parent, or a suspended grandparent, delegates
	// nothing.
	q := delegatingParent(t, s, "q", 8)
	if _, err := s.TransitionMission(ctx, q.MissionID, change(pass.MissionSuspended, "", pass.MissionActive), now); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CreateChild under a suspended parent", s.CreateChild(ctx, childOf(q, "qs", "tickets:read"), now), authority.ErrState)
	g := delegatingParent(t, s, "g", 8)
	g.Decision.MaxDepth = 2
	mid := childOf(g, "mid", "tickets:read")
	mid.Decision.MaxDepth, mid.Decision.MaxChildren = 1, 8
	if err := s.CreateChild(ctx, mid, now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TransitionMission(ctx, g.MissionID, change(pass.MissionSuspended, "", pass.MissionActive), now); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CreateChild under a suspended grandparent", s.CreateChild(ctx, childOf(mid, "gs", "tickets:read"), now), authority.ErrState)
	if _, err := s.TransitionMission(ctx, g.MissionID, change(pass.MissionRevoked, pass.CauseOperator, pass.MissionSuspended), now); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "CreateChild under a revoked grandparent", s.CreateChild(ctx, childOf(mid, "gr", "tickets:read"), now), authority.ErrState)
}

// RaceChildren runs concurrent child creations over the given stores
// (replicas sharing one database). First, 100 creations race for 5 slots:
// exactly 5 win. Then 100 creations race a revocation of their parent:
// afterwards no child of the revoked parent is live.
func RaceChildren(t *testing.T, stores ...authority.Store) {
	s := stores[0]
	now := T0.Add(time.Minute)
	p := delegatingParent(t, s, "race-slots", 5)
	var won, full atomic.Int32
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := stores[i%len(stores)].CreateChild(ctx, childOf(p, fmt.Sprintf("slot-%d", i), "tickets:read"), now)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, authority.ErrTooManyChildren):
				full.Add(1)
			default:
				t.Errorf("CreateChild %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if won.Load() != 5 || full.Load() != 95 {
		t.Fatalf("%d created, %d refused; want 5 and 95", won.Load(), full.Load())
	}

	q := delegatingParent(t, s, "race-revoke", 1000)
	for i := range 101 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := stores[i%len(stores)]
			if i == 50 {
				if _, err := st.TransitionMission(ctx, q.MissionID, change(pass.MissionRevoked, pass.CauseOperator, pass.MissionActive), now); err != nil {
					t.Errorf("revoke: %v", err)
				}
				return
			}
			err := st.CreateChild(ctx, childOf(q, fmt.Sprintf("rv-%d", i), "tickets:read"), now)
			if err != nil && !errors.Is(err, authority.ErrState) {
				t.Errorf("CreateChild %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	kids, err := s.Missions(ctx, authority.MissionListOptions{Parent: q.MissionID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kids {
		if !k.State.Terminal() {
			t.Errorf("child %s of the revoked parent is %s", k.MissionID, k.State)
		}
	}
}
