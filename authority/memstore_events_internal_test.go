package authority

import (
	"fmt"
	"testing"
	"time"
)

// Review O2: at the per-Service bound, a new SET that neither ends nor
// suspends a delegation is refused; no pending SET of another subject is
// ever dropped for it (only a newer SET of the same subject supersedes
// one), and a kept SET is queued beyond the bound.
func TestReviewOutboxBoundRefusesNewNotOthers(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	ev := func(jti, subject string, keep bool) *OutboxEvent {
		return &OutboxEvent{JTI: jti, Service: "https://a.example", Subject: subject, Keep: keep, CreatedAt: now}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range MaxOutboxPerService {
		if !m.enqueueLocked(ev(fmt.Sprintf("j%d", i), fmt.Sprintf("s%d", i), i%2 == 0), now) {
			t.Fatalf("j%d refused below the bound", i)
		}
	}
	if m.enqueueLocked(ev("new", "other", false), now) {
		t.Error("a droppable SET of a new subject was queued over a full bound")
	}
	q := m.events.queue["https://a.example"]
	if len(q) != MaxOutboxPerService || q[0].JTI != "j0" || q[1].JTI != "j1" {
		t.Fatalf("%d queued, first %s %s: another subject's SET was dropped", len(q), q[0].JTI, q[1].JTI)
	}
	// A newer SET of s1 supersedes j1 and takes its place.
	if !m.enqueueLocked(ev("j1b", "s1", false), now) {
		t.Error("a SET superseding its subject's pending one was refused")
	}
	if _, ok := m.events.byJTI["j1"]; ok {
		t.Error("the superseded j1 is still queued")
	}
	// A newer SET of s0 leaves the kept j0 and is refused.
	if m.enqueueLocked(ev("j0b", "s0", false), now) {
		t.Error("a droppable SET was queued over a full bound of another subject's kept one")
	}
	if _, ok := m.events.byJTI["j0"]; !ok {
		t.Error("a kept SET (j0) was dropped")
	}
	if !m.enqueueLocked(ev("kept", "other", true), now) || len(m.events.queue["https://a.example"]) != MaxOutboxPerService+1 {
		t.Error("a kept SET was refused at the bound")
	}
}
