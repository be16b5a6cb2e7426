package authority

import (
	"fmt"
	"testing"
	"time"
)

// The per-Service bound drops the oldest SET that neither ends nor
// suspends a delegation, and never one that does (§9 fix 9).
func TestOutboxBound(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m := NewMemoryStore()
	ev := func(i int, keep bool) *OutboxEvent {
		return &OutboxEvent{JTI: fmt.Sprintf("j%d", i), Service: "https://a.example", Subject: fmt.Sprintf("s%d", i), Keep: keep, CreatedAt: now}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range MaxOutboxPerService {
		m.enqueueLocked(ev(i, i%2 == 0), now)
	}
	m.enqueueLocked(ev(-1, false), now)
	q := m.events.queue["https://a.example"]
	if len(q) != MaxOutboxPerService {
		t.Fatalf("%d queued, want the bound %d", len(q), MaxOutboxPerService)
	}
	if _, ok := m.events.byJTI["j1"]; ok {
		t.Error("the oldest droppable SET (j1) was kept")
	}
	if _, ok := m.events.byJTI["j0"]; !ok {
		t.Error("a kept SET (j0) was dropped")
	}
	// Once only kept SETs remain, a droppable one is refused and a kept
	// one queued beyond the bound.
	for i := range MaxOutboxPerService {
		m.enqueueLocked(ev(MaxOutboxPerService+i, true), now)
	}
	q = m.events.queue["https://a.example"]
	for _, e := range q {
		if !e.Keep {
			t.Fatalf("droppable %s survived", e.JTI)
		}
	}
	n := len(q)
	m.enqueueLocked(ev(-2, false), now)
	if _, ok := m.events.byJTI["j-2"]; ok || len(m.events.queue["https://a.example"]) != n {
		t.Error("a droppable SET was queued over a full bound of kept ones")
	}
	m.enqueueLocked(ev(-3, true), now)
	if _, ok := m.events.byJTI["j-3"]; !ok {
		t.Error("a kept SET was refused at the bound")
	}
}
