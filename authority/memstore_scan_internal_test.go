package authority

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentpass-go/agentpass/pass"
)

// Review (audit 7, H1 and M3): a mission's children are listed from the
// index, not by a scan of the whole store under its lock (every view of
// a mission lists them, and anyone holding a pending mission may read
// it), and a deleted child leaves its parent's index, which therefore
// never outgrows the children still held.
func TestMissionsByParentFromIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	add := func(id, parent string, at time.Time) *Request {
		t.Helper()
		r := &Request{MissionID: id, IDHash: "h-" + id, ParentMissionID: parent, State: pass.MissionActive,
			Status: pass.StatusApproved, CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.insertLocked(r, r.Clone(), nil); err != nil {
			t.Fatal(err)
		}
		return r
	}
	add("msn_parent", "", now)
	add("msn_other", "", now)
	for i := range 500 {
		add("msn_x"+strconv.Itoa(i), "msn_other", now.Add(time.Duration(i)*time.Second))
	}
	var kids []*Request
	for i := range 5 {
		kids = append(kids, add("msn_kid"+strconv.Itoa(i), "msn_parent", now.Add(time.Duration(5-i)*time.Minute)))
	}
	list, err := m.Missions(ctx, MissionListOptions{Parent: "msn_parent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 || list[0].MissionID != "msn_kid4" || list[4].MissionID != "msn_kid0" {
		t.Fatalf("children of msn_parent: %d, want the 5 oldest first", len(list))
	}
	after := MissionCursor{list[1].CreatedAt, list[1].MissionID}
	page, err := m.Missions(ctx, MissionListOptions{Parent: "msn_parent", After: &after, Limit: 2})
	if err != nil || len(page) != 2 || page[0].MissionID != list[2].MissionID {
		t.Fatalf("a page after the second child: %d %v", len(page), err)
	}

	m.mu.Lock()
	m.deleteRequestLocked("msn_kid2", kids[2])
	m.compactChildrenLocked()
	got := len(m.children["msn_parent"])
	m.mu.Unlock()
	if got != 4 {
		t.Fatalf("%d children indexed after one was deleted, want 4", got)
	}
	m.mu.Lock()
	for i, k := range kids {
		if i != 2 {
			m.deleteRequestLocked(k.MissionID, k)
		}
	}
	m.compactChildrenLocked()
	_, indexed := m.children["msn_parent"]
	m.mu.Unlock()
	if indexed {
		t.Error("the parent is still indexed with no children left")
	}
	if list, err := m.Missions(ctx, MissionListOptions{Parent: "msn_parent"}); err != nil || len(list) != 0 {
		t.Errorf("children after all were deleted: %d %v", len(list), err)
	}

	// Review 8, L2: a child outliving its parent (a longer retention) is
	// still listed as its child, as a scan of the store lists it.
	parent := add("msn_p2", "", now)
	add("msn_c2", "msn_p2", now)
	m.mu.Lock()
	m.deleteRequestLocked("msn_p2", parent)
	m.compactChildrenLocked()
	m.mu.Unlock()
	if list, err := m.Missions(ctx, MissionListOptions{Parent: "msn_p2"}); err != nil || len(list) != 1 || list[0].MissionID != "msn_c2" {
		t.Errorf("the child of a deleted parent: %d %v, want msn_c2", len(list), err)
	}
}

// BenchmarkMissionsByParent: listing one mission's children in a store of
// 100,000 others costs the children, not the store.
func BenchmarkMissionsByParent(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	m.mu.Lock()
	for i := range 99_990 {
		id := "msn_" + strconv.Itoa(i)
		parent := ""
		if i >= 99_987 {
			parent = "msn_0"
		}
		r := &Request{MissionID: id, IDHash: "h-" + id, ParentMissionID: parent, State: pass.MissionActive,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := m.insertLocked(r, r, nil); err != nil {
			b.Fatal(err)
		}
	}
	m.mu.Unlock()
	for b.Loop() {
		if list, err := m.Missions(ctx, MissionListOptions{Parent: "msn_0"}); err != nil || len(list) != 3 {
			b.Fatal(len(list), err)
		}
	}
}

// Audit 7, H2: PendingRequests keeps the oldest page as it scans and
// copies only that page, oldest first with ties by mission id, whatever
// the backlog.
func TestPendingRequestsOldestPage(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	var all []*Request
	m.mu.Lock()
	for i := range 3000 {
		id := "msn_" + strconv.Itoa(i)
		// Creation times repeat (ties) and come in no order.
		at := now.Add(time.Duration((i*7919)%997) * time.Millisecond)
		r := &Request{MissionID: id, IDHash: "h-" + id, State: pass.MissionPending, Status: pass.StatusPending,
			CreatedAt: at, ExpiresAt: now.Add(time.Hour)}
		if i%10 == 0 {
			r.Status, r.State = pass.StatusApproved, pass.MissionActive // not pending: never listed
		}
		if err := m.insertLocked(r, r.Clone(), nil); err != nil {
			t.Fatal(err)
		}
		if r.Status == pass.StatusPending {
			all = append(all, r)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b *Request) int { return compareCursor(a, MissionCursor{b.CreatedAt, b.MissionID}) })
	for _, limit := range []int{1, 10, 1000} {
		got, err := m.PendingRequests(ctx, ListOptions{Now: now, Limit: limit})
		if err != nil || len(got) != limit {
			t.Fatalf("limit %d: %d requests, %v", limit, len(got), err)
		}
		for i, r := range got {
			if r.MissionID != all[i].MissionID {
				t.Fatalf("limit %d: request %d is %s, want %s", limit, i, r.MissionID, all[i].MissionID)
			}
		}
	}
}

// BenchmarkPendingRequests: the pending gauge's listing with 100,000
// requests pending costs a scan and one page of copies.
func BenchmarkPendingRequests(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	m.mu.Lock()
	for i := range 99_999 {
		id := "msn_" + strconv.Itoa(i)
		r := &Request{MissionID: id, IDHash: "h-" + id, State: pass.MissionPending, Status: pass.StatusPending,
			CreatedAt: now.Add(time.Duration(i%5000) * time.Millisecond), ExpiresAt: now.Add(time.Hour)}
		if err := m.insertLocked(r, r, nil); err != nil {
			b.Fatal(err)
		}
	}
	m.mu.Unlock()
	for b.Loop() {
		if rs, err := m.PendingRequests(ctx, ListOptions{Now: now, Limit: 1000}); err != nil || len(rs) != 1000 {
			b.Fatal(len(rs), err)
		}
	}
}

// Audit 7, M1: at its bound, with records ending a moment apart, a store
// scanned for ended records on every write (an issuance flood supplying
// the writes); it now scans at most once per evictEvery, refusing in
// between, and makes room again after that.
func TestEvictAtTheBoundAtMostOncePerInterval(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	const limit = 40
	m := NewMemoryStore(WithLimit(limit))
	n := 0
	create := func(at time.Time, life time.Duration) error {
		n++
		id := strconv.Itoa(n)
		return m.CreateRequest(ctx, &Request{MissionID: "msn_" + id, IDHash: "h-" + id, Status: pass.StatusPending,
			CreatedAt: at, ExpiresAt: at.Add(life), Service: "https://app.example", User: "u@corp.example"})
	}
	// Full of pending requests ending a millisecond apart.
	for i := range limit {
		if err := create(t0, time.Minute+time.Duration(i)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	at := t0.Add(time.Minute + 5*time.Millisecond) // five have ended
	if err := create(at, time.Hour); err != nil {
		t.Fatalf("a write once records ended: %v, want room", err)
	}
	for { // full again
		if reqs, authz := m.Len(); reqs+authz >= limit {
			break
		}
		if err := create(at, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := create(at.Add(10*time.Millisecond), time.Hour); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("a write 10 ms after the last scan: %v, want ErrStoreFull (no second scan yet)", err)
	}
	if err := create(at.Add(evictEvery+10*time.Millisecond), time.Hour); err != nil {
		t.Fatalf("a write an interval later: %v, want room", err)
	}
}

// BenchmarkPruneManyChildren (review 8, L1): a sweep deleting 40,000
// children of one parent walks the parent's list once, not once per child.
func BenchmarkPruneManyChildren(b *testing.B) {
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for b.Loop() {
		b.StopTimer()
		m := NewMemoryStore()
		m.mu.Lock()
		p := &Request{MissionID: "msn_p", IDHash: "h-p", State: pass.MissionActive, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := m.insertLocked(p, p, nil); err != nil {
			b.Fatal(err)
		}
		for i := range 40_000 {
			id := "msn_" + strconv.Itoa(i)
			r := &Request{MissionID: id, IDHash: "h-" + id, ParentMissionID: "msn_p", Status: pass.StatusPending,
				CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
			if err := m.insertLocked(r, r, nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		m.evictDeadLocked(now.Add(2 * time.Minute))
		if len(m.children) != 0 || len(m.requests) != 0 {
			b.Fatalf("%d lists of children left, %d requests", len(m.children), len(m.requests))
		}
		m.mu.Unlock()
	}
}
